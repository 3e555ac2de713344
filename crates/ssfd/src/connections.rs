//! The HTTP listener's connections (SPEC 7: no client can starve ssfd): each is
//! served by hyper's HTTP/1 with a 10 s limit on a request's headers (which also closes
//! a keep-alive connection idle that long: hyper starts the limit as it waits for the
//! next request), and the listener keeps at most `http_max_connections` open: at the
//! bound, and when the process is out of descriptors, it closes its longest-idle
//! connection to admit the new one. Idle means no byte read or written.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One open connection: when it last moved a byte, and how to close it.
struct Open {
    active_ms: Arc<AtomicU64>,
    close: Arc<tokio::sync::Notify>,
}

/// The open connections of one listener.
struct Table {
    started: Instant,
    open: Mutex<HashMap<u64, Open>>,
}

impl Table {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Closes the connection idle the longest; false when none is open.
    fn close_longest_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let Some(id) = open
            .iter()
            .min_by_key(|(_, o)| o.active_ms.load(Relaxed))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        // out of the table at once: it no longer counts, and is never picked twice
        let mut open = open;
        if let Some(idle) = open.remove(&id) {
            idle.close.notify_one();
        }
        true
    }
}

/// A stream that notes when it last moved a byte.
struct Tracked<S> {
    inner: S,
    active_ms: Arc<AtomicU64>,
    table: Arc<Table>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.active_ms.store(self.table.now_ms(), Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Takes a connection out of the table when its task ends.
struct Leave {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// What an HTTP/2 client (gRPC at the wrong port) is told before the connection closes.
const NOT_HTTP2: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 75\r\nconnection: close\r\n\r\nthis is ssfd's HTTP/1.1 port; gRPC is served on its gRPC listeners instead\n";

/// A gRPC or HTTP/2 client at the HTTP/1.1 port gets one plain 400. What it sent is
/// read first and the connection is closed by half (then drained), so the client reads
/// the answer instead of a reset.
async fn answer_http2(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
    let _ = stream.write_all(NOT_HTTP2).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// True when the client opens with HTTP/2's preface (waits at most the header limit).
async fn speaks_http2(stream: &tokio::net::TcpStream) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    let mut first = [0u8; 14];
    let deadline = tokio::time::Instant::now() + HEADER_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n >= PREFACE.len() || n == 0 => return first[..n] == *PREFACE,
            Ok(Ok(n)) if first[..n] != PREFACE[..n] => return false,
            // a prefix of the preface so far: wait for more
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => return false,
        }
    }
}

/// The default bound: three quarters of the descriptors this process may open, less a
/// reserve for the stores, the write-ahead log and the other listeners.
pub fn default_max() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur as usize
    } else {
        1024
    };
    (soft / 4 * 3).saturating_sub(256).max(64)
}

/// Serves `router` on `listener` until `stopped` turns true, with at most `max` open
/// connections; then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    max: usize,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let table = Arc::new(Table {
        started: Instant::now(),
        open: Mutex::new(HashMap::new()),
    });
    let mut next_id = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                let out_of_descriptors =
                    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                // out of descriptors: make room, then accept again
                if !(out_of_descriptors && table.close_longest_idle()) {
                    tracing::warn!(%error, "http: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                continue;
            }
        };
        while table.open.lock().map_or(0, |o| o.len()) >= max {
            if !table.close_longest_idle() {
                break;
            }
        }
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let active_ms = Arc::new(AtomicU64::new(table.now_ms()));
        let close = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut open) = table.open.lock() {
            open.insert(
                id,
                Open {
                    active_ms: Arc::clone(&active_ms),
                    close: Arc::clone(&close),
                },
            );
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (table, mut stopped) = (Arc::clone(&table), stopped.clone());
        tasks.spawn(async move {
            // leaves the table however the task ends, a panic included
            let _leave = Leave {
                table: Arc::clone(&table),
                id,
            };
            let http2 = tokio::select! {
                http2 = speaks_http2(&stream) => http2,
                // closed for a newer connection before it sent a byte
                () = close.notified() => return,
            };
            if http2 {
                answer_http2(stream).await;
                return;
            }
            let io = hyper_util::rt::TokioIo::new(Tracked {
                inner: stream,
                active_ms,
                table: Arc::clone(&table),
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = close.notified() => {}
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
        // finished connections' results are not kept
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
