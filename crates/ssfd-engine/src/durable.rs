//! The seam between the write-ahead log (ssfd-ingest's `wal`) and the intervals.
//!
//! Durable ingest (gRPC, OTLP) hands a request to the pipeline and appends it to the log
//! while holding the [`Gate`] shared. Between intervals the flusher takes the gate
//! exclusively, moves to the next epoch and asks the log to start a new segment, so each
//! segment holds exactly the requests of one interval. Every sample batch carries the
//! epoch it was sent in and a metric worker never folds a batch of the next epoch into
//! the interval being swapped out (`pipeline.rs`). The log hands back a [`Token`] for
//! the closed segment; the interval's flush carries it to every sink and the span store
//! gets it behind that interval's spans. When the last holder has delivered (or
//! dropped and counted) its part, the token drops and the log may delete the segment.
//! A crash before then replays the segment into the stores and the open interval.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// Held while some part of an interval is not yet delivered; dropping the last clone
/// tells the log that the interval's segment is no longer needed.
pub type Token = Arc<dyn Any + Send + Sync>;

/// An interval's token as the flush carries it (none without a log).
#[derive(Clone, Default)]
pub struct Durable(pub Option<Token>);

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Durable(token)"
        } else {
            "Durable(none)"
        })
    }
}

/// Tokens say nothing about a flush's content.
impl PartialEq for Durable {
    fn eq(&self, _: &Durable) -> bool {
        true
    }
}

/// The write-ahead log as the flusher sees it.
pub trait Log: Send + Sync {
    /// Closes the current segment (every request appended before this call) and opens
    /// the next. The tokens cover the closed one: the first its metrics (held by the
    /// interval's flush), the second its spans and logs (held by the span store).
    fn rotate(&self) -> (Token, Token);
}

/// Orders durable requests against interval boundaries (see the module comment).
#[derive(Default)]
pub struct Gate {
    lock: RwLock<()>,
    epoch: AtomicU64,
    log: RwLock<Option<Arc<dyn Log>>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl Gate {
    /// Hold this while handing a request to the pipeline and appending it to the log.
    /// Never hold it across an `.await`.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The interval that batches sent now belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Attaches the log (at start, before intake opens).
    pub fn set_log(&self, log: Arc<dyn Log>) {
        *self.log.write().unwrap_or_else(|e| e.into_inner()) = Some(log);
    }

    /// Between intervals: waits for requests in flight, moves to the next epoch and
    /// rotates the log. Returns the new epoch and the closed segment's tokens (metrics,
    /// spans).
    pub fn advance(&self) -> (u64, Option<(Token, Token)>) {
        let _exclusive = self.lock.write().unwrap_or_else(|e| e.into_inner());
        let next = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let token = self
            .log
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|log| log.rotate());
        (next, token)
    }
}
