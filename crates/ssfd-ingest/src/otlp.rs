//! OTLP ingest (SPEC 3.4): `TraceService`, `LogsService` and `MetricsService` over gRPC,
//! and `POST /v1/traces|logs|metrics` over HTTP (protobuf or JSON, optionally gzip).
//! Spans become SSF spans (the trace id's low 64 bits, the full id in tag
//! `otel.trace_id`, `service.name` as service, attributes as tags, status ERROR as
//! `error`, events as log samples on the span) and take the SSF path; log records
//! become log records; metrics become SSF samples: gauges, delta sums as counters,
//! cumulative monotonic sums as counters of their increase per stream (a drop is a
//! restart), non-monotonic sums as gauges, histograms as histogram samples at each
//! bucket's midpoint weighted by its count. A full queue answers UNAVAILABLE (gRPC) or
//! 503 with `Retry-After` (HTTP); rejected items are reported in `partial_success`.

use crate::handoff::{Handoff, HandoffConfig};
use crate::room::{Attempt, Class, Refusal, Waiting};
use crate::wal::{Durability, Kind};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::LogsService,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::MetricsService,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::TraceService,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use ssfd_engine::{LogKind, LogRecord, Pipeline, Severity, WhenFull};
use ssfd_telemetry::{Listener, Protocol};
use ssfd_wire::ids::TraceId;
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample::Metric as SsfMetric};
use ssfd_wire::ssfd::v1::{Attribute, attribute};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// OTLP's aggregation temporalities.
const DELTA: i32 = 1;
const CUMULATIVE: i32 = 2;

/// Cumulative streams remembered for their increase, by stream: the resource's
/// attributes, the scope, the metric's name and the point's attributes (OTel's
/// identity of a stream; two pods of one service are two streams).
#[derive(Default)]
pub struct Streams {
    sums: HashMap<String, f64>,
    /// A histogram stream's last bucket counts and sum.
    buckets: HashMap<String, (Vec<u64>, f64)>,
    /// When this process started taking OTLP (unix ns): a stream first seen here
    /// counts its first point whole only when the stream started after this (its
    /// `start_time_unix_nano`), as the Collector's cumulativetodelta does; an older
    /// stream's running total was counted before (by an earlier ssfd), so its first
    /// point only sets where its increase starts. 0: every first point counts whole.
    pub started_ns: u64,
}

impl Streams {
    /// Streams of a process starting now.
    pub fn starting_now() -> Streams {
        Streams {
            started_ns: ssfd_engine::record::now_ns().max(0) as u64,
            ..Streams::default()
        }
    }

    /// Whether the first point seen of a stream that started at `start_ns` counts whole.
    fn first_counts_whole(&self, start_ns: u64) -> bool {
        start_ns == 0 || start_ns >= self.started_ns
    }
}

/// Shared by every OTLP listener.
#[derive(Clone)]
pub struct OtlpIngest {
    pub pipeline: Pipeline,
    pub handoff: HandoffConfig,
    streams: Arc<Mutex<Streams>>,
    /// The write-ahead log (set by the server).
    pub durability: Durability,
    /// Waiting for room in a full queue (`grpc_wait`, set by the server); `None`
    /// refuses at once.
    pub waiting: Option<Waiting>,
}

/// A queue was full: nothing of the request was sent.
#[derive(Debug)]
pub struct Overloaded;

/// What one export took and refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub rejected: i64,
    pub error: String,
}

/// An attribute value as JSON (arrays and maps, and their members).
fn json_of(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match value.value.as_ref() {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::from(d.to_string()), Value::Number),
        Some(any_value::Value::BytesValue(b)) => Value::from(hex(b)),
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(json_of).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, json_of),
                    )
                })
                .collect(),
        ),
    }
}

/// An attribute value as tag text (SPEC 3.4): strings as they are, ints and doubles in
/// their shortest decimal form, bools `true`/`false`, bytes as hex, arrays and maps as
/// JSON; empty when the value is absent or of a type this build does not know.
pub fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(_) => value.as_ref().map(json_of).unwrap_or_default().to_string(),
    }
}

/// An attribute value as ssfd's typed value (SPEC 3.1); `None` for an attribute with
/// no value, or one of a type this build does not know (rejected alone, counted).
pub fn typed(value: &Option<AnyValue>) -> Option<attribute::Value> {
    Some(match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => attribute::Value::StringValue(s.clone()),
        any_value::Value::BoolValue(b) => attribute::Value::BoolValue(*b),
        any_value::Value::IntValue(i) => attribute::Value::IntValue(*i),
        any_value::Value::DoubleValue(d) => attribute::Value::DoubleValue(*d),
        any_value::Value::BytesValue(b) => attribute::Value::StringValue(hex(b)),
        other => attribute::Value::JsonValue(
            json_of(&AnyValue {
                value: Some(other.clone()),
            })
            .to_string(),
        ),
    })
}

/// A resource's attributes other than `service.name`, typed (SPEC 3.4); attributes
/// without a known value are counted in `bad` and left out.
pub fn resource_attributes(resource: &Option<Resource>, bad: &mut u64) -> Vec<Attribute> {
    let Some(resource) = resource else {
        return Vec::new();
    };
    resource
        .attributes
        .iter()
        .filter(|kv| kv.key != "service.name")
        .filter_map(|kv| match typed(&kv.value) {
            Some(value) => Some(Attribute {
                key: kv.key.clone(),
                value: Some(value),
            }),
            None => {
                *bad += 1;
                None
            }
        })
        .collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Option<AnyValue>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

/// A resource's `service.name`, or empty.
pub fn service_of(resource: &Option<Resource>) -> String {
    resource
        .as_ref()
        .and_then(|r| attribute(&r.attributes, "service.name"))
        .map(text)
        .unwrap_or_default()
}

/// A 16-byte OTLP trace id that is not all zeros.
fn trace_id_of(bytes: &[u8]) -> Option<TraceId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(TraceId::from_bytes(bytes)).filter(|id| !id.is_zero())
}

/// An 8-byte OTLP span id that is not all zeros, as SSF's signed id.
fn span_id_of(bytes: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(bytes) as i64).filter(|id| *id != 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SPEC 5's OTLP severity numbers.
pub fn severity(number: i32) -> Severity {
    match number {
        1..=4 => Severity::Trace,
        5..=8 => Severity::Debug,
        9..=12 => Severity::Info,
        13..=16 => Severity::Warn,
        17..=20 => Severity::Error,
        21..=24 => Severity::Fatal,
        _ => Severity::Unknown,
    }
}

/// A log's message: the body, else attribute `message` or `exception.message`, else
/// `fallback`.
fn message(body: &Option<AnyValue>, attributes: &[KeyValue], fallback: &str) -> String {
    let from_body = text(body);
    if !from_body.is_empty() {
        return from_body;
    }
    for key in ["message", "exception.message"] {
        if let Some(value) = attribute(attributes, key) {
            let value = text(value);
            if !value.is_empty() {
                return value;
            }
        }
    }
    fallback.to_string()
}

fn span_kind(kind: i32) -> Option<&'static str> {
    match kind {
        1 => Some("internal"),
        2 => Some("server"),
        3 => Some("client"),
        4 => Some("producer"),
        5 => Some("consumer"),
        _ => None,
    }
}

/// Why an OTLP span or log record was refused (SPEC 3.4, 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadOtlp {
    TraceId,
    SpanId,
    ParentId,
}

impl std::fmt::Display for BadOtlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadOtlp::TraceId => "a trace id must be 16 bytes, not all zeros",
            BadOtlp::SpanId => "a span id must be 8 bytes, not all zeros",
            BadOtlp::ParentId => "a parent span id must be empty or 8 bytes",
        })
    }
}

/// One OTLP span as an SSF span with ssfd's extension fields (SPEC 3.4): the 128-bit
/// trace id, `resource` (shared by the spans of one resource) and the typed values of
/// its non-string attributes. Attributes without a known value are counted in `bad`
/// and left out; malformed ids refuse the span.
pub fn ssf_span(
    span: &opentelemetry_proto::tonic::trace::v1::Span,
    service: &str,
    resource: &[Attribute],
    bad: &mut u64,
) -> Result<SsfSpan, BadOtlp> {
    let trace_id = trace_id_of(&span.trace_id).ok_or(BadOtlp::TraceId)?;
    let id = span_id_of(&span.span_id).ok_or(BadOtlp::SpanId)?;
    let parent_id = if span.parent_span_id.is_empty() {
        0
    } else {
        let bytes: [u8; 8] = span.parent_span_id[..]
            .try_into()
            .map_err(|_| BadOtlp::ParentId)?;
        u64::from_be_bytes(bytes) as i64
    };
    let mut tags = std::collections::BTreeMap::new();
    let mut attributes = Vec::new();
    for kv in &span.attributes {
        match typed(&kv.value) {
            None => *bad += 1,
            Some(attribute::Value::StringValue(value)) => {
                tags.insert(kv.key.clone(), value);
            }
            Some(value) => {
                tags.insert(kv.key.clone(), text(&kv.value));
                attributes.push(Attribute {
                    key: kv.key.clone(),
                    value: Some(value),
                });
            }
        }
    }
    if let Some(kind) = span_kind(span.kind) {
        tags.insert("span.kind".into(), kind.into());
    }
    let status = span.status.as_ref();
    if let Some(message) = status.map(|s| &s.message).filter(|m| !m.is_empty()) {
        tags.insert("otel.status_message".into(), message.clone());
    }
    let metrics = span
        .events
        .iter()
        .map(|event| {
            let name = if event.name.is_empty() {
                "event"
            } else {
                &event.name
            };
            SsfSample {
                metric: SsfMetric::Counter as i32,
                name: name.to_string(),
                value: 0.0,
                timestamp: event.time_unix_nano as i64,
                message: message(&None, &event.attributes, name),
                status: if event.name == "exception" { 2 } else { 0 },
                sample_rate: 1.0,
                tags: event
                    .attributes
                    .iter()
                    .filter(|kv| kv.key != "message")
                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    Ok(SsfSpan {
        trace_id: trace_id.low(),
        trace_id_high: trace_id.high(),
        id,
        parent_id,
        start_timestamp: span.start_time_unix_nano as i64,
        end_timestamp: span.end_time_unix_nano as i64,
        error: status.is_some_and(|s| s.code == 2),
        service: service.to_string(),
        name: span.name.clone(),
        tags,
        metrics,
        resource: resource.to_vec(),
        attributes,
        ..Default::default()
    })
}

/// One OTLP log record as ssfd's.
/// A malformed trace or span id refuses the record (an empty or all-zero id is no id).
pub fn log_record(
    record: &opentelemetry_proto::tonic::logs::v1::LogRecord,
    service: &str,
    scope: &str,
) -> Result<LogRecord, BadOtlp> {
    let trace_id = match record.trace_id.len() {
        0 => None,
        16 => trace_id_of(&record.trace_id),
        _ => return Err(BadOtlp::TraceId),
    };
    let span_id = match record.span_id.len() {
        0 => None,
        8 => span_id_of(&record.span_id),
        _ => return Err(BadOtlp::SpanId),
    };
    let mut tags: Vec<String> = record
        .attributes
        .iter()
        .filter(|kv| kv.key != "message")
        .map(|kv| format!("{}:{}", kv.key, text(&kv.value)))
        .collect();
    tags.sort();
    tags.dedup();
    let name = if record.event_name.is_empty() {
        scope.to_string()
    } else {
        record.event_name.clone()
    };
    let timestamp = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => ssfd_engine::record::now_ns(),
        (0, observed) => observed as i64,
        (time, _) => time as i64,
    };
    let severity = if record.severity_number == 0 {
        match record.severity_text.to_ascii_lowercase().as_str() {
            "trace" => Severity::Trace,
            "debug" => Severity::Debug,
            "info" => Severity::Info,
            "warn" | "warning" => Severity::Warn,
            "error" => Severity::Error,
            "fatal" => Severity::Fatal,
            _ => Severity::Unknown,
        }
    } else {
        severity(record.severity_number)
    };
    Ok(LogRecord {
        kind: LogKind::Log,
        timestamp_ns: timestamp,
        service: service.to_string(),
        trace_id,
        span_id: trace_id.and(span_id),
        message: message(&record.body, &record.attributes, &name),
        name,
        severity,
        tags,
    })
}

fn sample(
    name: &str,
    metric: SsfMetric,
    value: f64,
    rate: f32,
    tags: &std::collections::BTreeMap<String, String>,
) -> SsfSample {
    SsfSample {
        metric: metric as i32,
        name: name.to_string(),
        value: value as f32,
        sample_rate: rate,
        tags: tags.clone(),
        ..Default::default()
    }
}

/// (value, weight) samples standing for one histogram point (SPEC 3.4): each bucket's
/// midpoint weighted by its count (the open first and last buckets use `min` and `max`
/// when sent, else their finite bound), so the count is exact; with `min` and `max`, one
/// unit of weight sits exactly on each; with `sum`, the other samples shift (staying
/// within [min, max]) so the weighted sum is exact too. `None` when the counts do not
/// fit the bounds.
pub fn histogram_samples(
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
) -> Option<Vec<(f64, f64)>> {
    if counts.len() != bounds.len() + 1 || bounds.iter().any(|b| !b.is_finite()) {
        return None;
    }
    let lowest = min.unwrap_or(f64::NEG_INFINITY);
    let highest = max.unwrap_or(f64::INFINITY);
    let mut entries: Vec<(f64, f64)> = Vec::new();
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let low = if index == 0 {
            min
        } else {
            bounds.get(index - 1).copied()
        };
        let high = if index == bounds.len() {
            max
        } else {
            bounds.get(index).copied()
        };
        let midpoint = match (low, high) {
            (Some(low), Some(high)) => (low + high) / 2.0,
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => 0.0,
        };
        entries.push((
            midpoint.clamp(lowest.min(highest), highest.max(lowest)),
            count as f64,
        ));
    }
    let total: f64 = entries.iter().map(|e| e.1).sum();
    if total == 0.0 {
        return Some(entries);
    }
    let mut exact = Vec::new();
    if let Some(min) = min
        && let Some(first) = entries.iter_mut().find(|e| e.1 > 0.0)
    {
        first.1 -= 1.0;
        exact.push((min, 1.0));
    }
    if let Some(max) = max
        && total >= 2.0
        && let Some(last) = entries.iter_mut().rev().find(|e| e.1 > 0.0)
    {
        last.1 -= 1.0;
        exact.push((max, 1.0));
    }
    entries.retain(|e| e.1 > 0.0);
    if let Some(sum) = sum.filter(|s| s.is_finite()) {
        // spread the difference over the samples that can still move, again and again
        // as some reach min or max
        let (floor, ceiling) = (lowest.min(highest), highest.max(lowest));
        let mut pinned = vec![false; entries.len()];
        for _ in 0..=entries.len() {
            let now: f64 = entries.iter().chain(&exact).map(|(v, w)| v * w).sum();
            let free: f64 = entries
                .iter()
                .zip(&pinned)
                .filter(|(_, p)| !**p)
                .map(|(e, _)| e.1)
                .sum();
            let residual = sum - now;
            if free == 0.0 || residual.abs() <= 1e-9 * sum.abs().max(1.0) {
                break;
            }
            let shift = residual / free;
            for (entry, pinned) in entries.iter_mut().zip(pinned.iter_mut()) {
                if *pinned {
                    continue;
                }
                let moved = entry.0 + shift;
                entry.0 = moved.clamp(floor, ceiling);
                *pinned = entry.0 != moved;
            }
        }
    }
    entries.extend(exact);
    Some(entries)
}

fn stream_key(
    origin: &str,
    name: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut pairs: Vec<(&String, &String)> = tags.iter().collect();
    pairs.sort();
    let mut key = format!("{origin}\u{1e}{name}");
    for (k, v) in pairs {
        key.push('\u{1f}');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

impl OtlpIngest {
    pub fn new(pipeline: Pipeline, handoff: HandoffConfig) -> OtlpIngest {
        OtlpIngest {
            pipeline,
            handoff,
            streams: Arc::new(Mutex::new(Streams::starting_now())),
            durability: Durability::default(),
            waiting: None,
        }
    }

    fn handoff(&self, protocol: Protocol) -> Handoff {
        Handoff::new(
            self.pipeline.clone(),
            self.handoff.clone(),
            Listener::Otlp,
            protocol,
        )
    }

    fn finish(handoff: &mut Handoff, items: u64, policy: WhenFull) -> Result<(), Overloaded> {
        if handoff.flush(policy).is_err() {
            handoff.discard();
            let reason = if ssfd_engine::memory::under_pressure() {
                ssfd_telemetry::RefuseReason::MemoryLimit
            } else {
                ssfd_telemetry::RefuseReason::QueueFull
            };
            ssfd_telemetry::refused(Listener::Otlp, reason, items);
            return Err(Overloaded);
        }
        Ok(())
    }

    /// An export, answered once it is handed off and in the write-ahead log.
    pub async fn traces(
        &self,
        request: &ExportTraceServiceRequest,
        protocol: Protocol,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Outcome, Overloaded> {
        let items = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        if self
            .durability
            .refuse_while_failing(Listener::Otlp, items)
            .is_err()
        {
            return Err(Overloaded);
        }
        let (handoff, outcome, _) = self.convert_traces(request, protocol);
        self.durable(Kind::OtlpTraces, request, items, handoff, deadline)
            .await?;
        Ok(outcome)
    }

    /// See [`OtlpIngest::traces`].
    pub async fn logs(
        &self,
        request: &ExportLogsServiceRequest,
        protocol: Protocol,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Outcome, Overloaded> {
        let items = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        if self
            .durability
            .refuse_while_failing(Listener::Otlp, items)
            .is_err()
        {
            return Err(Overloaded);
        }
        let (handoff, outcome, _) = self.convert_logs(request, protocol);
        self.durable(Kind::OtlpLogs, request, items, handoff, deadline)
            .await?;
        Ok(outcome)
    }

    /// See [`OtlpIngest::traces`].
    pub async fn metrics(
        &self,
        request: &ExportMetricsServiceRequest,
        protocol: Protocol,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Outcome, Overloaded> {
        let items = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .map(|s| s.metrics.len() as u64)
            .sum();
        if self
            .durability
            .refuse_while_failing(Listener::Otlp, items)
            .is_err()
        {
            return Err(Overloaded);
        }
        let (handoff, outcome, _) = self.convert_metrics(request, protocol);
        self.durable(Kind::OtlpMetrics, request, items, handoff, deadline)
            .await?;
        Ok(outcome)
    }

    /// Hands off and logs under the gate, waiting for room up to `grpc_wait` (within
    /// the gRPC call's deadline) while a queue is full, then waits for the log.
    async fn durable<M: prost::Message>(
        &self,
        kind: Kind,
        request: &M,
        items: u64,
        mut handoff: Handoff,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), Overloaded> {
        let class = if kind == Kind::OtlpMetrics {
            Class::Metrics
        } else {
            Class::Spans
        };
        let mut attempt = || {
            self.durability.hand_off(
                self.pipeline.gate(),
                kind,
                || {
                    handoff
                        .flush(WhenFull::Refuse)
                        .map_err(|_| Attempt::<()>::Full)
                },
                || request.encode_to_vec(),
            )
        };
        let handed = match &self.waiting {
            Some(waiting) => {
                let deadline =
                    deadline.unwrap_or_else(|| tokio::time::Instant::now() + waiting.grpc_wait);
                waiting.with_room(class, deadline, attempt).await
            }
            // without a waiter (tests, replay): one attempt
            None => attempt().map_err(|_| {
                Err(if ssfd_engine::memory::under_pressure() {
                    Refusal::MemoryLimit
                } else {
                    Refusal::QueueFull
                })
            }),
        };
        let ((), pending) = match handed {
            Ok(handed) => handed,
            Err(outcome) => {
                handoff.discard();
                let reason = match outcome {
                    Err(Refusal::MemoryLimit) => ssfd_telemetry::RefuseReason::MemoryLimit,
                    _ => ssfd_telemetry::RefuseReason::QueueFull,
                };
                ssfd_telemetry::refused(Listener::Otlp, reason, items);
                return Err(Overloaded);
            }
        };
        pending.durable().await.map_err(|_| Overloaded)?;
        Ok(())
    }

    /// Converts and hands off an export under `policy` (replay waits for room).
    pub fn hand_off_traces(
        &self,
        request: &ExportTraceServiceRequest,
        protocol: Protocol,
        policy: WhenFull,
    ) -> Result<Outcome, Overloaded> {
        let (mut handoff, outcome, items) = self.convert_traces(request, protocol);
        Self::finish(&mut handoff, items, policy)?;
        Ok(outcome)
    }

    /// Converts an export into a hand-off not yet sent, its outcome and its items.
    fn convert_traces(
        &self,
        request: &ExportTraceServiceRequest,
        protocol: Protocol,
    ) -> (Handoff, Outcome, u64) {
        let mut handoff = self.handoff(protocol);
        let mut outcome = Outcome::default();
        let mut items = 0;
        let mut bad_attributes = 0;
        for resource in &request.resource_spans {
            let service = service_of(&resource.resource);
            let attributes = resource_attributes(&resource.resource, &mut bad_attributes);
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    items += 1;
                    let result = match ssf_span(span, &service, &attributes, &mut bad_attributes) {
                        Ok(ssf) => handoff.ssf_span(&ssf).map(drop).map_err(|e| e.to_string()),
                        Err(bad) => {
                            handoff.reject_reason(ssfd_telemetry::Reason::InvalidSpan);
                            Err(format!("span {}: {bad}", hex(&span.span_id)))
                        }
                    };
                    if let Err(error) = result {
                        outcome.rejected += 1;
                        outcome.error = error;
                    }
                }
            }
        }
        if bad_attributes > 0 {
            // the spans are kept without them; counted, and said in partial_success
            ssfd_telemetry::rejected(
                Listener::Otlp,
                protocol,
                ssfd_telemetry::Reason::BadValue,
                bad_attributes,
            );
            if outcome.error.is_empty() {
                outcome.error = format!(
                    "{bad_attributes} attribute(s) without a value of a known type were left out"
                );
            }
        }
        (handoff, outcome, items)
    }

    /// Converts and hands off an export under `policy` (replay waits for room).
    pub fn hand_off_logs(
        &self,
        request: &ExportLogsServiceRequest,
        protocol: Protocol,
        policy: WhenFull,
    ) -> Result<Outcome, Overloaded> {
        let (mut handoff, outcome, items) = self.convert_logs(request, protocol);
        Self::finish(&mut handoff, items, policy)?;
        Ok(outcome)
    }

    /// Converts an export into a hand-off not yet sent, its outcome and its items.
    fn convert_logs(
        &self,
        request: &ExportLogsServiceRequest,
        protocol: Protocol,
    ) -> (Handoff, Outcome, u64) {
        let mut handoff = self.handoff(protocol);
        let mut items = 0;
        let mut outcome = Outcome::default();
        for resource in &request.resource_logs {
            let service = service_of(&resource.resource);
            for scope in &resource.scope_logs {
                let scope_name = scope.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
                for record in &scope.log_records {
                    items += 1;
                    match log_record(record, &service, scope_name) {
                        Ok(record) => handoff.log_record(record),
                        Err(bad) => {
                            handoff.reject_reason(ssfd_telemetry::Reason::BadValue);
                            outcome.rejected += 1;
                            outcome.error = format!("log record: {bad}");
                        }
                    }
                }
            }
        }
        (handoff, outcome, items)
    }

    /// Converts and hands off an export under `policy` (replay waits for room).
    pub fn hand_off_metrics(
        &self,
        request: &ExportMetricsServiceRequest,
        protocol: Protocol,
        policy: WhenFull,
    ) -> Result<Outcome, Overloaded> {
        let (mut handoff, outcome, items) = self.convert_metrics(request, protocol);
        Self::finish(&mut handoff, items, policy)?;
        Ok(outcome)
    }

    /// Converts an export into a hand-off not yet sent, its outcome and its items
    /// (once: the conversion moves the cumulative streams on).
    fn convert_metrics(
        &self,
        request: &ExportMetricsServiceRequest,
        protocol: Protocol,
    ) -> (Handoff, Outcome, u64) {
        let mut handoff = self.handoff(protocol);
        let converted = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            metric_samples(request, &mut streams)
        };
        let MetricSamples {
            samples,
            items,
            mut outcome,
            rejects,
        } = converted;
        for reason in rejects {
            handoff.reject_reason(reason);
        }
        for chunk in samples.chunks(64) {
            let carrier = SsfSpan {
                metrics: chunk.to_vec(),
                ..Default::default()
            };
            if let Err(error) = handoff.ssf_span(&carrier) {
                outcome.error = error.to_string();
            }
        }
        (handoff, outcome, items)
    }
}

/// What one metrics export converts to: SSF samples, the data points counted, and
/// what was refused with why.
#[derive(Debug, Default)]
pub struct MetricSamples {
    pub samples: Vec<SsfSample>,
    pub items: u64,
    pub outcome: Outcome,
    pub rejects: Vec<ssfd_telemetry::Reason>,
}

/// Converts an OTLP metrics export to SSF samples (see the module's comment);
/// cumulative streams are remembered in `streams` for their increase.
pub fn metric_samples(
    request: &ExportMetricsServiceRequest,
    streams: &mut Streams,
) -> MetricSamples {
    let mut outcome = Outcome::default();
    let mut samples: Vec<SsfSample> = Vec::new();
    let mut rejects = Vec::new();
    let mut items = 0;
    for resource in &request.resource_metrics {
        let service = service_of(&resource.resource);
        let mut resource_key: Vec<(String, String)> = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        resource_key.sort();
        let resource_key: String = resource_key
            .iter()
            .map(|(k, v)| format!("{k}={v}\u{1f}"))
            .collect();
        for scope in &resource.scope_metrics {
            let origin = match &scope.scope {
                Some(scope) => format!("{resource_key}\u{1d}{}\u{1d}{}", scope.name, scope.version),
                None => resource_key.clone(),
            };
            for metric in &scope.metrics {
                let tags_of = |attributes: &[KeyValue]| {
                    let mut tags: std::collections::BTreeMap<String, String> = attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect();
                    if !service.is_empty() {
                        tags.entry("service".into())
                            .or_insert_with(|| service.clone());
                    }
                    tags
                };
                let number =
                    |point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match point
                        .value
                    {
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        None => f64::NAN,
                    };
                match &metric.data {
                    Some(metric::Data::Gauge(gauge)) => {
                        for point in &gauge.data_points {
                            items += 1;
                            samples.push(sample(
                                &metric.name,
                                SsfMetric::Gauge,
                                number(point),
                                1.0,
                                &tags_of(&point.attributes),
                            ));
                        }
                    }
                    Some(metric::Data::Sum(sum)) => {
                        for point in &sum.data_points {
                            items += 1;
                            let tags = tags_of(&point.attributes);
                            let value = number(point);
                            if !sum.is_monotonic {
                                samples.push(sample(
                                    &metric.name,
                                    SsfMetric::Gauge,
                                    value,
                                    1.0,
                                    &tags,
                                ));
                            } else if sum.aggregation_temporality == CUMULATIVE {
                                let key = stream_key(&origin, &metric.name, &tags);
                                let last = streams.sums.insert(key, value);
                                // a drop is a restart (the stream began again at 0)
                                let increase = match last {
                                    Some(last) if value >= last => value - last,
                                    Some(_) => value,
                                    None if streams
                                        .first_counts_whole(point.start_time_unix_nano) =>
                                    {
                                        value
                                    }
                                    None => 0.0,
                                };
                                if increase > 0.0 {
                                    samples.push(sample(
                                        &metric.name,
                                        SsfMetric::Counter,
                                        increase,
                                        1.0,
                                        &tags,
                                    ));
                                }
                            } else {
                                samples.push(sample(
                                    &metric.name,
                                    SsfMetric::Counter,
                                    value,
                                    1.0,
                                    &tags,
                                ));
                            }
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        for point in &histogram.data_points {
                            items += 1;
                            let tags = tags_of(&point.attributes);
                            let cumulative = histogram.aggregation_temporality != DELTA;
                            let (counts, min, max, sum) = if cumulative {
                                let key = stream_key(&origin, &metric.name, &tags);
                                let now_sum = point.sum.unwrap_or(f64::NAN);
                                let last = streams
                                    .buckets
                                    .insert(key, (point.bucket_counts.clone(), now_sum));
                                if last.is_none()
                                    && !streams.first_counts_whole(point.start_time_unix_nano)
                                {
                                    // where an older stream's increase starts
                                    continue;
                                }
                                match last {
                                    Some((last, last_sum))
                                        if last.len() == point.bucket_counts.len()
                                            && last
                                                .iter()
                                                .zip(&point.bucket_counts)
                                                .all(|(a, b)| b >= a) =>
                                    {
                                        // min and max of a cumulative point span its
                                        // whole life: unknown for this increase
                                        let counts = point
                                            .bucket_counts
                                            .iter()
                                            .zip(&last)
                                            .map(|(now, before)| now - before)
                                            .collect();
                                        let sum =
                                            Some(now_sum - last_sum).filter(|s| s.is_finite());
                                        (counts, None, None, sum)
                                    }
                                    _ => (
                                        point.bucket_counts.clone(),
                                        point.min,
                                        point.max,
                                        point.sum,
                                    ),
                                }
                            } else {
                                (point.bucket_counts.clone(), point.min, point.max, point.sum)
                            };
                            let Some(weighted) =
                                histogram_samples(&point.explicit_bounds, &counts, min, max, sum)
                            else {
                                outcome.rejected += 1;
                                outcome.error = format!(
                                    "metric `{}`: bucket_counts must be one longer than explicit_bounds",
                                    metric.name
                                );
                                rejects.push(ssfd_telemetry::Reason::BadValue);
                                continue;
                            };
                            for (value, weight) in weighted {
                                samples.push(sample(
                                    &metric.name,
                                    SsfMetric::Histogram,
                                    value,
                                    (1.0 / weight) as f32,
                                    &tags,
                                ));
                            }
                        }
                    }
                    Some(_) | None => {
                        items += 1;
                        outcome.rejected += 1;
                        outcome.error = format!(
                            "metric `{}`: exponential histograms and summaries are not taken yet",
                            metric.name
                        );
                        rejects.push(ssfd_telemetry::Reason::UnknownSection);
                    }
                }
            }
        }
    }
    MetricSamples {
        samples,
        items,
        outcome,
        rejects,
    }
}

fn trace_response(outcome: Outcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (outcome.rejected > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: outcome.rejected,
            error_message: outcome.error,
        }),
    }
}

fn logs_response(outcome: Outcome) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (outcome.rejected > 0).then_some(ExportLogsPartialSuccess {
            rejected_log_records: outcome.rejected,
            error_message: outcome.error,
        }),
    }
}

fn metrics_response(outcome: Outcome) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (outcome.rejected > 0).then_some(ExportMetricsPartialSuccess {
            rejected_data_points: outcome.rejected,
            error_message: outcome.error,
        }),
    }
}

fn unavailable() -> tonic::Status {
    tonic::Status::unavailable("ssfd is overloaded: a pipeline queue is full, retry later")
}

#[tonic::async_trait]
impl TraceService for OtlpIngest {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let deadline = self
            .waiting
            .as_ref()
            .map(|w| w.deadline(request.metadata()));
        let outcome = self
            .traces(&request.into_inner(), Protocol::Grpc, deadline)
            .await
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(trace_response(outcome)))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpIngest {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let deadline = self
            .waiting
            .as_ref()
            .map(|w| w.deadline(request.metadata()));
        let outcome = self
            .logs(&request.into_inner(), Protocol::Grpc, deadline)
            .await
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(logs_response(outcome)))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpIngest {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let deadline = self
            .waiting
            .as_ref()
            .map(|w| w.deadline(request.metadata()));
        let outcome = self
            .metrics(&request.into_inner(), Protocol::Grpc, deadline)
            .await
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(metrics_response(outcome)))
    }
}

/// An OTLP/gRPC service whose undecodable requests answer `INVALID_ARGUMENT` (SPEC
/// 3.3, as the OpenTelemetry Collector's receiver answers them), not the `INTERNAL`
/// that tonic's prost codec gives a decode error; the request is counted as rejected
/// (`decode`). Other answers pass unchanged.
#[derive(Clone, Debug)]
pub struct DecodeIsInvalid<S>(pub S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for DecodeIsInvalid<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for DecodeIsInvalid<S>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let headers = response.headers_mut();
            let undecodable = headers
                .get("grpc-status")
                .is_some_and(|status| status == "13")
                && headers
                    .get("grpc-message")
                    .and_then(|message| message.to_str().ok())
                    .is_some_and(|message| message.contains("decode"));
            if undecodable {
                headers.insert(
                    "grpc-status",
                    tonic::codegen::http::HeaderValue::from_static("3"),
                );
                ssfd_telemetry::rejected(
                    Listener::Otlp,
                    Protocol::Grpc,
                    ssfd_telemetry::Reason::Decode,
                    1,
                );
            }
            Ok(response)
        })
    }
}

/// The OTLP/HTTP routes: `POST /v1/traces|logs|metrics`.
pub fn http_router(otlp: OtlpIngest) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/logs", post(http_logs))
        .route("/v1/metrics", post(http_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_INFLATED))
        .with_state(otlp)
}

/// The most a gzip OTLP/HTTP body may inflate to (the same as the request limit).
const MAX_INFLATED: usize = 32 << 20;

enum Format {
    Protobuf,
    Json,
}

/// OTLP/JSON writes 64-bit integers as strings, and senders write them either way;
/// the decoder takes `*UnixNano` times only as strings and `asInt`, `count`,
/// `bucketCounts`, `zeroCount` only as numbers. Both spellings are made the one it takes.
fn json_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    let as_number = |value: &mut Value| {
        if let Value::String(text) = value {
            if let Ok(n) = text.parse::<u64>() {
                *value = Value::from(n);
            } else if let Ok(n) = text.parse::<i64>() {
                *value = Value::from(n);
            }
        }
    };
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                match key.as_str() {
                    "asInt" | "count" | "zeroCount" => as_number(field),
                    "bucketCounts" => {
                        if let Value::Array(items) = field {
                            items.iter_mut().for_each(as_number);
                        }
                    }
                    _ if key.ends_with("UnixNano") => {
                        if let Value::Number(n) = field {
                            *field = Value::String(n.to_string());
                        }
                    }
                    _ => json_integers(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json_integers),
        _ => {}
    }
}

/// Decodes an OTLP/HTTP body by its content type and encoding.
fn decode<T: prost::Message + Default + serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<(T, Format), String> {
    use std::io::Read;
    let header = |name: axum::http::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let inflated;
    let body = if header(axum::http::header::CONTENT_ENCODING) == "gzip" {
        let mut out = Vec::new();
        // a small body must not inflate without bound
        flate2::read::GzDecoder::new(body)
            .take(MAX_INFLATED as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        if out.len() > MAX_INFLATED {
            return Err(format!("gzip body inflates past {MAX_INFLATED} bytes"));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    if header(axum::http::header::CONTENT_TYPE).starts_with("application/json") {
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("OTLP/JSON body: {e}"))?;
        json_integers(&mut value);
        serde_json::from_value(value)
            .map(|value| (value, Format::Json))
            .map_err(|e| format!("OTLP/JSON body: {e}"))
    } else {
        T::decode(body)
            .map(|value| (value, Format::Protobuf))
            .map_err(|e| format!("OTLP protobuf body: {e}"))
    }
}

fn answer<T: prost::Message + serde::Serialize>(
    result: Result<T, Overloaded>,
    format: Format,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    match (result, format) {
        (Err(Overloaded), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "ssfd is overloaded: a pipeline queue is full, retry later",
        )
            .into_response(),
        (Ok(response), Format::Protobuf) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
        (Ok(response), Format::Json) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&response).unwrap_or_default(),
        )
            .into_response(),
    }
}

fn bad_request(listener_error: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ssfd_telemetry::rejected(
        Listener::Otlp,
        Protocol::Http,
        ssfd_telemetry::Reason::Decode,
        1,
    );
    (axum::http::StatusCode::BAD_REQUEST, listener_error).into_response()
}

async fn http_traces(
    axum::extract::State(otlp): axum::extract::State<OtlpIngest>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    match decode::<ExportTraceServiceRequest>(&headers, &body) {
        Ok((request, format)) => answer(
            otlp.traces(&request, Protocol::Http, None)
                .await
                .map(trace_response),
            format,
        ),
        Err(error) => bad_request(error),
    }
}

async fn http_logs(
    axum::extract::State(otlp): axum::extract::State<OtlpIngest>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    match decode::<ExportLogsServiceRequest>(&headers, &body) {
        Ok((request, format)) => answer(
            otlp.logs(&request, Protocol::Http, None)
                .await
                .map(logs_response),
            format,
        ),
        Err(error) => bad_request(error),
    }
}

async fn http_metrics(
    axum::extract::State(otlp): axum::extract::State<OtlpIngest>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    match decode::<ExportMetricsServiceRequest>(&headers, &body) {
        Ok((request, format)) => answer(
            otlp.metrics(&request, Protocol::Http, None)
                .await
                .map(metrics_response),
            format,
        ),
        Err(error) => bad_request(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(samples: &[(f64, f64)]) -> (f64, f64, f64, f64) {
        let count = samples.iter().map(|s| s.1).sum();
        let sum = samples.iter().map(|(v, w)| v * w).sum();
        let min = samples.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let max = samples
            .iter()
            .map(|s| s.0)
            .fold(f64::NEG_INFINITY, f64::max);
        (count, sum, min, max)
    }

    #[test]
    fn histogram_points_keep_count_sum_min_and_max() {
        let samples = histogram_samples(
            &[10.0, 100.0],
            &[2, 3, 1],
            Some(1.0),
            Some(500.0),
            Some(600.0),
        )
        .unwrap();
        let (count, sum, min, max) = totals(&samples);
        assert_eq!(count, 6.0);
        assert!((sum - 600.0).abs() < 1e-9, "{sum}");
        assert_eq!((min, max), (1.0, 500.0));
        // without min, max and sum: midpoints and the finite bounds
        let samples = histogram_samples(&[10.0, 100.0], &[1, 2, 1], None, None, None).unwrap();
        assert_eq!(samples, [(10.0, 1.0), (55.0, 2.0), (100.0, 1.0)]);
        // one observation: min and max are the same sample
        let samples =
            histogram_samples(&[10.0], &[0, 1], Some(42.0), Some(42.0), Some(42.0)).unwrap();
        assert_eq!(totals(&samples), (1.0, 42.0, 42.0, 42.0));
        assert!(
            histogram_samples(&[10.0], &[1, 2, 3], None, None, None).is_none(),
            "bad shape"
        );
        assert!(histogram_samples(&[f64::NAN], &[1, 2], None, None, None).is_none());
    }

    /// One cumulative sum point of `value` from a resource with `instance`.
    fn cumulative(instance: &str, value: f64, start_ns: u64) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::metrics::v1::{
            Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        };
        let attribute = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        attribute("service.name", "shop"),
                        attribute("service.instance.id", instance),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "items".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                start_time_unix_nano: start_ns,
                                value: Some(number_data_point::Value::AsDouble(value)),
                                ..Default::default()
                            }],
                            aggregation_temporality: CUMULATIVE,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn cumulative_streams_are_per_resource_and_start_where_ssfd_does() {
        let mut streams = Streams {
            started_ns: 1_000,
            ..Streams::default()
        };
        let mut counted = |request: ExportMetricsServiceRequest| -> f64 {
            metric_samples(&request, &mut streams)
                .samples
                .iter()
                .map(|s| f64::from(s.value))
                .sum()
        };
        // two pods of one service: two streams, each counting its own increase
        assert_eq!(counted(cumulative("a", 100.0, 2_000)), 100.0);
        assert_eq!(counted(cumulative("b", 50.0, 2_000)), 50.0);
        assert_eq!(counted(cumulative("a", 101.0, 2_000)), 1.0);
        assert_eq!(counted(cumulative("b", 51.0, 2_000)), 1.0);
        // a restart (the value drops) counts the new total whole
        assert_eq!(counted(cumulative("a", 3.0, 5_000)), 3.0);
        // a stream that began before this process: its running total was counted
        // before; only what it adds from here counts
        assert_eq!(counted(cumulative("c", 1e6, 500)), 0.0);
        assert_eq!(counted(cumulative("c", 1e6 + 4.0, 500)), 4.0);
    }

    #[test]
    fn otlp_json_integers_in_either_spelling() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","sum":{"aggregationTemporality":1,"isMonotonic":true,
              "dataPoints":[{"asInt":"5","timeUnixNano":1700000000000000000}]}},
            {"name":"b","histogram":{"aggregationTemporality":1,
              "dataPoints":[{"count":"6","sum":3.5,"bucketCounts":["1","5"],"explicitBounds":[1.0],
                             "timeUnixNano":"1700000000000000000"}]}},
            {"name":"c","gauge":{"dataPoints":[{"asInt":7,"timeUnixNano":"1"}]}}
        ]}]}]}"#;
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let (request, _) = decode::<ExportMetricsServiceRequest>(&headers, body).unwrap();
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("sum")
        };
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
        assert_eq!(sum.data_points[0].time_unix_nano, 1_700_000_000_000_000_000);
        let Some(metric::Data::Histogram(histogram)) = &metrics[1].data else {
            panic!("histogram")
        };
        assert_eq!(histogram.data_points[0].count, 6);
        assert_eq!(histogram.data_points[0].bucket_counts, [1, 5]);
        let Some(metric::Data::Gauge(gauge)) = &metrics[2].data else {
            panic!("gauge")
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsInt(7))
        );
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    #[test]
    fn spans_keep_the_whole_trace_id_their_resource_and_typed_attributes() {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        let trace_id = [
            0x94, 0x56, 0x8b, 0xc2, 0x49, 0xd5, 0x56, 0x03, 0x97, 0x5f, 0xbd, 0x3e, 0xf2, 0x88,
            0x21, 0x0b,
        ];
        let resource = Some(Resource {
            attributes: vec![
                kv("service.name", any_value::Value::StringValue("api".into())),
                kv("host.name", any_value::Value::StringValue("h1".into())),
                kv("process.pid", any_value::Value::IntValue(42)),
                KeyValue {
                    key: "unknown.type".into(),
                    value: Some(AnyValue { value: None }),
                },
            ],
            ..Default::default()
        });
        let mut bad = 0;
        let attributes = resource_attributes(&resource, &mut bad);
        assert_eq!(bad, 1, "the attribute without a known value is counted");
        assert_eq!(attributes.len(), 2, "service.name is the service");
        let span = opentelemetry_proto::tonic::trace::v1::Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 7],
            name: "GET /".into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![
                kv("http.status_code", any_value::Value::IntValue(502)),
                kv("ratio", any_value::Value::DoubleValue(0.25)),
                kv("ok", any_value::Value::BoolValue(false)),
                kv("route", any_value::Value::StringValue("/a".into())),
                kv(
                    "list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(any_value::Value::IntValue(1)),
                            },
                            AnyValue {
                                value: Some(any_value::Value::StringValue("x".into())),
                            },
                        ],
                    }),
                ),
                kv(
                    "map",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("a", any_value::Value::BoolValue(true))],
                    }),
                ),
            ],
            ..Default::default()
        };
        let ssf = ssf_span(&span, "api", &attributes, &mut bad).unwrap();
        assert_eq!(
            TraceId::from_parts(ssf.trace_id_high, ssf.trace_id).to_string(),
            "94568bc249d55603975fbd3ef288210b"
        );
        assert_eq!(ssf.tags["http.status_code"], "502");
        assert_eq!(ssf.tags["ratio"], "0.25");
        assert_eq!(ssf.tags["ok"], "false");
        assert_eq!(ssf.tags["list"], "[1,\"x\"]");
        assert_eq!(ssf.tags["map"], "{\"a\":true}");
        assert!(!ssf.tags.contains_key("otel.trace_id"));
        let typed: Vec<&str> = ssf.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(typed, ["http.status_code", "ratio", "ok", "list", "map"]);
        assert_eq!(
            ssf.attributes[0].value,
            Some(attribute::Value::IntValue(502))
        );
        assert_eq!(ssf.resource, attributes);
        // malformed and all-zero ids refuse the span alone
        for (trace, span_id, want) in [
            (vec![0; 16], vec![1; 8], BadOtlp::TraceId),
            (vec![1; 8], vec![1; 8], BadOtlp::TraceId),
            (vec![1; 16], vec![0; 8], BadOtlp::SpanId),
            (vec![1; 16], vec![1; 4], BadOtlp::SpanId),
        ] {
            let bad_span = opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: trace,
                span_id,
                ..span.clone()
            };
            assert_eq!(ssf_span(&bad_span, "api", &[], &mut bad), Err(want));
        }
    }

    #[test]
    fn log_records_keep_their_whole_trace_id() {
        let mut record = opentelemetry_proto::tonic::logs::v1::LogRecord {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            severity_number: 13,
            ..Default::default()
        };
        let converted = log_record(&record, "api", "scope").unwrap();
        assert_eq!(
            converted.trace_id,
            Some(TraceId(u128::from_be_bytes([1; 16])))
        );
        assert_eq!(converted.span_id, Some(i64::from_be_bytes([2; 8])));
        record.trace_id = vec![0; 16];
        assert_eq!(log_record(&record, "api", "scope").unwrap().trace_id, None);
        record.trace_id = vec![1; 15];
        assert_eq!(log_record(&record, "api", "scope"), Err(BadOtlp::TraceId));
    }

    #[test]
    fn ids_and_severities() {
        assert_eq!(severity(13), Severity::Warn);
        assert_eq!(severity(24), Severity::Fatal);
        assert_eq!(severity(0), Severity::Unknown);
    }
}
