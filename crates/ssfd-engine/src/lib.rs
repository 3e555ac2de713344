//! ssfd's engine: the seam between ingest and everything after it. Ingest hands over
//! owned batches of metric samples (sharded by a hash of the series key, computed once)
//! and of spans and log records (sharded by trace id) through bounded queues to worker
//! threads that own their shard's state. The engine never touches a socket.
//!
//! Metric workers own their shard's series (`aggregate.rs`) and hand them to the
//! flusher every interval, which names what they flush (`flush.rs`) and calls the
//! sinks. Sketches (`sketch/`): a weighted merging t-digest and Veneur's HyperLogLog.

pub mod aggregate;
pub mod batch;
pub mod disk;
pub mod durable;
pub mod events;
pub mod flush;
pub mod memory;
pub mod pipeline;
pub mod record;
pub mod red;
pub mod service_graph;
pub mod sketch;
pub mod slo;
pub mod span;
pub mod span_metrics;

pub use batch::{
    BatchPool, CachedRef, Combine, Imported, KeyCache, KeyRef, KeyScratch, MetricKind, RawKey,
    Sample, SampleBatch, Scope, ShardedSamples,
};
pub use durable::{Durable, Gate, Log, Token};
pub use flush::{
    Aggregate, Flush, FlushConfig, FlushedMetric, FlushedType, HistogramSummary, Percentile, Tags,
};
pub use pipeline::{
    Derived, Full, MetricSink, Pipeline, PipelineConfig, Room, SpanSink, SpanWork, Wake, WhenFull,
    Workers,
};
pub use record::{LogKind, LogRecord, Severity};
pub use span::{SpanBatch, SpanEntry};
