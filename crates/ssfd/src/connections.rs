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
        let idle = open
            .iter()
            .min_by_key(|(_, o)| o.active_ms.load(Relaxed))
            .map(|(_, o)| Arc::clone(&o.close));
        drop(open);
        match idle {
            Some(close) => {
                close.notify_one();
                true
            }
            None => false,
        }
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
                // out of descriptors (EMFILE, ENFILE): make room, then accept again
                if !table.close_longest_idle() {
                    tracing::warn!(%error, "http: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        while table.open.lock().map_or(0, |o| o.len()) >= max {
            if !table.close_longest_idle() {
                break;
            }
            // the closed connection's task removes it
            tokio::task::yield_now().await;
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
        let io = hyper_util::rt::TokioIo::new(Tracked {
            inner: stream,
            active_ms,
            table: Arc::clone(&table),
        });
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (table, mut stopped) = (Arc::clone(&table), stopped.clone());
        tasks.spawn(async move {
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
            if let Ok(mut open) = table.open.lock() {
                open.remove(&id);
            }
        });
        // finished connections' results are not kept
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
