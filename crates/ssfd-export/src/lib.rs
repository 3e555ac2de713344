//! ssfd's sinks: where flushed metrics go. Today: the Prometheus exposition behind
//! `/metrics` (`prometheus.rs`, `openmetrics.rs`), the `jsonl` file sink (`jsonl.rs`)
//! and the `statsd` repeater (`statsd.rs`). Remote-write,
//! OTLP and datadog sinks, per-sink queues and retries come with issue 5.

pub mod jsonl;
pub mod openmetrics;
pub mod prometheus;
pub mod statsd;
