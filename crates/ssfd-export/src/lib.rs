//! ssfd's sinks: where flushed metrics go. The Prometheus exposition behind
//! `/metrics` (`prometheus.rs`, `openmetrics.rs`) and the `jsonl` file sink
//! (`jsonl.rs`) are written by the flusher; network sinks (`statsd.rs`, `datadog.rs`,
//! `remote_write.rs`, and `blackhole`) each run behind their own queue and thread with
//! retries (`delivery.rs`), fed what `metric_sink_routing` routes to them
//! (`routing.rs`). The `otlp` sink (`otlp.rs`) sends metrics that way and spans
//! through its own span queue.

pub mod datadog;
pub mod delivery;
pub mod forward;
pub mod jsonl;
pub mod openmetrics;
pub mod otlp;
pub mod prometheus;
pub mod proxy;
pub mod remote_write;
pub mod routing;
pub mod statsd;
