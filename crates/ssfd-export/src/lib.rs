//! ssfd's sinks: where flushed metrics go. Today: the Prometheus exposition behind
//! `/metrics` (`prometheus.rs`) and the `jsonl` file sink (`jsonl.rs`). Remote-write,
//! OTLP, statsd and datadog sinks, per-sink queues and retries come with issue 5.

pub mod jsonl;
pub mod openmetrics;
pub mod prometheus;
