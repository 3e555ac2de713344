//! Datagram listeners: statsd over UDP and unixgram, SSF over UDP. Each reader is a
//! blocking thread on its own socket (UDP readers share a port with SO_REUSEPORT) that
//! takes up to 64 datagrams per `recvmmsg` call, coalescing wake-ups at low rates, and hands them off with the
//! drop-newest policy. Truncated datagrams are counted as `too_long`; the kernel's
//! receive-queue drops are read with `SO_MEMINFO` once per receive round.

use crate::handoff::{Handoff, HandoffConfig};
use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};
use ssfd_engine::{Pipeline, WhenFull};
use ssfd_telemetry::{Listener, Protocol, Reason};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Statsd,
    Ssf,
}

/// Binds `readers` UDP sockets on one address (port 0 picks one port for all).
pub fn bind_udp(address: &str, readers: usize, receive_buffer: usize) -> io::Result<Vec<Socket>> {
    let mut target: SocketAddr = address.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad address {address}"),
        )
    })?;
    if target.port() != 0 {
        refuse_if_held(target)?;
    }
    let mut sockets = Vec::new();
    for _ in 0..readers.max(1) {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::DGRAM,
            Some(SockProtocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        set_receive_buffer(&socket, receive_buffer);
        socket.bind(&SockAddr::from(target))?;
        target = socket.local_addr()?.as_socket().unwrap_or(target);
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Our readers share a UDP port with `SO_REUSEPORT`, which would also let a second
/// server (or anything else of the same user that sets it) bind the port and silently
/// take part of the traffic. A socket bound first without `SO_REUSEPORT` finds out:
/// it fails only if another socket holds the address.
fn refuse_if_held(target: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    match probe.bind(&SockAddr::from(target)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "udp://{target} is already in use by another process (is another ssfd or a statsd running?)"
            ),
        )),
        Err(error) => Err(error),
    }
}

/// Whether a UNIX socket at `path` has a live listener: a connect succeeds (or the
/// socket says it is busy) only then; a stale file left by a crash refuses.
pub fn unix_path_in_use(path: &str, kind: Type) -> bool {
    let Ok(socket) = Socket::new(Domain::UNIX, kind, None) else {
        return false;
    };
    let Ok(address) = unix_address(path) else {
        return false;
    };
    match socket.connect(&address) {
        Ok(()) => true,
        Err(error) => !matches!(
            error.raw_os_error(),
            Some(libc::ECONNREFUSED | libc::ENOENT | libc::ENOTSOCK | libc::EPROTOTYPE)
        ),
    }
}

/// Binds a unixgram socket; a path starting with `@` is an abstract socket. A path a
/// live socket holds is refused; a stale one is replaced.
pub fn bind_unixgram(path: &str, receive_buffer: usize) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    let address = unix_address(path)?;
    if !path.starts_with('@') {
        if unix_path_in_use(path, Type::DGRAM) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("unixgram://{path} is already in use by another process"),
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    set_receive_buffer(&socket, receive_buffer);
    socket.bind(&address)?;
    Ok(socket)
}

/// Sets the receive buffer to `bytes`, past `net.core.rmem_max` when the process may
/// (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else as far as the kernel allows.
fn set_receive_buffer(socket: &Socket, bytes: usize) {
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = socket.set_recv_buffer_size(bytes);
    }
    if let Ok(actual) = socket.recv_buffer_size()
        && actual < bytes
    {
        tracing::warn!(
            wanted = bytes,
            actual,
            "udp receive buffer capped by net.core.rmem_max"
        );
    }
}

/// A UNIX socket address; `@name` is abstract.
pub fn unix_address(path: &str) -> io::Result<SockAddr> {
    match path.strip_prefix('@') {
        Some(name) => SockAddr::unix(format!("\0{name}")),
        None => SockAddr::unix(path),
    }
}

/// Everything a reader thread needs.
#[derive(Clone)]
pub struct ReaderContext {
    pub pipeline: Pipeline,
    pub handoff: HandoffConfig,
    pub shutdown: Arc<AtomicBool>,
}

/// Starts one reader thread per socket.
pub fn spawn_readers(
    sockets: Vec<Socket>,
    payload: Payload,
    protocol: Protocol,
    max_datagram: usize,
    context: ReaderContext,
) -> io::Result<Vec<JoinHandle<()>>> {
    let listener = match payload {
        Payload::Statsd => Listener::Statsd,
        Payload::Ssf => Listener::Ssf,
    };
    let kernel_drops = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let context = context.clone();
        let kernel_drops = Arc::clone(&kernel_drops);
        let name = format!("{}-{}-reader-{index}", listener.label(), protocol.label());
        handles.push(std::thread::Builder::new().name(name).spawn(move || {
            let mut handoff = Handoff::new(
                context.pipeline.clone(),
                context.handoff.clone(),
                listener,
                protocol,
            );
            if payload == Payload::Statsd {
                handoff.cache_keys();
            }
            read_loop(
                socket,
                payload,
                max_datagram,
                handoff,
                &context.shutdown,
                &kernel_drops,
                listener,
            );
        })?);
    }
    Ok(handles)
}

/// The socket's count of datagrams the kernel dropped (`sk_drops`: a full receive
/// buffer), read with `SO_MEMINFO` once per receive round. (`SO_RXQ_OVFL` gives the same
/// count as a control message on every datagram, which costs the kernel a `put_cmsg`
/// per datagram and was ~7 % of a busy reader's time.)
fn kernel_drops_of(fd: std::os::fd::RawFd) -> Option<u32> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: a valid fd; the kernel writes at most `len` bytes into `info`.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let index = libc::SK_MEMINFO_DROPS as usize;
    (result == 0 && len as usize > index * 4).then(|| info[index])
}

/// Datagrams a reader takes per `recvmmsg` call.
pub const BATCH: usize = 64;

/// Buffers for one `recvmmsg` round of up to [`BATCH`] datagrams (the datagram readers',
/// and `loadgen floor`'s, which measures them).
pub struct RecvBatch {
    buffers: Vec<Vec<u8>>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `max_datagram` bytes each.
    pub fn new(max_datagram: usize) -> RecvBatch {
        RecvBatch {
            buffers: (0..BATCH).map(|_| vec![0u8; max_datagram.max(1)]).collect(),
            // SAFETY: plain-old-data structs; all-zero is a valid value.
            iovecs: vec![unsafe { std::mem::zeroed() }; BATCH],
            headers: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// One `recvmmsg` round on `fd`: waits for a datagram, then takes what else is
    /// queued, up to [`BATCH`]. Returns how many came (a read timeout is an error).
    pub fn receive(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        for index in 0..BATCH {
            self.iovecs[index].iov_base = self.buffers[index].as_mut_ptr().cast();
            self.iovecs[index].iov_len = self.buffers[index].len();
            let header = &mut self.headers[index].msg_hdr;
            header.msg_iov = &mut self.iovecs[index];
            header.msg_iovlen = 1;
            header.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers owned by `self`.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(received as usize)
        }
    }

    /// Datagram `index` of the last round; `None` when it was cut short (longer than
    /// `max_datagram`).
    pub fn datagram(&self, index: usize) -> Option<&[u8]> {
        let header = &self.headers[index];
        if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        Some(&self.buffers[index][..header.msg_len as usize])
    }
}
/// Lines a reader gathers before handing them off while traffic is steady; a quiet
/// round always hands off what it has, so nothing waits longer than one round. It is
/// checked after each round, so a shard's batch may pass it by a round's lines; the
/// batch pool keeps batches of up to twice this (`BatchPool`), so with a single metric
/// worker the batches still go round. (2,048 before the readers folded repeats.)
const FLUSH_AT: usize = 4096;
/// After a `recvmmsg` round that found fewer than `BATCH / 4` datagrams, the reader
/// sleeps this long so the next round finds a batch: one wake-up (and one hand-off to
/// each worker) per batch instead of per datagram. It bounds the added latency; the
/// socket buffer (`read_buffer_size_bytes`) holds what arrives meanwhile.
const COALESCE: Duration = Duration::from_millis(1);

fn read_loop(
    socket: Socket,
    payload: Payload,
    max_datagram: usize,
    mut handoff: Handoff,
    shutdown: &AtomicBool,
    kernel_drops: &AtomicU64,
    listener: Listener,
) {
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new(max_datagram);
    let mut last_drops: u32 = 0;
    while !shutdown.load(Ordering::Relaxed) {
        let received = batch.receive(fd);
        if let Some(drops) = kernel_drops_of(fd)
            && drops != last_drops
        {
            kernel_drops.fetch_add(drops.wrapping_sub(last_drops) as u64, Ordering::Relaxed);
            last_drops = drops;
            ssfd_telemetry::set_udp_kernel_drops(listener, kernel_drops.load(Ordering::Relaxed));
        }
        let received = match received {
            Ok(received) => received,
            Err(error) => {
                // an idle socket: hand off whatever is still pending
                let _ = handoff.flush(WhenFull::DropNewest);
                match error.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    _ => {
                        tracing::warn!(%error, "datagram receive failed");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
            }
        };
        for index in 0..received {
            let Some(datagram) = batch.datagram(index) else {
                handoff.count_received(1);
                handoff.reject_reason(Reason::TooLong);
                continue;
            };
            match payload {
                Payload::Statsd => handoff.statsd_packet(datagram),
                Payload::Ssf => {
                    let _ = handoff.ssf_packet(datagram);
                }
            }
        }
        let quiet = received < BATCH / 4;
        if quiet || handoff.pending() >= FLUSH_AT {
            let _ = handoff.flush(WhenFull::DropNewest);
        }
        if quiet {
            std::thread::sleep(COALESCE);
        }
    }
    let _ = handoff.flush(WhenFull::DropNewest);
}
