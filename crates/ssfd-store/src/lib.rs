//! The durable stores under `data_dir` (SPEC 5, issue 4): spans in redb blocks with an
//! in-memory trace index ([`spans`]), log records in a tantivy full-text index
//! ([`logs`]). [`Store`] is the span workers' sink: it stores each batch of spans,
//! indexes the log samples embedded in them with their span context, and indexes the
//! log records sent alone (SSF log samples, DogStatsD events and service checks).
//! Both stores evict past `retention` (counted from receipt) and share
//! `storage.max_bytes`: past it, the larger of the two evicts its oldest.

pub mod logs;
pub mod spans;

pub use logs::{LogQuery, LogStore};
pub use spans::{Dependency, SpanStore, StoreError, TraceQuery, TraceSummary};

use ssfd_engine::{LogRecord, SpanBatch, SpanSink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// `storage.max_bytes`, shared by the span and log stores.
#[derive(Debug)]
pub struct Budget {
    max_bytes: u64,
    spans: AtomicU64,
    logs: AtomicU64,
}

impl Budget {
    pub fn new(max_bytes: u64) -> Arc<Budget> {
        Arc::new(Budget {
            max_bytes,
            spans: AtomicU64::new(0),
            logs: AtomicU64::new(0),
        })
    }

    fn set_spans(&self, bytes: u64) {
        self.spans.store(bytes, Relaxed);
    }

    fn set_logs(&self, bytes: u64) {
        self.logs.store(bytes, Relaxed);
    }

    /// True when the span store, holding `spans` bytes, should evict its oldest.
    fn spans_over(&self, spans: u64) -> bool {
        let logs = self.logs.load(Relaxed);
        spans + logs > self.max_bytes && spans >= logs
    }

    /// True when the log store, holding `logs` bytes, should evict its oldest.
    fn logs_over(&self, logs: u64) -> bool {
        let spans = self.spans.load(Relaxed);
        spans + logs > self.max_bytes && logs > spans
    }
}

/// Both stores, as the span workers' sink.
/// The most log records one trace answer joins (the newest, when a trace has more).
pub const MAX_TRACE_LOGS: usize = 10_000;

pub struct Store {
    pub spans: SpanStore,
    pub logs: LogStore,
    /// Write-ahead-log tokens whose spans are not durable yet (a failed sync).
    held: std::sync::Mutex<Vec<ssfd_engine::Token>>,
    /// Tokens of intervals whose spans were dropped for a full disk: kept until the
    /// process ends, so the log replays those spans at the next start.
    kept: std::sync::Mutex<Vec<ssfd_engine::Token>>,
}

impl Store {
    /// Opens (or creates) both stores under `dir`.
    pub fn open(dir: &Path, max_bytes: u64, retention: Duration) -> Result<Store, StoreError> {
        let budget = Budget::new(max_bytes);
        Ok(Store {
            spans: SpanStore::open(dir, Arc::clone(&budget), retention)?,
            logs: LogStore::open(&dir.join("logs"), budget, retention)?,
            held: std::sync::Mutex::default(),
            kept: std::sync::Mutex::default(),
        })
    }

    /// Writes and commits everything pending (at shutdown).
    /// The log records of a trace (SPEC 5: every record with its trace id, whichever
    /// request carried it), at most [`MAX_TRACE_LOGS`], oldest first.
    pub fn trace_logs(
        &self,
        trace_id: ssfd_wire::ids::TraceId,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let mut records = self.logs.search(&LogQuery {
            trace_id: Some(trace_id),
            limit: MAX_TRACE_LOGS,
            ..Default::default()
        })?;
        records.reverse();
        Ok(records)
    }

    pub fn sync(&self) -> Result<(), StoreError> {
        self.spans.sync()?;
        self.logs.commit()
    }
}

impl SpanSink for Store {
    fn append(&self, spans: &SpanBatch) {
        if let Err(error) = self.spans.append(spans) {
            tracing::warn!(%error, "span store write failed");
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Store,
                ssfd_telemetry::DropReason::RetryExhausted,
                spans.len() as u64,
            );
        }
        // the log samples inside the spans come as records, read once at ingest, through
        // `append_logs`
    }

    fn append_logs(&self, records: Vec<LogRecord>) {
        self.logs.push(records);
    }

    fn takes_logs(&self) -> bool {
        true
    }

    /// Writes the span block being filled once it is old enough and applies
    /// `retention`.
    fn tick(&self) {
        self.spans.tick();
    }

    /// Makes every span before it durable (a synced redb commit), then lets the log
    /// index commit what came before it too; the token drops after both. A failed sync
    /// keeps the token for the next barrier, so the log keeps the interval.
    fn barrier(&self, token: ssfd_engine::Token) {
        if self.spans.take_lost() {
            self.kept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(token);
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.push(token);
        match self.spans.sync() {
            Ok(()) => {
                for token in held.drain(..) {
                    self.logs.barrier(token);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "span store sync failed; retried at the next interval")
            }
        }
    }
}
