//! loadgen: drives the real `ssfd` binary over loopback with a bounded count and
//! duration, and reports delivered items, losses and server CPU per item (from
//! `/proc/<pid>/stat`, user + system time of every ssfd thread).
//!
//!   loadgen statsd-udp --rate 200000 --seconds 5 --lines 1 --runs 3
//!   loadgen ssf-udp --rate 0 --count 1000000
//!   loadgen send-spans --count 2000000 --streams 2
//!   loadgen send-span --connections 4 --in-flight 32 --seconds 20

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use ssfd_benches::{ssf_span, ssf_span_bytes, statsd_lines};
use ssfd_e2e::Server;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Runs of the same load, each against a fresh server.
    #[arg(long, default_value_t = 1, global = true)]
    runs: usize,
    /// UDP reader threads of the server.
    #[arg(long, default_value_t = 1, global = true)]
    readers: usize,
    /// Keep spans in the span store (off by default: the loads measure ingest).
    #[arg(long, global = true)]
    store: bool,
    /// Run the server without its write-ahead log (`wal: false`), for comparison.
    #[arg(long, global = true)]
    no_wal: bool,
    /// Extra lines of the server's config (YAML, e.g. `--set 'read_buffer_size_bytes:
    /// 8388608'`), after loadgen's own; each run states its config this way.
    #[arg(long = "set", global = true)]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// DogStatsD datagrams over UDP at a fixed rate.
    StatsdUdp {
        /// Datagrams per second (0: as fast as one sender can).
        #[arg(long, default_value_t = 200_000)]
        rate: u64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Lines per datagram.
        #[arg(long, default_value_t = 1)]
        lines: usize,
    },
    /// One client core as a DogStatsD client library works: every line formatted
    /// when it is emitted (the mix of `statsd-udp`, values changing), `lines` lines
    /// buffered per datagram, one `send` per datagram, as fast as the core goes for
    /// `seconds`; reports the rate offered and whether ssfd took every line.
    Client {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 20)]
        lines: usize,
        /// A real client library's sender program instead of loadgen's own
        /// (`benches/clients/`): run as `PROGRAM --addr A --seconds S --lines L`, it
        /// sends for S seconds and prints the number of lines it sent.
        #[arg(long)]
        sender: Option<String>,
    },
    /// What the kernel's receive path alone costs against `client`'s sender: the same
    /// sender, in this process, sends to a thread that only takes datagrams as ssfd's
    /// reader does (`recvmmsg`, 64 per call, the same socket set-up) and drops them, or
    /// with `--parse` also parses every line; no ssfd is started. Reports the lines
    /// offered and taken, the kernel's drops and each thread's CPU per line.
    Floor {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 10)]
        lines: usize,
        /// Parse every line with ssfd's DogStatsD parser too.
        #[arg(long)]
        parse: bool,
        /// The receive buffer (ssfd's `read_buffer_size_bytes` default: 2 MiB).
        #[arg(long, default_value_t = 2 << 20)]
        buffer: usize,
    },
    /// SSF spans over UDP, one per datagram.
    SsfUdp {
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// N distinct counter series (≈96-byte keys), packed 20 lines per datagram; reports
    /// the flush that holds them all and resident memory per series.
    Series {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long, default_value_t = 400_000)]
        rate: u64,
    },
    /// Only sends `bench.c:1|c` lines to any statsd server (for peer comparisons);
    /// prints the lines sent and the rate achieved (lines per second).
    Blast {
        #[arg(long)]
        target: String,
        /// Lines per second.
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        lines: usize,
    },
    /// The span and log stores (issue 4): `count` distinct spans (10 per trace, with
    /// `--logs` one log sample each) over `SendSpans` streams into a server keeping
    /// them; reports server CPU per span, bytes on disk per span and per log record,
    /// then `queries` each of trace-by-id, trace search and full-text log search
    /// over HTTP with their latency percentiles.
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long, default_value_t = 2)]
        streams: u64,
        #[arg(long)]
        logs: bool,
        /// Spans per second in all (0: as fast as the server takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 300)]
        queries: usize,
    },
    /// The fleet's reads (issue 20): three globals keeping `count` spans each (10 per
    /// trace, one log record each, sent as a local forwards them), and a proxy in front;
    /// then `queries` trace and log searches, each timed at one global and at the proxy
    /// (alternating), the service map over everything and a RED view.
    Fleet {
        #[arg(long, default_value_t = 300_000)]
        count: u64,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// The traces' starts are spread evenly over this many hours.
        #[arg(long, default_value_t = 24)]
        spread_hours: u64,
    },
    /// Forwarded series through a proxy (issue 6): `count` distinct global counters in
    /// Veneur's forward format over `SendMetricsV2` to a proxy in front of two globals;
    /// reports the proxy's CPU per series and what the globals received.
    Proxy {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// Unary `/ssf.SSFGRPC/SendSpan` calls, as Veneur's `trace` library and
    /// `veneur-emit -grpc` make them: `connections` HTTP/2 connections with
    /// `in-flight` calls outstanding on each, for `seconds`, against the default
    /// configuration (write-ahead log and span store on, the default
    /// `span_channel_capacity`); reports calls answered OK and refused, server CPU per
    /// OK span, and resident memory at the start and end.
    SendSpan {
        #[arg(long, default_value_t = 4)]
        connections: u64,
        #[arg(long, default_value_t = 32)]
        in_flight: u64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// SSF spans over gRPC `SendSpans` client streams.
    SendSpans {
        #[arg(long, default_value_t = 2_000_000)]
        count: u64,
        #[arg(long, default_value_t = 2)]
        streams: u64,
    },
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[11] is utime, fields[12] stime (the 14th and 15th of the whole line)
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Sends `datagrams` (cycled) to `target` at `rate` per second (0 = unpaced) until
/// `total` are sent, with `sendmmsg` in chunks of 64. Returns the datagrams sent.
fn blast(target: &str, datagrams: &[Vec<u8>], rate: u64, total: u64) -> anyhow::Result<u64> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(target)?;
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(8 << 20);
    let fd = socket.as_raw_fd();
    const CHUNK: usize = 64;
    let start = Instant::now();
    let mut sent: u64 = 0;
    // SAFETY: zeroed POD structs, filled below.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; CHUNK];
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; CHUNK];
    while sent < total {
        let due = if rate == 0 {
            total
        } else {
            ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total)
        };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let batch = ((due - sent) as usize).min(CHUNK);
        for index in 0..batch {
            let datagram = &datagrams[(sent as usize + index) % datagrams.len()];
            iovecs[index].iov_base = datagram.as_ptr() as *mut _;
            iovecs[index].iov_len = datagram.len();
            headers[index].msg_hdr.msg_iov = &mut iovecs[index];
            headers[index].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the headers point at live datagrams for the duration of the call.
        let done = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), batch as u32, 0) };
        if done < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock
                || error.raw_os_error() == Some(libc::ENOBUFS)
            {
                continue;
            }
            bail!("sendmmsg: {error}");
        }
        sent += done as u64;
    }
    Ok(sent)
}

/// A DogStatsD client on one core: formats each line, sends `lines` per datagram.
fn client(target: &str, seconds: f64, lines: usize) -> anyhow::Result<u64> {
    use std::fmt::Write as _;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(target)?;
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(8 << 20);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut buffer = String::with_capacity(4096);
    let (mut sent, mut buffered, mut i) = (0u64, 0usize, 0u64);
    loop {
        if i % 1024 == 0 && Instant::now() >= deadline {
            return Ok(sent);
        }
        let _ = match i % 6 {
            0 => write!(
                buffer,
                "api.requests:1|c|#service:web,env:prod,route:/v{}",
                i % 50
            ),
            1 => write!(
                buffer,
                "api.latency:{}.{}|ms|@0.5|#service:web,env:prod",
                i % 997,
                i % 10
            ),
            2 => write!(buffer, "queue.depth:{}|g|#queue:q{}", i % 1000, i % 20),
            3 => write!(
                buffer,
                "payload.bytes:{}|h|#service:ingest,env:prod,region:us-east-1",
                i % 65536
            ),
            4 => write!(buffer, "users.active:user-{}|s|#env:prod", i % 10_000),
            _ => write!(buffer, "cache.hits:{}|c|@0.1", i % 7),
        };
        i += 1;
        buffered += 1;
        if buffered < lines {
            buffer.push('\n');
            continue;
        }
        loop {
            match socket.send(buffer.as_bytes()) {
                Ok(_) => break,
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(error) => bail!("send: {error}"),
            }
        }
        sent += buffered as u64;
        buffered = 0;
        buffer.clear();
    }
}

/// CPU seconds (user + system) the calling thread has used.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// `loadgen floor`: see [`Mode::Floor`].
fn floor(run: usize, seconds: f64, lines: usize, parse: bool, buffer: usize) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let socket = ssfd_ingest::datagram::bind_udp("127.0.0.1:0", 1, buffer)?
        .pop()
        .context("no socket")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let target = socket
        .local_addr()?
        .as_socket()
        .context("not an inet socket")?
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let reader = std::thread::spawn(move || {
        let fd = socket.as_raw_fd();
        // the readers' own receive round
        let mut batch = ssfd_ingest::datagram::RecvBatch::new(8192);
        let (mut datagrams, mut parsed, mut idle) = (0u64, 0u64, 0u32);
        let start_cpu = thread_cpu();
        // after the sender stops, read until the socket has been quiet for 0.2 s
        while !stopped.load(Ordering::Relaxed) || idle < 1 {
            let received = match batch.receive(fd) {
                Ok(received) if received > 0 => received,
                _ => {
                    idle += u32::from(stopped.load(Ordering::Relaxed));
                    continue;
                }
            };
            datagrams += received as u64;
            if parse {
                for datagram in (0..received).filter_map(|index| batch.datagram(index)) {
                    for line in ssfd_wire::dogstatsd_text::lines(datagram) {
                        parsed += u64::from(ssfd_wire::dogstatsd_text::parse_line(line).is_ok());
                    }
                }
            }
        }
        let mut info = [0u32; 9];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: a valid fd; the kernel writes at most `len` bytes into `info`.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        // the last 0.2 s wait costs no CPU
        (
            datagrams,
            parsed,
            info[libc::SK_MEMINFO_DROPS as usize],
            thread_cpu() - start_cpu,
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    let sender_cpu = thread_cpu();
    let start = Instant::now();
    let sent = client(&target, seconds, lines)?;
    let wall = start.elapsed().as_secs_f64();
    let sender_cpu = thread_cpu() - sender_cpu;
    stop.store(true, Ordering::Relaxed);
    let (datagrams, parsed, drops, reader_cpu) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let taken = datagrams * lines as u64;
    println!(
        "run {run} floor x {lines} line(s){}: offered {:.2} M lines/s, took {:.1} % ({taken} of {sent} lines; the kernel dropped {drops} datagrams){}",
        if parse { " with parsing" } else { "" },
        sent as f64 / wall / 1e6,
        taken as f64 * 100.0 / sent.max(1) as f64,
        if parse {
            format!(", {parsed} lines parsed")
        } else {
            String::new()
        },
    );
    println!(
        "    sender {:.2} cores, {:.1} ns per line; reader {:.2} cores, {:.1} ns per line taken",
        sender_cpu / wall,
        sender_cpu * 1e9 / sent.max(1) as f64,
        reader_cpu / wall,
        reader_cpu * 1e9 / taken.max(1) as f64,
    );
    Ok(())
}

/// Runs a client library's sender program (`benches/clients/`) and reads the lines it
/// says it sent.
fn external_sender(program: &str, target: &str, seconds: f64, lines: usize) -> anyhow::Result<u64> {
    let children_cpu = || {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    };
    let before = children_cpu();
    let output = std::process::Command::new(program)
        .args(["--addr", target, "--seconds", &seconds.to_string()])
        .args(["--lines", &lines.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("{program} failed: {}", output.status);
    }
    println!(
        "    sender CPU {:.2} s over {seconds:.1} s",
        children_cpu() - before
    );
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{program} printed {text:?}, not a line count"))
}

/// What a statsd load over UDP came to: waits until ssfd has counted what it
/// received, then reads its drops and the CPU it spent since `cpu_before`.
fn statsd_outcome(server: &Server, pid: u32, cpu_before: f64, items: u64, wall: f64) -> Outcome {
    let delivered = settle(
        server,
        "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}",
        items as f64,
    );
    Outcome {
        items,
        delivered,
        dropped: dropped(server, "statsd"),
        cpu: cpu_seconds(pid) - cpu_before,
        wall,
    }
}

/// Waits until `series` stops moving (or reaches `want`) and returns its value.
fn settle(server: &Server, series: &str, want: f64) -> f64 {
    let mut last = -1.0;
    let mut still_since = Instant::now();
    loop {
        let value = server.metric(series);
        if value >= want {
            return value;
        }
        if value != last {
            last = value;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_millis(1500) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Outcome {
    items: u64,
    delivered: f64,
    dropped: f64,
    cpu: f64,
    wall: f64,
}

fn report(label: &str, unit: &str, outcome: &Outcome) {
    let lossless = outcome.delivered == outcome.items as f64 && outcome.dropped == 0.0;
    println!(
        "{label}: sent {} {unit}s in {:.2}s, delivered {}, dropped {}, lossless {}, server CPU {:.3}s = {:.3} µs per delivered {unit} = {:.0} delivered {unit}s per server-CPU-second",
        outcome.items,
        outcome.wall,
        outcome.delivered,
        outcome.dropped,
        if lossless { "yes" } else { "NO" },
        outcome.cpu,
        outcome.cpu * 1e6 / outcome.delivered,
        outcome.delivered / outcome.cpu,
    );
}

fn dropped(server: &Server, listener: &str) -> f64 {
    server.metric("ssfd_dropped_total{stage=\"ingest\",reason=\"queue_full\"}")
        + server.metric(&format!(
            "ssfd_udp_kernel_drops_total{{listener=\"{listener}\"}}"
        ))
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        * 1024.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Mode::Blast {
        target,
        rate,
        seconds,
        lines,
    } = &cli.mode
    {
        let datagram = vec!["bench.c:1|c"; *lines].join("\n").into_bytes();
        let datagrams = rate / *lines as u64;
        let start = Instant::now();
        let sent = blast(
            target,
            &[datagram],
            datagrams,
            (datagrams as f64 * seconds) as u64,
        )?;
        let lines_sent = sent * *lines as u64;
        println!(
            "{lines_sent} {:.0}",
            lines_sent as f64 / start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if let Mode::Floor {
        seconds,
        lines,
        parse,
        buffer,
    } = cli.mode
    {
        for run in 1..=cli.runs {
            floor(run, seconds, lines, parse, buffer)?;
        }
        return Ok(());
    }
    // the front-door loads measure ingest without the span store (issue 4 has its own)
    let mut extra = format!(
        "num_readers: {}\nspan_channel_capacity: 4096\nstorage: {{max_bytes: {}}}\n",
        cli.readers,
        if cli.store { 1u64 << 34 } else { 0 }
    );
    if cli.no_wal {
        extra.push_str("wal: false\n");
    }
    for line in &cli.set {
        extra.push_str(line);
        extra.push('\n');
    }
    if let Mode::Store {
        count,
        streams,
        logs,
        rate,
        queries,
    } = cli.mode
    {
        return store_load(count, streams, logs, rate, queries);
    }
    if let Mode::SendSpan {
        connections,
        in_flight,
        seconds,
    } = cli.mode
    {
        // the default configuration, but for what the flags say
        let mut config = String::new();
        if cli.no_wal {
            config.push_str("wal: false\n");
        }
        for line in &cli.set {
            config.push_str(line);
            config.push('\n');
        }
        for run in 1..=cli.runs {
            send_span_load(run, &config, connections, in_flight, seconds)?;
        }
        return Ok(());
    }
    if let Mode::Proxy { count } = cli.mode {
        return proxy_load(count, cli.runs);
    }
    if let Mode::Fleet {
        count,
        queries,
        spread_hours,
    } = cli.mode
    {
        return fleet_load(count, queries, spread_hours);
    }
    if let Mode::Series { .. } = cli.mode {
        extra.push_str("interval: 20s\nmax_series: 2000000\n");
    }
    for run in 1..=cli.runs {
        let server = Server::start(&extra);
        let pid = server.pid();
        std::thread::sleep(Duration::from_millis(300));
        match &cli.mode {
            Mode::StatsdUdp {
                rate,
                seconds,
                lines,
            } => {
                let pool = statsd_lines(6000);
                let datagrams: Vec<Vec<u8>> = pool
                    .chunks(*lines)
                    .take(1000)
                    .map(|chunk| chunk.join("\n").into_bytes())
                    .collect();
                let total = if *rate == 0 {
                    (seconds * 300_000.0) as u64
                } else {
                    (*rate as f64 * seconds) as u64
                };
                let cpu_before = cpu_seconds(pid);
                let start = Instant::now();
                let sent = blast(server.addr("statsd udp"), &datagrams, *rate, total)?;
                let wall = start.elapsed().as_secs_f64();
                let items = sent * *lines as u64;
                let outcome = statsd_outcome(&server, pid, cpu_before, items, wall);
                let cpu = outcome.cpu;
                let label = format!("run {run} statsd-udp rate {rate}/s x {lines} line(s)");
                report(&label, "line", &outcome);
                println!(
                    "    per datagram: {:.3} µs of server CPU; dropped by a full queue {}, by the kernel {}",
                    cpu * 1e6 / sent as f64,
                    server.metric("ssfd_dropped_total{stage=\"ingest\",reason=\"queue_full\"}"),
                    server.metric("ssfd_udp_kernel_drops_total{listener=\"statsd\"}"),
                );
            }
            Mode::Client {
                seconds,
                lines,
                sender,
            } => {
                let cpu_before = cpu_seconds(pid);
                let start = Instant::now();
                let target = server.addr("statsd udp");
                let items = match sender {
                    Some(program) => external_sender(program, target, *seconds, *lines)?,
                    None => client(target, *seconds, *lines)?,
                };
                let wall = start.elapsed().as_secs_f64();
                let outcome = statsd_outcome(&server, pid, cpu_before, items, wall);
                report(
                    &format!("run {run} client x {lines} line(s)"),
                    "line",
                    &outcome,
                );
                println!(
                    "    offered {:.2} M lines/s from one client core; dropped by a full queue {} lines, by the kernel {} datagrams",
                    items as f64 / wall / 1e6,
                    server.metric("ssfd_dropped_total{stage=\"ingest\",reason=\"queue_full\"}"),
                    server.metric("ssfd_udp_kernel_drops_total{listener=\"statsd\"}"),
                );
            }
            Mode::SsfUdp { rate, count } => {
                let datagrams: Vec<Vec<u8>> = (1..=1000).map(ssf_span_bytes).collect();
                let cpu_before = cpu_seconds(pid);
                let start = Instant::now();
                let sent = blast(server.addr("ssf udp"), &datagrams, *rate, *count)?;
                let wall = start.elapsed().as_secs_f64();
                let delivered = settle(
                    &server,
                    "ssfd_received_total{listener=\"ssf\",protocol=\"udp\"}",
                    sent as f64,
                );
                let cpu = cpu_seconds(pid) - cpu_before;
                let outcome = Outcome {
                    items: sent,
                    delivered,
                    dropped: dropped(&server, "ssf"),
                    cpu,
                    wall,
                };
                report(
                    &format!("run {run} ssf-udp rate {rate}/s"),
                    "span",
                    &outcome,
                );
            }
            Mode::Blast { .. }
            | Mode::Store { .. }
            | Mode::Proxy { .. }
            | Mode::Fleet { .. }
            | Mode::Floor { .. }
            | Mode::SendSpan { .. } => {
                unreachable!("handled above")
            }
            Mode::Series { count, rate } => {
                let lines: Vec<String> = (0..*count)
                    .map(|i| {
                        format!(
                            "checkout.requests.total:1|c|#service:checkout-{:04},env:production,region:us-east-1,host:ip-10-0-{:06}",
                            i % 1000,
                            i
                        )
                    })
                    .collect();
                let datagrams: Vec<Vec<u8>> = lines
                    .chunks(20)
                    .map(|c| c.join("\n").into_bytes())
                    .collect();
                let rss_before = rss_bytes(pid);
                let flushes_before = server.metric("ssfd_flush_duration_seconds_count");
                let cpu_before = cpu_seconds(pid);
                let sent = blast(
                    server.addr("statsd udp"),
                    &datagrams,
                    rate / 20,
                    datagrams.len() as u64,
                )?;
                let delivered = settle(
                    &server,
                    "ssfd_worker_received_total{kind=\"counter\"}",
                    *count as f64,
                );
                let rss_loaded = rss_bytes(pid);
                // wait for the flush that holds every series
                let deadline = Instant::now() + Duration::from_secs(60);
                let (mut flush_sum, mut flush_count) = (0.0, flushes_before);
                // every poll renders the whole exposition (1 M series, about a second of
                // CPU, holding the exposition's lock): wait out the 20 s interval first,
                // then poll every 3 s, not to race the flush it measures
                std::thread::sleep(Duration::from_secs(20));
                while server.metric("ssfd_series") < *count as f64 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_secs(3));
                }
                let series = server.metric("ssfd_series");
                let after_count = server.metric("ssfd_flush_duration_seconds_count");
                if after_count > flush_count {
                    flush_sum = server.metric("ssfd_flush_duration_seconds_sum");
                    flush_count = after_count;
                }
                let rss_after_flush = rss_bytes(pid);
                let cpu = cpu_seconds(pid) - cpu_before;
                println!(
                    "run {run} series: sent {} datagrams, delivered {delivered} lines, live series at flush {series}, flushes {flush_count} (total flush time {:.3}s), RSS before {:.1} MiB, loaded {:.1} MiB (+{:.0} B/series), after flush {:.1} MiB (+{:.0} B/series), server CPU {cpu:.2}s",
                    sent,
                    flush_sum,
                    rss_before / 1048576.0,
                    rss_loaded / 1048576.0,
                    (rss_loaded - rss_before) / *count as f64,
                    rss_after_flush / 1048576.0,
                    (rss_after_flush - rss_before) / *count as f64,
                );
                // the flusher's phases, when the server logs at debug (SSFD_LOG=debug)
                if let Ok(lines) = server.stderr.lock() {
                    for line in lines
                        .iter()
                        .filter(|l| l.contains("flushed") && l.contains("name_ms"))
                    {
                        println!("    {line}");
                    }
                }
            }
            Mode::SendSpans { count, streams } => {
                let address = format!("http://{}", server.addr("grpc tcp"));
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let per_stream = count / streams;
                let spans: Vec<_> = (1..=1000).map(ssf_span).collect();
                let cpu_before = cpu_seconds(pid);
                let start = Instant::now();
                let accepted = runtime.block_on(async {
                    let mut tasks = Vec::new();
                    for _ in 0..*streams {
                        let address = address.clone();
                        let spans = spans.clone();
                        tasks.push(tokio::spawn(async move {
                            let channel = tonic::transport::Channel::from_shared(address)?
                                .connect()
                                .await?;
                            let mut client =
                                ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel);
                            let stream = tokio_stream::iter(
                                (0..per_stream).map(move |i| spans[i as usize % 1000].clone()),
                            );
                            let summary = client.send_spans(stream).await?.into_inner();
                            anyhow::Ok(summary.accepted)
                        }));
                    }
                    accepted(tasks).await
                })?;
                let wall = start.elapsed().as_secs_f64();
                let items = per_stream * streams;
                let delivered = settle(
                    &server,
                    "ssfd_worker_received_total{kind=\"span\"}",
                    items as f64,
                );
                let cpu = cpu_seconds(pid) - cpu_before;
                if accepted != items {
                    println!("    accepted {accepted} of {items}");
                }
                let outcome = Outcome {
                    items,
                    delivered,
                    dropped: dropped(&server, "ssf"),
                    cpu,
                    wall,
                };
                report(
                    &format!("run {run} send-spans x {streams} streams"),
                    "span",
                    &outcome,
                );
            }
        }
    }
    Ok(())
}

/// One run of `send-span`: unary calls until `seconds` pass, each task keeping one call
/// outstanding, `in_flight` tasks per connection.
fn send_span_load(
    run: usize,
    config: &str,
    connections: u64,
    in_flight: u64,
    seconds: f64,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let server = Server::start(config);
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let address = format!("http://{}", server.addr("grpc tcp"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let rss_start = rss_bytes(pid);
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..connections {
            let channel = tonic::transport::Channel::from_shared(address.clone())?
                .connect()
                .await?;
            for slot in 0..in_flight {
                let mut client =
                    ssfd_wire::ssf::ssfgrpc_client::SsfgrpcClient::new(channel.clone());
                let (ok, refused, other) =
                    (Arc::clone(&ok), Arc::clone(&refused), Arc::clone(&other));
                let task = (connection * in_flight + slot) as i64;
                tasks.push(tokio::spawn(async move {
                    let mut i = task;
                    while Instant::now() < until {
                        let mut span = ssfd_benches::store_span(i as u64, false);
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos() as i64;
                        span.end_timestamp = now;
                        span.start_timestamp = now - 1_000_000;
                        match client.send_span(span).await {
                            Ok(_) => ok.fetch_add(1, Relaxed),
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                refused.fetch_add(1, Relaxed)
                            }
                            Err(_) => other.fetch_add(1, Relaxed),
                        };
                        i += (connections * in_flight) as i64;
                    }
                }));
            }
        }
        for task in tasks {
            task.await?;
        }
        anyhow::Ok(())
    })?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_end = rss_bytes(pid);
    let (ok, refused, other) = (ok.load(Relaxed), refused.load(Relaxed), other.load(Relaxed));
    let delivered = settle(
        &server,
        "ssfd_worker_received_total{kind=\"span\"}",
        ok as f64,
    );
    println!(
        "run {run} send-span x {connections} connections x {in_flight} in flight: {ok} OK, {refused} refused (UNAVAILABLE), {other} other errors in {wall:.2}s = {:.0} OK/s; delivered {delivered}; server CPU {cpu:.3}s = {:.2} µs per OK span = {:.0} OK spans per server-CPU-second; RSS {:.0} MiB at start, {:.0} MiB at end",
        ok as f64 / wall,
        cpu * 1e6 / ok as f64,
        ok as f64 / cpu,
        rss_start / 1048576.0,
        rss_end / 1048576.0,
    );
    Ok(())
}

/// The spans every `SendSpans` stream task had accepted, summed.
async fn accepted(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>) -> anyhow::Result<u64> {
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.context("stream task")??;
    }
    Ok(accepted)
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_bytes(&e.path())).sum())
        .unwrap_or(0)
}

fn percentiles(label: &str, mut micros: Vec<f64>) {
    micros.sort_by(f64::total_cmp);
    let at =
        |p: f64| micros[((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1];
    println!(
        "  {label}: {} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        micros.len(),
        at(0.5) / 1e3,
        at(0.99) / 1e3,
        at(1.0) / 1e3
    );
}

/// `loadgen store`: see [`Mode::Store`].
fn store_load(
    count: u64,
    streams: u64,
    logs: bool,
    rate: u64,
    queries: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = format!(
        "{}span_channel_capacity: 4096\nstorage: {{max_bytes: {}}}\nretention: 1000h\n",
        ssfd_e2e::port_zero_config(dir.path()),
        1u64 << 40
    );
    let server = Server::start_config(&config, tempfile::tempdir()?, &[]);
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let address = format!("http://{}", server.addr("grpc tcp"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let per_stream = count / streams;
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let accepted = runtime.block_on(async {
        let mut tasks = Vec::new();
        for stream in 0..streams {
            let address = address.clone();
            tasks.push(tokio::spawn(async move {
                let channel = tonic::transport::Channel::from_shared(address)?
                    .connect()
                    .await?;
                let mut client = ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel);
                let begun = Instant::now();
                let spans = tokio_stream::StreamExt::then(
                    tokio_stream::iter(0..per_stream),
                    move |i| async move {
                        if rate > 0 {
                            let due =
                                Duration::from_secs_f64(i as f64 * streams as f64 / rate as f64);
                            if let Some(wait) = due.checked_sub(begun.elapsed()) {
                                tokio::time::sleep(wait).await;
                            }
                        }
                        // streams interleave ids so traces stay whole-ish in time
                        ssfd_benches::store_span(i * streams + stream, logs)
                    },
                );
                let summary = client.send_spans(spans).await?.into_inner();
                anyhow::Ok(summary.accepted)
            }));
        }
        accepted(tasks).await
    })?;
    let wall = start.elapsed().as_secs_f64();
    let items = per_stream * streams;
    let delivered = settle(
        &server,
        "ssfd_worker_received_total{kind=\"span\"}",
        items as f64,
    );
    // the log indexer commits about once a second; wait until it has everything
    if logs {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let (_, body) = server.get(&format!("/api/v1/logs?limit=1&trace_id={}", items / 10));
            if body.contains("app.log") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    println!(
        "store{}: sent {items} spans in {wall:.1}s (accepted {accepted}), delivered {delivered}, server CPU {cpu:.2}s = {:.0} spans{} per server-CPU-second",
        if logs { " with 1 log each" } else { "" },
        delivered / cpu,
        if logs { " (and as many logs)" } else { "" },
    );
    let dropped_store = server.metric("ssfd_dropped_total{stage=\"store\",reason=\"overflow\"}")
        + server.metric("ssfd_dropped_total{stage=\"store\",reason=\"retry_exhausted\"}");
    let dropped_index = server.metric("ssfd_dropped_total{stage=\"index\",reason=\"queue_full\"}");
    println!(
        "  dropped: store {dropped_store}, log index {dropped_index}, ingest {}",
        dropped(&server, "ssf")
    );
    // queries are timed on a quiet server: wait for the index's background merges
    let quiet_deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(2));
        if cpu_seconds(pid) - before < 0.1 || Instant::now() > quiet_deadline {
            break;
        }
    }
    let spans_disk = disk_bytes(&data.join("spans.redb"));
    let logs_disk = disk_bytes(&data.join("logs"));
    println!(
        "  on disk: spans.redb {:.1} MiB = {:.0} bytes per span; logs/ {:.1} MiB = {:.0} bytes per log record; resident {:.0} MiB",
        spans_disk as f64 / 1048576.0,
        spans_disk as f64 / items as f64,
        logs_disk as f64 / 1048576.0,
        if logs {
            logs_disk as f64 / items as f64
        } else {
            0.0
        },
        rss_bytes(pid) / 1048576.0,
    );
    // queries, one at a time, over HTTP
    let traces = (items / 10).max(1);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let time = |path: String| -> anyhow::Result<f64> {
        let begun = Instant::now();
        let (status, body) = server.get(&path);
        let micros = begun.elapsed().as_secs_f64() * 1e6;
        if status != 200 {
            bail!("{path}: {status} {body}");
        }
        Ok(micros)
    };
    let mut by_id = Vec::new();
    for _ in 0..queries {
        by_id.push(time(format!("/api/v1/traces/{}", 1 + next() % traces))?);
    }
    percentiles("trace by id", by_id);
    let mut searches = Vec::new();
    let mut by_kind: [Vec<f64>; 5] = Default::default();
    for q in 0..queries {
        let service = format!("svc-{:02}", next() % 20);
        let path = match q % 5 {
            0 => format!("/api/v1/traces?service={service}"),
            1 => format!(
                "/api/v1/traces?service={service}&name=op-{:02}",
                next() % 50
            ),
            2 => format!("/api/v1/traces?service={service}&error=true"),
            3 => format!("/api/v1/traces?service={service}&min_duration=990us"),
            _ => format!("/api/v1/traces?tag=customer:c{}", next() % 1000),
        };
        let micros = time(path)?;
        by_kind[q % 5].push(micros);
        searches.push(micros);
    }
    percentiles("trace search (limit 20)", searches);
    for (kind, micros) in [
        "service",
        "service+name",
        "service+error",
        "service+min_duration",
        "tag",
    ]
    .iter()
    .zip(by_kind)
    {
        percentiles(&format!("    of which {kind}"), micros);
    }
    if logs {
        let mut texts = Vec::new();
        let words = ssfd_benches::WORDS;
        for q in 0..queries {
            let (a, b) = (words[(next() % 40) as usize], words[(next() % 40) as usize]);
            let path = match q % 3 {
                0 => format!("/api/v1/logs?q={a}+{b}"),
                1 => format!("/api/v1/logs?q=%22{a}+{b}%22"),
                _ => format!(
                    "/api/v1/logs?q={a}&service=svc-{:02}&severity=warn",
                    next() % 20
                ),
            };
            texts.push(time(path)?);
        }
        percentiles("full-text log search (limit 100)", texts);
    }
    drop(server);
    Ok(())
}

/// `loadgen fleet`: see [`Mode::Fleet`].
fn fleet_load(count: u64, queries: usize, spread_hours: u64) -> anyhow::Result<()> {
    // trace n of all three globals' starts at n × step: the day's traces, evenly
    let traces = (3 * count / 10).max(1) as i64;
    let step = (spread_hours as i64 * 3_600_000_000_000) / traces;
    let spread = move |i: u64| {
        let mut span = ssfd_benches::store_span(i, true);
        let trace = 1 + (i / 10) as i64;
        let shift = trace * (step - 1_000_000);
        span.start_timestamp += shift;
        span.end_timestamp += shift;
        for sample in &mut span.metrics {
            sample.timestamp += shift;
        }
        span
    };
    let config = |dir: &std::path::Path| {
        format!(
            "{}span_channel_capacity: 4096\nstorage: {{max_bytes: {}}}\nretention: 1000h\n",
            ssfd_e2e::port_zero_config(dir),
            1u64 << 40
        )
    };
    let globals: Vec<Server> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let text = config(dir.path());
            Server::start_config(&text, dir, &[])
        })
        .collect();
    let destinations: Vec<&str> = globals.iter().map(|g| g.addr("grpc tcp")).collect();
    let proxy = Server::start(&format!(
        "role: proxy\nproxy:\n  destinations: [{}]\n",
        destinations.join(", ")
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let start = Instant::now();
    let cpu_before: f64 = globals.iter().map(|g| cpu_seconds(g.pid())).sum();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for (g, global) in globals.iter().enumerate() {
            let address = format!("http://{}", global.addr("grpc tcp"));
            let first = g as u64 * count;
            tasks.push(tokio::spawn(async move {
                let channel = tonic::transport::Channel::from_shared(address)?
                    .connect()
                    .await?;
                let mut client = ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel);
                let spans = tokio_stream::iter((first..first + count).map(spread));
                let mut request = tonic::Request::new(spans);
                request.metadata_mut().insert(
                    "ssfd-forwarded",
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                let summary = client.send_spans(request).await?.into_inner();
                anyhow::Ok(summary.accepted)
            }));
        }
        accepted(tasks).await
    })?;
    for (g, global) in globals.iter().enumerate() {
        settle(
            global,
            "ssfd_worker_received_total{kind=\"span\"}",
            count as f64,
        );
        let last = (g as u64 + 1) * count / 10;
        let deadline = Instant::now() + Duration::from_secs(1200);
        while Instant::now() < deadline {
            let (_, body) = global.get(&format!("/api/v1/logs?limit=1&trace_id={last}"));
            if body.contains("app.log") {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let cpu: f64 = globals.iter().map(|g| cpu_seconds(g.pid())).sum::<f64>() - cpu_before;
    println!(
        "fleet: 3 globals × {count} spans and as many log records in {:.0}s ({cpu:.0} server CPU-s)",
        start.elapsed().as_secs_f64()
    );
    // searches are timed on quiet servers: wait for the indexes' merges
    let quiet_deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let before: f64 = globals.iter().map(|g| cpu_seconds(g.pid())).sum();
        std::thread::sleep(Duration::from_secs(3));
        let after: f64 = globals.iter().map(|g| cpu_seconds(g.pid())).sum();
        if after - before < 0.2 || Instant::now() > quiet_deadline {
            break;
        }
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let time = |server: &Server, path: &str| -> anyhow::Result<f64> {
        let begun = Instant::now();
        let (status, body) = server.get(path);
        let micros = begun.elapsed().as_secs_f64() * 1e6;
        if status != 200 || body.contains("\"partial\"") {
            bail!("{path}: {status} {}", &body[..body.len().min(300)]);
        }
        Ok(micros)
    };
    let words = ssfd_benches::WORDS;
    let (mut traces_one, mut traces_proxy, mut logs_one, mut logs_proxy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for q in 0..queries {
        let service = format!("svc-{:02}", next() % 20);
        let search = match q % 4 {
            0 => format!("/api/v1/traces?service={service}"),
            1 => format!(
                "/api/v1/traces?service={service}&name=op-{:02}",
                next() % 50
            ),
            2 => format!("/api/v1/traces?service={service}&error=true"),
            _ => format!("/api/v1/traces?tag=customer:c{}", next() % 1000),
        };
        let (a, b) = (words[(next() % 40) as usize], words[(next() % 40) as usize]);
        let text = match q % 3 {
            0 => format!("/api/v1/logs?q={a}+{b}"),
            1 => format!("/api/v1/logs?q=%22{a}+{b}%22"),
            _ => format!("/api/v1/logs?q={a}&service={service}&severity=warn"),
        };
        // alternate which goes first, so neither always finds the caches warm
        if q % 2 == 0 {
            traces_one.push(time(&globals[0], &search)?);
            traces_proxy.push(time(&proxy, &search)?);
            logs_one.push(time(&globals[0], &text)?);
            logs_proxy.push(time(&proxy, &text)?);
        } else {
            traces_proxy.push(time(&proxy, &search)?);
            traces_one.push(time(&globals[0], &search)?);
            logs_proxy.push(time(&proxy, &text)?);
            logs_one.push(time(&globals[0], &text)?);
        }
    }
    let p99 = |micros: &[f64]| {
        let mut sorted = micros.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1]
    };
    percentiles("trace search at one global", traces_one.clone());
    percentiles(
        "trace search at the proxy (3 globals)",
        traces_proxy.clone(),
    );
    println!(
        "    p99 proxy / one global: {:.2}",
        p99(&traces_proxy) / p99(&traces_one)
    );
    percentiles("log search at one global", logs_one.clone());
    percentiles("log search at the proxy (3 globals)", logs_proxy.clone());
    println!(
        "    p99 proxy / one global: {:.2}",
        p99(&logs_proxy) / p99(&logs_one)
    );
    let everything = "/api/v1/dependencies?start=0&end=2000000000000000000";
    println!(
        "  service map over {count} spans ({spread_hours} h) at one global, first: {:.2} ms",
        time(&globals[0], everything)? / 1e3
    );
    println!(
        "  service map over {} spans at the proxy, first: {:.2} ms",
        3 * count,
        time(&proxy, everything)? / 1e3
    );
    // then as a live fleet sees it: new spans keep arriving in the newest bucket
    let newest = {
        let mut span = spread(count - 1);
        span.id += 10 * count as i64;
        span.trace_id += count as i64;
        span
    };
    let address = format!("http://{}", globals[0].addr("grpc tcp"));
    let send_one = |n: i64| -> anyhow::Result<()> {
        let mut span = newest.clone();
        span.id += n;
        let address = address.clone();
        runtime.block_on(async move {
            let channel = tonic::transport::Channel::from_shared(address)?
                .connect()
                .await?;
            let mut request = tonic::Request::new(tokio_stream::iter([span]));
            request.metadata_mut().insert(
                "ssfd-forwarded",
                tonic::metadata::MetadataValue::from_static("1"),
            );
            ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel)
                .send_spans(request)
                .await?;
            anyhow::Ok(())
        })
    };
    let mut map_one = Vec::new();
    let mut map_proxy = Vec::new();
    for n in 0..20 {
        send_one(n)?;
        std::thread::sleep(Duration::from_millis(300));
        map_one.push(time(&globals[0], everything)?);
        map_proxy.push(time(&proxy, everything)?);
    }
    percentiles(
        &format!("service map over {count} spans at one global, a span arriving before each"),
        map_one,
    );
    percentiles(
        &format!(
            "service map over {} spans at the proxy, the same",
            3 * count
        ),
        map_proxy,
    );
    let mut red = Vec::new();
    for q in 0..50 {
        red.push(time(
            &proxy,
            &format!("/api/v1/services/svc-{:02}/red?start=now-6h", q % 20),
        )?);
    }
    percentiles("RED view (6 h, 1-minute steps) at the proxy", red);
    Ok(())
}

/// `loadgen proxy`: see [`Mode::Proxy`].
fn proxy_load(count: u64, runs: usize) -> anyhow::Result<()> {
    for run in 1..=runs {
        let globals = [
            Server::start("interval: 1s\n"),
            Server::start("interval: 1s\n"),
        ];
        let proxy = Server::start(&format!(
            "interval: 1s\nrole: proxy\nproxy:\n  destinations: [{}, {}]\n",
            globals[0].addr("grpc tcp"),
            globals[1].addr("grpc tcp")
        ));
        std::thread::sleep(Duration::from_millis(1500));
        let pid = proxy.pid();
        let address = format!("http://{}", proxy.addr("grpc tcp"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cpu_before = cpu_seconds(pid);
        let start = Instant::now();
        runtime.block_on(async move {
            let channel = tonic::transport::Channel::from_shared(address)?
                .connect()
                .await?;
            let mut client = ssfd_wire::forwardrpc::forward_client::ForwardClient::new(channel);
            let metrics = (0..count).map(|i| ssfd_wire::metricpb::Metric {
                name: format!("proxy.load.c{}", i % 100_000),
                tags: vec![format!("shard:{}", i / 100_000), "env:bench".into()],
                r#type: ssfd_wire::metricpb::Type::Counter as i32,
                scope: ssfd_wire::metricpb::Scope::Global as i32,
                value: Some(ssfd_wire::metricpb::metric::Value::Counter(
                    ssfd_wire::metricpb::CounterValue { value: 1 },
                )),
            });
            client.send_metrics_v2(tokio_stream::iter(metrics)).await?;
            anyhow::Ok(())
        })?;
        let series = "ssfd_worker_received_total{kind=\"counter\"}";
        let deadline = Instant::now() + Duration::from_secs(120);
        let delivered = loop {
            let delivered: f64 = globals.iter().map(|g| g.metric(series)).sum();
            if delivered >= count as f64 || Instant::now() > deadline {
                break delivered;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        let split: Vec<f64> = globals.iter().map(|g| g.metric(series)).collect();
        println!(
            "run {run} proxy: {count} forwarded series in {wall:.2}s, delivered {delivered} ({split:?} per global), proxy CPU {cpu:.3}s = {:.0} series per proxy-CPU-second",
            delivered / cpu
        );
    }
    Ok(())
}
