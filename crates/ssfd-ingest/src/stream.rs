//! Stream listeners (tokio): statsd lines over TCP, framed SSF over TCP and UNIX
//! sockets. A stream applies backpressure: when a queue is full the connection's task
//! waits for room, so the kernel's socket buffers push back on the sender. A bad line
//! or span is counted and skipped; a framing error is counted and closes the connection.

use crate::handoff::{Handoff, HandoffConfig};
use ssfd_engine::{Pipeline, WhenFull};
use ssfd_telemetry::{Listener, Protocol, Reason};
use ssfd_wire::framing;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

/// Sends what a stream's hand-off holds, waiting for room when a queue is full (the
/// wait happens off the async executor, in `block_in_place`). Nothing is dropped.
pub fn flush_with_backpressure(handoff: &mut Handoff) {
    if handoff.try_flush().is_err() {
        tokio::task::block_in_place(|| {
            let _ = handoff.flush(WhenFull::Block);
        });
    }
}

/// Everything a stream connection needs.
#[derive(Clone)]
pub struct StreamContext {
    pub pipeline: Pipeline,
    pub handoff: HandoffConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// What a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPayload {
    StatsdLines,
    SsfFrames,
}

/// Accepts TCP connections until shutdown.
pub async fn serve_tcp(listener: TcpListener, payload: StreamPayload, context: StreamContext) {
    let mut shutdown = context.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, payload, Protocol::Tcp, context.clone()));
                }
                Err(error) => tracing::warn!(%error, "tcp accept failed"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Accepts UNIX stream connections until shutdown.
pub async fn serve_unix(listener: UnixListener, payload: StreamPayload, context: StreamContext) {
    let mut shutdown = context.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, payload, Protocol::Unix, context.clone()));
                }
                Err(error) => tracing::warn!(%error, "unix accept failed"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection<S: AsyncRead + Unpin>(
    stream: S,
    payload: StreamPayload,
    protocol: Protocol,
    context: StreamContext,
) {
    let listener = match payload {
        StreamPayload::StatsdLines => Listener::Statsd,
        StreamPayload::SsfFrames => Listener::Ssf,
    };
    let handoff = Handoff::new(
        context.pipeline.clone(),
        context.handoff.clone(),
        listener,
        protocol,
    );
    let result = match payload {
        StreamPayload::StatsdLines => statsd_lines(stream, handoff, context).await,
        StreamPayload::SsfFrames => ssf_frames(stream, handoff, context).await,
    };
    if let Err(error) = result {
        tracing::debug!(%error, "stream connection ended");
    }
}

const READ_CHUNK: usize = 64 * 1024;

async fn statsd_lines<S: AsyncRead + Unpin>(
    mut stream: S,
    mut handoff: Handoff,
    context: StreamContext,
) -> std::io::Result<()> {
    let max_line = context.handoff.metric_max_length;
    let mut shutdown = context.shutdown.clone();
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut discarding = false;
    loop {
        buffer.reserve(READ_CHUNK);
        let read = tokio::select! {
            read = stream.read_buf(&mut buffer) => read?,
            _ = shutdown.changed() => 0,
        };
        if read == 0 {
            if !discarding && !buffer.is_empty() {
                let _ = handoff.statsd_line(trim_cr(&buffer));
            }
            flush_with_backpressure(&mut handoff);
            return Ok(());
        }
        let mut consumed = 0;
        while let Some(newline) = memchr_from(&buffer, consumed) {
            let line = trim_cr(&buffer[consumed..newline]);
            if discarding {
                discarding = false;
            } else if !line.is_empty() {
                let _ = handoff.statsd_line(line);
            }
            consumed = newline + 1;
        }
        buffer.drain(..consumed);
        if !discarding && buffer.len() > max_line {
            // a line without its newline already longer than the limit: count it once
            handoff.count_received(1);
            handoff.reject_reason(Reason::TooLong);
            discarding = true;
        }
        if discarding {
            buffer.clear();
        }
        flush_with_backpressure(&mut handoff);
    }
}

fn memchr_from(buffer: &[u8], from: usize) -> Option<usize> {
    buffer[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| p + from)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

async fn ssf_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    mut handoff: Handoff,
    context: StreamContext,
) -> std::io::Result<()> {
    let mut shutdown = context.shutdown.clone();
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        buffer.reserve(READ_CHUNK);
        let read = tokio::select! {
            read = stream.read_buf(&mut buffer) => read?,
            _ = shutdown.changed() => 0,
        };
        let (bodies, consumed, error) = framing::split_frames(&buffer);
        for body in bodies {
            let _ = handoff.ssf_packet(body);
        }
        if let Some(error) = error {
            handoff.count_received(1);
            handoff.reject_reason(Reason::Framing);
            flush_with_backpressure(&mut handoff);
            tracing::debug!(%error, "closing ssf stream after a framing error");
            return Ok(());
        }
        buffer.drain(..consumed);
        if read == 0 {
            if !buffer.is_empty() {
                // a connection that ends inside a frame
                handoff.count_received(1);
                handoff.reject_reason(Reason::Framing);
            }
            flush_with_backpressure(&mut handoff);
            return Ok(());
        }
        flush_with_backpressure(&mut handoff);
    }
}
