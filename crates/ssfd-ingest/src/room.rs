//! Waiting for room in the pipeline's queues (SPEC 3.3): a unary call that finds a
//! queue full waits, as Veneur's blocking channel makes its callers wait, up to
//! `grpc_wait` (never past the call's deadline), then refuses. It waits as an async
//! task woken by the workers ([`ssfd_engine::Room`]), so no runtime thread is held
//! and no one polls. Near `memory_limit` nothing waits: memory is what is short.

use ssfd_engine::{Pipeline, Wake};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::time::Instant;

/// The waker ingest installs in the pipeline's [`ssfd_engine::Room`].
#[derive(Debug, Default)]
struct Notifier(tokio::sync::Notify);

impl Wake for Notifier {
    fn wake(&self) {
        self.0.notify_waiters();
    }
}

/// A wait that nothing woke ends after this and tries again: a wake-up lost between
/// a failed attempt and the wait costs at most this.
const SLICE: Duration = Duration::from_millis(20);

/// How an attempt ended when it did not succeed.
#[derive(Debug)]
pub enum Attempt<E> {
    /// A queue was full and nothing was sent: it may be tried again.
    Full,
    /// Anything else: answered as it is.
    Failed(E),
}

/// Why a call was refused after its wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The queue stayed full for the whole wait.
    QueueFull,
    /// Memory is near `memory_limit`: nothing waits.
    MemoryLimit,
}

/// Each call's wait: `grpc_wait`, within the call's own deadline. Waiting calls form
/// one line and are served in the order they came (as senders blocked on Veneur's Go
/// channel are): only the call at the head of the line waits for a worker to make
/// room, so a wake-up wakes one task, and no call starves while later ones get in.
#[derive(Clone, Debug)]
pub struct Waiting {
    notifier: Arc<Notifier>,
    pipeline: Pipeline,
    /// `grpc_wait` (SPEC 3.3, default 1 s).
    pub grpc_wait: Duration,
    /// The line of waiting calls (tokio's mutex hands itself on in FIFO order).
    line: Arc<tokio::sync::Mutex<()>>,
    /// Calls in the line or at its head: a new call goes straight to the queues only
    /// when there are none, so it cannot overtake them.
    queued: Arc<AtomicUsize>,
}

/// Takes a call out of the line's count when it leaves, however it leaves.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Waiting {
    /// Installs the waker in `pipeline`'s room (once per pipeline).
    pub fn new(pipeline: Pipeline, grpc_wait: Duration) -> Waiting {
        let notifier = Arc::new(Notifier::default());
        pipeline
            .room()
            .install(Arc::clone(&notifier) as Arc<dyn Wake>);
        Waiting {
            notifier,
            pipeline,
            grpc_wait,
            line: Arc::default(),
            queued: Arc::default(),
        }
    }

    /// When a call that starts now stops waiting: `grpc_wait`, or sooner when the
    /// client's `grpc-timeout` ends first (keeping a tenth of it, at most 100 ms, to
    /// answer in).
    pub fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        let mut wait = self.grpc_wait;
        if let Some(timeout) = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout)
        {
            let margin = (timeout / 10).min(Duration::from_millis(100));
            wait = wait.min(timeout.saturating_sub(margin));
        }
        Instant::now() + wait
    }

    /// Runs `attempt` until it succeeds or fails otherwise than with a full queue;
    /// while a queue is full, waits in line for a worker to take something, until
    /// `deadline`. `Err(Ok(e))` is the attempt's own error, `Err(Err(r))` a refusal.
    pub async fn with_room<T, E>(
        &self,
        deadline: Instant,
        mut attempt: impl FnMut() -> Result<T, Attempt<E>>,
    ) -> Result<T, Result<E, Refusal>> {
        if self.queued.load(SeqCst) == 0 {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Attempt::Failed(error)) => return Err(Ok(error)),
                Err(Attempt::Full) => {}
            }
        }
        if ssfd_engine::memory::under_pressure() {
            return Err(Err(Refusal::MemoryLimit));
        }
        self.queued.fetch_add(1, SeqCst);
        let _in_line = InLine(&self.queued);
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.line.lock()).await else {
            return Err(Err(Refusal::QueueFull));
        };
        let room = self.pipeline.room();
        loop {
            // registered before the attempt, so a worker's wake after it is not lost
            let notified = self.notifier.0.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            room.enter();
            let result = attempt();
            let outcome = match result {
                Ok(value) => Some(Ok(value)),
                Err(Attempt::Failed(error)) => Some(Err(Ok(error))),
                Err(Attempt::Full) if ssfd_engine::memory::under_pressure() => {
                    Some(Err(Err(Refusal::MemoryLimit)))
                }
                Err(Attempt::Full) if Instant::now() >= deadline => {
                    Some(Err(Err(Refusal::QueueFull)))
                }
                Err(Attempt::Full) => {
                    let until = deadline.min(Instant::now() + SLICE);
                    let _ = tokio::time::timeout_at(until, notified).await;
                    None
                }
            };
            room.leave();
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }
}

/// gRPC's `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad}");
        }
    }
}
