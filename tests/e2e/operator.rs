//! A Veneur operator's first week: `stats_address` in Veneur's names, secrets that never
//! show, a port another process holds refused, a quiet and useful log, config errors
//! that help, and the CLI's time-outs, relative times and plain answers.

use prost::Message;
use ssfd_e2e::{Server, ssfd_binary};
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every DogStatsD line that reaches `socket` within `wait`.
fn collect_lines(socket: &UdpSocket, wait: Duration) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut lines = Vec::new();
    let mut buffer = [0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            lines.extend(text.lines().map(String::from));
        }
    }
    lines
}

/// (name, value, type, tags) of a DogStatsD line.
fn parse_line(line: &str) -> (String, u64, String, Vec<String>) {
    let (name, rest) = line.split_once(':').expect("name:value");
    let mut fields = rest.split('|');
    let value = fields.next().unwrap().parse().expect("an integer value");
    let kind = fields.next().expect("a type").to_string();
    let tags = fields
        .find_map(|f| f.strip_prefix('#'))
        .map(|t| t.split(',').map(String::from).collect())
        .unwrap_or_default();
    (name.to_string(), value, kind, tags)
}

/// SPEC 10's table: what a Veneur dashboard reads, with its DogStatsD type and tags.
const VENEUR_SERIES: &[(&str, &str, &[&str])] = &[
    ("veneur.packet.error_total", "c", &["packet_type", "reason"]),
    ("veneur.worker.metrics_processed_total", "c", &["worker"]),
    ("veneur.worker.metrics_flushed_total", "c", &["metric_type"]),
    (
        "veneur.listen.received_per_protocol_total",
        "c",
        &["protocol"],
    ),
    ("veneur.ssf.spans.received_total", "c", &[]),
    ("veneur.sink.metric_flush_total_duration_ns", "h", &["sink"]),
    ("veneur.sink.metrics_flushed_total", "c", &["sink"]),
    ("veneur.sink.span_flush_total_duration_ns", "h", &["sink"]),
    ("veneur.sink.spans_dropped_total", "c", &["sink"]),
    ("veneur.flush.error_total", "c", &["sink", "cause"]),
    ("veneur.forward.post_metrics_total", "c", &[]),
    ("veneur.forward.duration_ns", "ms", &["part"]),
    ("veneur.forward.error_total", "c", &["cause"]),
];

#[test]
fn stats_address_gets_veneurs_self_metrics() {
    let stats = UdpSocket::bind("127.0.0.1:0").unwrap();
    let global_stats = UdpSocket::bind("127.0.0.1:0").unwrap();
    let global = Server::start(&format!(
        "interval: 1s\nstats_address: udp://{}\n",
        global_stats.local_addr().unwrap()
    ));
    let failing = ssfd_e2e::failing_http();
    let dead = ssfd_e2e::free_port();
    let jsonl = tempfile::tempdir().unwrap();
    let local = Server::start(&format!(
        "interval: 1s\nmetric_max_length: 64\nstats_address: {}\nforward_address: {}\n\
         metric_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n\
         \x20 - kind: datadog\n    name: broken\n    config: {{api_key: k, api_hostname: http://{failing}, max_retries: 0}}\n\
         span_sinks:\n  - kind: otlp\n    name: traces\n    config: {{endpoint: '127.0.0.1:{dead}'}}\n",
        stats.local_addr().unwrap(),
        global.addr("grpc tcp"),
        jsonl.path().join("m.jsonl").display()
    ));
    // a second local whose upstream is away: forward errors
    let stranded = Server::start(&format!(
        "interval: 1s\nstats_address: {}\nforward_address: 127.0.0.1:{dead}\n",
        stats.local_addr().unwrap()
    ));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        udp.send_to(b"op.count:1|c|#veneurglobalonly", local.addr("statsd udp"))
            .unwrap();
        udp.send_to(b"op.gauge:2|g", local.addr("statsd udp"))
            .unwrap();
        udp.send_to(
            format!("op.toolong:{}|c", "1".repeat(80)).as_bytes(),
            local.addr("statsd udp"),
        )
        .unwrap();
        udp.send_to(
            b"op.stranded:1|c|#veneurglobalonly",
            stranded.addr("statsd udp"),
        )
        .unwrap();
    }
    let span = SsfSpan {
        trace_id: 5,
        id: 6,
        start_timestamp: 1,
        end_timestamp: 2,
        service: "svc".into(),
        name: "op".into(),
        metrics: vec![SsfSample {
            name: "op.from.span".into(),
            value: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    };
    udp.send_to(&span.encode_to_vec(), local.addr("ssf udp"))
        .unwrap();
    let lines = collect_lines(&stats, Duration::from_secs(12));
    assert!(!lines.is_empty(), "nothing reached stats_address");
    let parsed: Vec<_> = lines.iter().map(|l| parse_line(l)).collect();
    for (name, kind, tag_keys) in VENEUR_SERIES {
        let found: Vec<_> = parsed.iter().filter(|(n, ..)| n == name).collect();
        assert!(!found.is_empty(), "{name} never sent; got {lines:#?}");
        for (_, _, sent_kind, tags) in &found {
            assert_eq!(sent_kind, kind, "{name}'s type");
            for key in *tag_keys {
                assert!(
                    tags.iter().any(|t| t.starts_with(&format!("{key}:"))),
                    "{name} without its `{key}` tag: {tags:?}"
                );
            }
        }
    }
    let sum = |name: &str, tag: &str| -> u64 {
        parsed
            .iter()
            .filter(|(n, _, _, tags)| {
                n == name && (tag.is_empty() || tags.iter().any(|t| t == tag))
            })
            .map(|(_, v, ..)| v)
            .sum()
    };
    // the counts are the changes, summed over the intervals: nothing counted twice
    assert_eq!(
        sum("veneur.packet.error_total", "reason:toolong"),
        5,
        "{lines:#?}"
    );
    assert!(
        sum(
            "veneur.listen.received_per_protocol_total",
            "protocol:dogstatsd-udp"
        ) >= 20
    );
    assert_eq!(sum("veneur.ssf.spans.received_total", ""), 1);
    assert!(sum("veneur.worker.metrics_flushed_total", "metric_type:gauge") >= 1);
    assert!(sum("veneur.flush.error_total", "sink:broken") >= 1);
    // the span sink that cannot deliver drops its span, counted under its name
    assert_eq!(
        sum("veneur.sink.spans_dropped_total", "sink:traces"),
        1,
        "{lines:#?}"
    );
    assert!(sum("veneur.forward.error_total", "") >= 1);
    assert!(sum("veneur.forward.post_metrics_total", "") >= 1);
    // the global imported what the local forwarded, and says so in Veneur's name
    let global_lines = collect_lines(&global_stats, Duration::from_secs(3));
    let imported: u64 = global_lines
        .iter()
        .map(|l| parse_line(l))
        .filter(|(n, _, kind, _)| n == "veneur.worker.metrics_imported_total" && kind == "c")
        .map(|(_, v, ..)| v)
        .sum();
    assert!(imported >= 1, "{global_lines:#?}");
}

const MARKER: &str = "SECRET-MARKER-4711";

#[test]
fn secrets_never_show_in_output_logs_errors_or_metrics() {
    let failing = ssfd_e2e::failing_http();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{MARKER}-bearer\n")).unwrap();
    let http_token = dir.path().join("http-token");
    std::fs::write(&http_token, format!("{MARKER}-http\n")).unwrap();
    let sinks = format!(
        "metric_sinks:\n\
         \x20 - kind: datadog\n    name: dd\n    config: {{api_key: {MARKER}-dd, api_hostname: http://{failing}, max_retries: 1}}\n\
         \x20 - kind: prometheus_remote_write\n    name: rw\n    config:\n      url: http://user:{MARKER}-url@{failing}/api/v1/write\n      max_retries: 1\n      \
         basic_auth: {{username: me, password: {MARKER}-basic}}\n      headers: {{Authorization: Bearer {MARKER}-header}}\n\
         \x20 - kind: prometheus_remote_write\n    name: rw-token\n    config:\n      url: http://{failing}/api/v1/write\n      max_retries: 1\n      \
         bearer_token_file: {}\n\
         http_bearer_token_file: {}\n",
        token_file.display(),
        http_token.display()
    );
    // check-config shows the settings, not the secrets
    let config_path = dir.path().join("ssfd.yaml");
    std::fs::write(
        &config_path,
        format!("{sinks}tls_key: \"-----BEGIN PRIVATE KEY-----\\n{MARKER}-pem\\n-----END PRIVATE KEY-----\\n\"\ntls_certificate: \"x\"\n"),
    )
    .unwrap();
    let output = check_config(&config_path);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(
        !shown.contains(MARKER),
        "check-config shows a secret:\n{shown}"
    );
    // serve, with every sink failing and the log at debug
    let server = Server::start_with_env(
        &format!("interval: 1s\n{sinks}"),
        &[("SSFD_LOG", "debug"), ("SSFD_LOG_FORMAT", "json")],
    );
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"secret.test:1|c", server.addr("statsd udp"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = format!("Authorization: Bearer {MARKER}-http\r\n");
    loop {
        let (_, metrics) = ssfd_e2e::http_get_with(&server.http, "/metrics", &token);
        // each sink failed at least once
        let failed = [
            "ssfd_sink_failures_total{sink=\"dd\",kind=\"datadog\"}",
            "ssfd_sink_failures_total{sink=\"rw\",kind=\"prometheus_remote_write\"}",
            "ssfd_sink_failures_total{sink=\"rw-token\",kind=\"prometheus_remote_write\"}",
        ]
        .iter()
        .all(|series| ssfd_e2e::parse_metric(&metrics, series) >= 1.0);
        assert!(!metrics.contains(MARKER), "/metrics shows a secret");
        if failed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sinks never failed: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stderr = server.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("sink send failed"), "{stderr}");
    assert!(
        !stderr.contains(MARKER),
        "the log shows a secret:\n{stderr}"
    );
    // an error that stops serve does not show one either
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("http_address: 127.0.0.1:0\nmetric_sinks:\n  - kind: prometheus_remote_write\n    name: rw\n    config:\n      url: http://u:{MARKER}@x/w\n      bearer_token_file: /nonexistent/{MARKER}\n"),
    )
    .unwrap();
    let output = Command::new(ssfd_binary())
        .args(["serve", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(shown.contains("bearer_token_file"), "{shown}");
    assert!(!shown.contains(MARKER), "{shown}");
}

/// `ssfd serve -f path`, which must exit by itself within 20 s (killed and failed
/// otherwise, so a server that wrongly starts cannot hang the test).
fn serve_expecting_exit(path: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(ssfd_binary())
        .args(["serve", "-f"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "serve did not exit: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_server_on_the_same_statsd_address_is_refused() {
    let port = ssfd_e2e::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = |dir: &std::path::Path| {
        format!(
            "statsd_listen_addresses: [udp://127.0.0.1:{port}]\nhttp_address: 127.0.0.1:0\ndata_dir: {}/data\nnum_readers: 2\n",
            dir.display()
        )
    };
    let first = Server::start_config(&config(dir.path()), dir, &[]);
    let second_dir = tempfile::tempdir().unwrap();
    let path = second_dir.path().join("ssfd.yaml");
    std::fs::write(&path, config(second_dir.path())).unwrap();
    let output = serve_expecting_exit(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the second server ran: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"),
        "{stderr}"
    );
    // the first lost nothing to it
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..200 {
        udp.send_to(b"shared.port:1|c", format!("127.0.0.1:{port}"))
            .unwrap();
    }
    first.wait_metric(
        "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}",
        200.0,
    );
    // a UNIX socket a live server holds is refused too
    let sock = tempfile::tempdir().unwrap();
    let held = sock.path().join("statsd.sock");
    let unix_config = |dir: &std::path::Path| {
        format!(
            "statsd_listen_addresses: [unixgram://{}]\nhttp_address: 127.0.0.1:0\ndata_dir: {}/data\n",
            held.display(),
            dir.display()
        )
    };
    let holder_dir = tempfile::tempdir().unwrap();
    let _holder = Server::start_config(&unix_config(holder_dir.path()), holder_dir, &[]);
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("ssfd.yaml");
    std::fs::write(&path, unix_config(other.path())).unwrap();
    let output = serve_expecting_exit(&path);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_log_is_quiet_useful_and_optionally_json() {
    let server = Server::start("");
    let started = server.stderr.lock().unwrap().clone();
    let start_line = started
        .iter()
        .find(|l| l.contains("ssfd starting"))
        .unwrap_or_else(|| panic!("no start-up line: {started:#?}"));
    for field in [
        "version=",
        "config=",
        "data_dir=",
        "role=standalone",
        "upstream=none",
    ] {
        assert!(start_line.contains(field), "{field} in {start_line}");
    }
    // traffic, then 60 s idle: nothing more is written (tantivy's INFO lines were)
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"quiet:1|c", server.addr("statsd udp"))
        .unwrap();
    let span = SsfSpan {
        trace_id: 9,
        id: 9,
        start_timestamp: 1,
        end_timestamp: 2,
        service: "svc".into(),
        name: "op".into(),
        metrics: vec![SsfSample {
            name: "log".into(),
            message: "indexed".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    udp.send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let before = server.stderr.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(60));
    let after = server.stderr.lock().unwrap().clone();
    assert_eq!(
        after.len(),
        before,
        "idle, it wrote: {:#?}",
        &after[before..]
    );
    assert!(
        !after.iter().any(|l| l.contains("tantivy")),
        "a dependency's INFO line: {after:#?}"
    );
    let stderr = std::sync::Arc::clone(&server.stderr);
    assert!(server.terminate().success());
    let lines = stderr.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("ssfd stopped")),
        "{lines:#?}"
    );
}

#[test]
fn json_log_lines_carry_the_same_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = ssfd_e2e::port_zero_config(dir.path());
    let server = Server::start_config(&config, dir, &[("SSFD_LOG_FORMAT", "json")]);
    let stderr = std::sync::Arc::clone(&server.stderr);
    assert!(server.terminate().success());
    let lines = stderr.lock().unwrap().clone();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| !l.starts_with("listening "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = json
        .iter()
        .find(|j| j["fields"]["message"] == "ssfd starting")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    for field in ["version", "config", "data_dir", "role", "upstream"] {
        assert!(start["fields"][field].is_string(), "{field}: {start}");
    }
    assert!(
        json.iter()
            .any(|j| j["fields"]["message"] == "ssfd stopped")
    );
    // the flag does the same as the variable; a bad variable names itself
    let output = Command::new(ssfd_binary())
        .arg("serve")
        .env("SSFD_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SSFD_LOG_FORMAT"));
    // a filter that does not parse is an error naming SSFD_LOG, not a silent default
    let output = Command::new(ssfd_binary())
        .arg("serve")
        .env("SSFD_LOG", "ssfd=loudest")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("SSFD_LOG") && stderr.contains("loudest"),
        "{stderr}"
    );
}

/// `ssfd check-config PATH`'s output, whatever its exit status.
fn check_config(path: &std::path::Path) -> std::process::Output {
    Command::new(ssfd_binary())
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn config_errors_help() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(
        &path,
        "interval: 5s\nstatsd_listen_adresses: [udp://127.0.0.1:0]\n",
    )
    .unwrap();
    let output = check_config(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("did you mean `statsd_listen_addresses`?") && stderr.contains("line 2"),
        "{stderr}"
    );
    // a bad SSFD_ value names the variable, not the file's line of the same key
    std::fs::write(&path, "interval: 5s\n").unwrap();
    for command in ["check-config", "serve"] {
        let mut run = Command::new(ssfd_binary());
        run.arg(command);
        if command == "serve" {
            run.arg("-f");
        }
        let output = run
            .arg(&path)
            .env("SSFD_INTERVAL", "soon")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}");
        assert!(
            stderr.contains("SSFD_INTERVAL") && !stderr.contains("line 1"),
            "{command}: {stderr}"
        );
    }
    // sizes take units, in the file as README writes them
    std::fs::write(&path, "memory_limit: 300MiB\nstorage: {max_bytes: 2GiB}\n").unwrap();
    let output = check_config(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("memory_limit: 314572800") && stdout.contains("max_bytes: 2147483648"),
        "{stdout}"
    );
    // check-config warns about the sink kinds serve would ignore
    std::fs::write(
        &path,
        "metric_sinks:\n  - kind: signalfx\n    name: sfx\nspan_sinks:\n  - kind: xray\n    name: xr\n",
    )
    .unwrap();
    let output = check_config(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for kind in ["`signalfx`", "`xray`"] {
        assert!(
            stderr.contains(kind) && stderr.contains("not implemented"),
            "{kind}: {stderr}"
        );
    }
}

fn query(http: &str, args: &[&str]) -> (bool, String, String) {
    ssfd_e2e::ssfd_query(http, args)
}

#[test]
fn the_cli_a_person_expects() {
    // a server that accepts and never answers: the default time-out ends the wait
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    // built before the clock starts (the first call in a test process builds it)
    let _ = ssfd_binary();
    let started = Instant::now();
    let (ok, _, err) = query(&silent_address, &["traces", "--timeout", "1s"]);
    assert!(!ok);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("no answer within"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // a refused connection: one line that says where and what
    let closed = ssfd_e2e::free_port();
    let (ok, _, err) = query(&format!("127.0.0.1:{closed}"), &["traces"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("127.0.0.1:{closed}")) && err.contains("refused"),
        "{err}"
    );
    assert!(
        !err.contains("tcp connect error: tcp connect error"),
        "{err}"
    );
    // a password in --addr is not echoed in the error
    let (ok, _, err) = query(&format!("user:{MARKER}@127.0.0.1:{closed}"), &["traces"]);
    assert!(!ok);
    assert!(err.contains("refused") && !err.contains(MARKER), "{err}");
    let output = Command::new(ssfd_binary())
        .args([
            "emit",
            "--grpc",
            "--name",
            "x",
            "--count",
            "1",
            "--hostport",
        ])
        .arg(format!("tcp://127.0.0.1:{closed}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        !err.contains("tcp connect error: tcp connect error"),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");

    // emit --grpc to a port that accepts and never answers: its time-out ends the wait
    let started = Instant::now();
    let output = Command::new(ssfd_binary())
        .args([
            "emit",
            "--grpc",
            "--ssf",
            "--span-service",
            "x",
            "--timeout",
            "1s",
            "--hostport",
        ])
        .arg(format!("tcp://{silent_address}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("no answer within") || err.contains("timed out"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let server = Server::start("");
    // emit --grpc to the HTTP port says what is wrong
    let output = Command::new(ssfd_binary())
        .args([
            "emit",
            "--grpc",
            "--ssf",
            "--span-service",
            "x",
            "--hostport",
        ])
        .arg(format!("tcp://{}", server.http))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("does not speak gRPC"), "{err}");
    assert!(!err.contains("compression flag"), "{err}");

    // empty answers say so
    let (ok, out, _) = query(&server.http, &["traces", "--service", "nobody"]);
    assert!(ok);
    assert_eq!(out, "no traces match\n");
    let (ok, out, _) = query(&server.http, &["logs", "--service", "nobody"]);
    assert!(ok);
    assert_eq!(out, "no logs match\n");

    // --follow prints a record sent after it started
    let mut follow = Command::new(ssfd_binary())
        .args(["query", "--addr"])
        .arg(format!("http://{}", server.http))
        .args(["logs", "--follow", "--severity", "ERROR"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child_err = follow.stderr.take().unwrap();
    let mut banner = [0u8; 9];
    child_err.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"following");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let span = SsfSpan {
        trace_id: 77,
        id: 78,
        start_timestamp: now - 1_000_000,
        end_timestamp: now,
        service: "cli".into(),
        name: "op".into(),
        metrics: vec![
            SsfSample {
                name: "log".into(),
                message: "the disk is on fire".into(),
                status: 2,
                timestamp: now,
                ..Default::default()
            },
            SsfSample {
                name: "log".into(),
                message: "all is well".into(),
                status: 0,
                timestamp: now,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stdout.read_exact(&mut byte).is_ok() {
            if byte[0] == b'\n' {
                let _ = sender.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            } else {
                line.push(byte[0]);
            }
        }
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("--follow printed the new record");
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        line.contains("the disk is on fire") && line.contains("error"),
        "{line}"
    );

    // relative times, --since and severities in any case
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = query(
            &server.http,
            &[
                "logs",
                "--since",
                "1h",
                "--severity",
                "ERROR",
                "--service",
                "cli",
            ],
        );
        assert!(ok, "{err}");
        if out.contains("the disk is on fire") {
            assert!(!out.contains("all is well"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "never found: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out, err) = query(
        &server.http,
        &[
            "traces",
            "--service",
            "cli",
            "--start",
            "now-1h",
            "--end",
            "now",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.lines().count() == 2, "{out}");
    let (ok, out, _) = query(
        &server.http,
        &["traces", "--service", "cli", "--start", "1h"],
    );
    assert!(ok && out.lines().count() == 2, "{out}");
    // an hour ago until 30 minutes ago holds nothing of now
    let (ok, out, _) = query(
        &server.http,
        &[
            "traces",
            "--service",
            "cli",
            "--start",
            "1h",
            "--end",
            "30m",
        ],
    );
    assert!(ok);
    assert_eq!(out, "no traces match\n");
    let (ok, out, _) = query(&server.http, &["traces", "--service", "cli", "--ids"]);
    assert!(ok);
    let id = out.trim();
    let (ok, out, err) = query(&server.http, &["trace", id]);
    assert!(ok, "{err}");
    assert!(out.contains("cli op"), "{out}");
    // a negative decimal id is an id, not a flag
    let (ok, _, err) = query(&server.http, &["trace", "-7539099173140291317"]);
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
}
