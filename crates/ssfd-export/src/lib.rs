//! Placeholder: the metric and span sinks (issues 3 and 5): Prometheus exposition, remote-write, OTLP, statsd, datadog, jsonl, each behind its own bounded queue.
//!
//! Nothing lives here yet; the crate exists so the workspace shows the whole data path.
