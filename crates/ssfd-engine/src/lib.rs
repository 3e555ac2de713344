//! ssfd's engine: the seam between ingest and everything after it. Ingest hands over
//! owned batches of metric samples (sharded by a hash of the series key, computed once)
//! and of spans and log records (sharded by trace id) through bounded queues to worker
//! threads that own their shard's state. The engine never touches a socket.
//!
//! Until the aggregation engine lands (issue 3), metric workers count what they
//! receive by kind; the queues, sharding and full-queue policies are the real ones.

pub mod batch;
pub mod pipeline;
pub mod record;
pub mod span;

pub use batch::{KeyScratch, MetricKind, Sample, SampleBatch, Scope, ShardedSamples};
pub use pipeline::{Full, Pipeline, PipelineConfig, SpanWork, WhenFull, Workers};
pub use record::{LogKind, LogRecord, Severity};
pub use span::{SpanBatch, SpanEntry};
