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

/// Which queues a call needs: its line. A call that carries spans or log records waits
/// in another line than one that carries only metrics, so a full span queue does not
/// hold up `SendPacket` or forwarded metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Spans or log records (and the metrics derived from them).
    Spans = 0,
    /// Metrics only (DogStatsD packets, forwarded metrics, OTLP metrics).
    Metrics = 1,
}

/// One line of waiting calls.
#[derive(Debug, Default)]
struct Line {
    /// Tokio's mutex hands itself on in FIFO order.
    turn: tokio::sync::Mutex<()>,
    /// Calls in the line or at its head: a new call goes straight to the queues only
    /// when there are none, so it cannot overtake them.
    queued: AtomicUsize,
}

/// Each call's wait: `grpc_wait`, within the call's own deadline. Waiting calls form
/// a line per [`Class`] and are served in the order they came (as senders blocked on
/// Veneur's Go channel are): only the call at the head of a line waits for a worker to
/// make room, so a wake-up wakes few tasks, and no call starves while later ones get
/// in.
#[derive(Clone, Debug)]
pub struct Waiting {
    notifier: Arc<Notifier>,
    pipeline: Pipeline,
    /// `grpc_wait` (SPEC 3.3, default 1 s).
    pub grpc_wait: Duration,
    lines: Arc<[Line; 2]>,
}

/// Takes a call out of its line's count when it leaves, however it leaves (its future
/// may be dropped at any await: a cancelled call, a connection gone).
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The head of a line, registered in the pipeline's [`ssfd_engine::Room`] while it
/// waits; leaves it when dropped, so a cancelled call never stays counted (every
/// worker would wake the waiters on every item for good).
struct Registered<'a>(&'a ssfd_engine::Room);

impl<'a> Registered<'a> {
    fn enter(room: &'a ssfd_engine::Room) -> Registered<'a> {
        room.enter();
        Registered(room)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl Waiting {
    /// Installs the waker in `pipeline`'s room (once per pipeline).
    pub fn new(pipeline: Pipeline, grpc_wait: Duration) -> Waiting {
        let notifier = Arc::new(Notifier::default());
        let installed = pipeline
            .room()
            .install(Arc::clone(&notifier) as Arc<dyn Wake>);
        // a second `Waiting` on one pipeline would never be woken (only polled)
        debug_assert!(
            std::ptr::addr_eq(Arc::as_ptr(&installed), Arc::as_ptr(&notifier)),
            "one Waiting per pipeline"
        );
        Waiting {
            notifier,
            pipeline,
            grpc_wait,
            lines: Arc::default(),
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
        class: Class,
        deadline: Instant,
        mut attempt: impl FnMut() -> Result<T, Attempt<E>>,
    ) -> Result<T, Result<E, Refusal>> {
        let line = &self.lines[class as usize];
        if line.queued.load(SeqCst) == 0 {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Attempt::Failed(error)) => return Err(Ok(error)),
                Err(Attempt::Full) => {}
            }
        }
        if ssfd_engine::memory::under_pressure() {
            return Err(Err(Refusal::MemoryLimit));
        }
        line.queued.fetch_add(1, SeqCst);
        let _in_line = InLine(&line.queued);
        let Ok(_turn) = tokio::time::timeout_at(deadline, line.turn.lock()).await else {
            return Err(Err(Refusal::QueueFull));
        };
        let room = self.pipeline.room();
        loop {
            // registered before the attempt, so a worker's wake after it is not lost
            let notified = self.notifier.0.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let registered = Registered::enter(room);
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
            drop(registered);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }
}

/// gRPC's `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(text: &str) -> Option<Duration> {
    if !text.is_ascii() {
        return None;
    }
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

    fn waiting() -> Waiting {
        let (pipeline, _, _) = Pipeline::channels(ssfd_engine::PipelineConfig::default());
        Waiting::new(pipeline, Duration::from_secs(5))
    }

    /// A call whose future is dropped while it waits (a cancelled call, a connection
    /// gone) leaves the line and the room: else every worker would wake the waiters on
    /// every item for good, and later calls would queue behind a ghost.
    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_trace() {
        let waiting = waiting();
        let deadline = Instant::now() + Duration::from_secs(5);
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            waiting.with_room(Class::Spans, deadline, || Err::<(), _>(Attempt::<()>::Full)),
        )
        .await;
        assert!(cancelled.is_err(), "it was still waiting");
        assert_eq!(waiting.pipeline.room().waiting(), 0);
        assert_eq!(waiting.lines[Class::Spans as usize].queued.load(SeqCst), 0);
        // the next call goes straight through
        let result = waiting
            .with_room(Class::Spans, deadline, || Ok::<_, Attempt<()>>(7))
            .await;
        assert_eq!(result.ok(), Some(7));
    }

    /// A full span queue does not hold up a metrics-only call.
    #[tokio::test]
    async fn a_full_span_line_does_not_hold_up_metrics() {
        let waiting = waiting();
        let deadline = Instant::now() + Duration::from_secs(5);
        let stuck = waiting.clone();
        let span_call = tokio::spawn(async move {
            stuck
                .with_room(Class::Spans, deadline, || Err::<(), _>(Attempt::<()>::Full))
                .await
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let started = std::time::Instant::now();
        let result = waiting
            .with_room(Class::Metrics, deadline, || Ok::<_, Attempt<()>>(1))
            .await;
        assert_eq!(result.ok(), Some(1));
        assert!(started.elapsed() < Duration::from_secs(1));
        span_call.abort();
    }

    /// Past the deadline a full queue is refused as `QueueFull`.
    #[tokio::test]
    async fn a_queue_full_past_the_deadline_is_refused() {
        let waiting = waiting();
        let deadline = Instant::now() + Duration::from_millis(60);
        let result = waiting
            .with_room(Class::Metrics, deadline, || {
                Err::<(), _>(Attempt::<()>::Full)
            })
            .await;
        assert!(matches!(result, Err(Err(Refusal::QueueFull))));
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "1é", "é"] {
            assert_eq!(grpc_timeout(bad), None, "{bad}");
        }
    }
}
