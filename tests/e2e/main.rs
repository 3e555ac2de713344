//! End-to-end tests: the real `ssfd` binary on port 0, driven over real sockets by our
//! own code and by other people's clients (Python `datadog`, `statsd`, `grpcio`).

mod aggregation;
mod clients;
mod deploy;
mod disk;
mod emit;
mod fleet;
mod forward;
mod listeners;
mod logs;
mod operator;
mod otel_native;
mod otlp;
mod overload;
mod policies;
mod prometheus;
mod query;
mod readme;
mod service_map;
mod sinks;
mod telemetry;
mod tier;
mod tls;
mod traces;
mod ui;
mod wal;
