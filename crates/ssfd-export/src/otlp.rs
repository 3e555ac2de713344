//! The `otlp` sink (SPEC 9): spans and flushed metrics to an OTLP/gRPC endpoint
//! (`endpoint`, `host:port`). Metrics go through the usual queued delivery (counters as
//! delta monotonic sums, gauges and statuses as gauges, each with the flush time);
//! spans have their own bounded queue and thread, fed by the span workers (full: the
//! spans are dropped and counted), exported in batches with the same retries. An SSF
//! span maps back as OTLP expects: the 128-bit trace id (`trace_id_high`, then
//! `trace_id`; an SSF id has a zero high half), span and parent ids as 8 bytes,
//! `span.kind` as kind, tags as attributes with their typed values (extension field
//! 1003), the service and `resource` (1002) as the resource, `error` as status ERROR,
//! log samples as events.

use crate::delivery::{BatchQueue, Deliver, GrpcClient as Client, Payload, RetryPolicy, SendError};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use ssfd_engine::{Flush, FlushedType, SpanBatch, SpanSink};
use ssfd_wire::ssf::SsfSpan;
use ssfd_wire::ssfd::v1::Attribute;
use std::collections::BTreeMap;

fn string_value(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_string())),
    })
}

fn key_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: string_value(value),
    }
}

/// ssfd's typed attribute (SPEC 3.1) as an OTLP one; JSON arrays and maps as strings.
fn typed_value(attribute: &Attribute) -> KeyValue {
    use ssfd_wire::ssfd::v1::attribute::Value;
    let value = attribute.value.as_ref().map(|value| match value {
        Value::StringValue(s) | Value::JsonValue(s) => any_value::Value::StringValue(s.clone()),
        Value::IntValue(i) => any_value::Value::IntValue(*i),
        Value::DoubleValue(d) => any_value::Value::DoubleValue(*d),
        Value::BoolValue(b) => any_value::Value::BoolValue(*b),
    });
    KeyValue {
        key: attribute.key.clone(),
        value: Some(AnyValue { value }),
    }
}

fn resource(service: &str, attributes: &[Attribute]) -> Option<Resource> {
    Some(Resource {
        attributes: std::iter::once(key_value("service.name", service))
            .chain(attributes.iter().map(typed_value))
            .collect(),
        ..Default::default()
    })
}

/// The OTLP trace id of an SSF span: its 128 bits, big-endian.
fn trace_id(span: &SsfSpan) -> Vec<u8> {
    ssfd_wire::ids::TraceId::from_parts(span.trace_id_high, span.trace_id)
        .to_bytes()
        .to_vec()
}

/// One SSF span as an OTLP span.
pub fn otlp_span(ssf: &SsfSpan) -> Span {
    let kind = match ssf.tags.get("span.kind").map(String::as_str) {
        Some("internal") => 1,
        Some("server") => 2,
        Some("client") => 3,
        Some("producer") => 4,
        Some("consumer") => 5,
        _ => 0,
    };
    let attributes = ssf
        .tags
        .iter()
        .filter(|(k, _)| *k != "span.kind")
        .map(
            |(k, v)| match ssf.attributes.iter().rev().find(|a| a.key == *k) {
                Some(typed) => typed_value(typed),
                None => key_value(k, v),
            },
        )
        .collect();
    let events = ssf
        .metrics
        .iter()
        .filter(|s| s.metric == 0 && s.value == 0.0 && !s.message.is_empty())
        .map(|s| span::Event {
            time_unix_nano: if s.timestamp == 0 {
                ssf.start_timestamp as u64
            } else {
                s.timestamp as u64
            },
            name: s.name.clone(),
            attributes: std::iter::once(key_value("message", &s.message))
                .chain(s.tags.iter().map(|(k, v)| key_value(k, v)))
                .collect(),
            ..Default::default()
        })
        .collect();
    Span {
        trace_id: trace_id(ssf),
        span_id: (ssf.id as u64).to_be_bytes().to_vec(),
        parent_span_id: if ssf.parent_id == 0 {
            Vec::new()
        } else {
            (ssf.parent_id as u64).to_be_bytes().to_vec()
        },
        name: ssf.name.clone(),
        kind,
        start_time_unix_nano: ssf.start_timestamp as u64,
        end_time_unix_nano: ssf.end_timestamp as u64,
        attributes,
        events,
        status: ssf.error.then(|| Status {
            code: 2,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The spans of one service and resource (keyed by the resource's encoding).
type ByResource<'a> = BTreeMap<(&'a str, Vec<u8>), (&'a [Attribute], Vec<Span>)>;

/// SSF spans grouped by service and resource into one export request.
pub fn trace_request(spans: &[SsfSpan]) -> ExportTraceServiceRequest {
    let mut by_resource: ByResource<'_> = BTreeMap::new();
    for span in spans {
        let key: Vec<u8> = span
            .resource
            .iter()
            .flat_map(|a| a.encode_to_vec())
            .collect();
        by_resource
            .entry((span.service.as_str(), key))
            .or_insert_with(|| (&span.resource, Vec::new()))
            .1
            .push(otlp_span(span));
    }
    ExportTraceServiceRequest {
        resource_spans: by_resource
            .into_iter()
            .map(|((service, _), (attributes, spans))| ResourceSpans {
                resource: resource(service, attributes),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The interval's metrics as one export request.
pub fn metrics_request(flush: &Flush, hostname: &str) -> ExportMetricsServiceRequest {
    let time = (flush.timestamp as u64).saturating_mul(1_000_000_000);
    let metrics = flush
        .metrics
        .iter()
        .filter(|m| m.value.is_finite())
        .map(|m| {
            let point = NumberDataPoint {
                attributes: m
                    .tags
                    .iter()
                    .map(|tag| match tag.split_once(':') {
                        Some((k, v)) => key_value(k, v),
                        None => key_value(tag, "true"),
                    })
                    .collect(),
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(m.value)),
                ..Default::default()
            };
            let data = match m.kind {
                FlushedType::Counter => metric::Data::Sum(Sum {
                    data_points: vec![point],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                }),
                FlushedType::Gauge | FlushedType::Status => metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                }),
            };
            Metric {
                name: m.name.clone(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![key_value("host.name", hostname)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The OTLP calls.
trait Otlp {
    fn traces(&mut self, request: ExportTraceServiceRequest) -> Result<(), SendError>;
    fn metrics(&mut self, request: ExportMetricsServiceRequest) -> Result<(), SendError>;
}

impl Otlp for Client {
    fn traces(&mut self, request: ExportTraceServiceRequest) -> Result<(), SendError> {
        let channel = self.channel()?;
        let result = self.block_on(TraceServiceClient::new(channel).export(request));
        result.map(drop).map_err(|status| self.status(status))
    }

    fn metrics(&mut self, request: ExportMetricsServiceRequest) -> Result<(), SendError> {
        let channel = self.channel()?;
        let result = self.block_on(MetricsServiceClient::new(channel).export(request));
        result.map(drop).map_err(|status| self.status(status))
    }
}

/// The metric half of the `otlp` sink (behind a [`crate::delivery::QueuedSink`]).
pub struct OtlpMetrics {
    client: Option<Client>,
    endpoint: String,
    hostname: String,
}

impl OtlpMetrics {
    pub fn new(endpoint: &str, hostname: &str) -> OtlpMetrics {
        OtlpMetrics {
            client: None,
            endpoint: endpoint.to_string(),
            hostname: hostname.to_string(),
        }
    }
}

impl Deliver for OtlpMetrics {
    fn kind(&self) -> &'static str {
        "otlp"
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        let request = metrics_request(flush, &self.hostname);
        let items = request.resource_metrics[0].scope_metrics[0].metrics.len() as u64;
        if items == 0 {
            return Vec::new();
        }
        vec![Payload {
            endpoint: 0,
            body: request.encode_to_vec(),
            items,
        }]
    }

    fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let request = ExportMetricsServiceRequest::decode(&payload.body[..])
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        // the client (and its runtime) is made on the sink's own thread
        let endpoint = self.endpoint.clone();
        self.client
            .get_or_insert_with(|| Client::new(&endpoint))
            .metrics(request)
    }
}

/// Spans per export.
const SPANS_PER_EXPORT: usize = 2048;

/// The span half of the `otlp` sink: a span sink with its own queue and thread.
pub struct OtlpSpans(BatchQueue<SsfSpan>);

impl OtlpSpans {
    pub fn start(name: &str, endpoint: &str, policy: RetryPolicy) -> OtlpSpans {
        let mut client = Client::new(endpoint);
        OtlpSpans(BatchQueue::start(
            &format!("sink-{name}-spans"),
            ssfd_telemetry::span_sink(name, "otlp"),
            ssfd_telemetry::Stage::Sink,
            policy,
            SPANS_PER_EXPORT,
            move |spans: &[SsfSpan]| client.traces(trace_request(spans)),
        ))
    }
}

impl SpanSink for OtlpSpans {
    fn append(&self, spans: &SpanBatch) {
        self.0.offer(
            spans
                .iter()
                .filter_map(|(_, bytes)| SsfSpan::decode(bytes).ok())
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_trace_id_comes_back_whole() {
        let mut span = SsfSpan {
            trace_id: 0x0102_0304_0506_0708,
            id: -1,
            parent_id: 5,
            name: "op".into(),
            error: true,
            ..Default::default()
        };
        assert_eq!(
            otlp_span(&span).trace_id,
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        span.trace_id_high = 0xffee_ddcc_bbaa_9988;
        span.tags.insert("span.kind".into(), "client".into());
        let otlp = otlp_span(&span);
        assert_eq!(
            otlp.trace_id,
            [
                0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 1, 2, 3, 4, 5, 6, 7, 8
            ]
        );
        assert_eq!(otlp.span_id, [0xff; 8]);
        assert_eq!(otlp.parent_span_id, 5u64.to_be_bytes());
        assert_eq!(otlp.kind, 3);
        assert!(
            otlp.attributes.is_empty(),
            "the carried tags are not attributes"
        );
        assert_eq!(otlp.status.unwrap().code, 2);
        // typed attributes and the resource go back as OTLP typed values
        span.tags.insert("http.status_code".into(), "502".into());
        span.attributes.push(Attribute {
            key: "http.status_code".into(),
            value: Some(ssfd_wire::ssfd::v1::attribute::Value::IntValue(502)),
        });
        span.resource.push(Attribute {
            key: "host.name".into(),
            value: Some(ssfd_wire::ssfd::v1::attribute::Value::StringValue(
                "h1".into(),
            )),
        });
        span.service = "api".into();
        let request = trace_request(&[span]);
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes.len(), 2, "service.name and host.name");
        assert_eq!(resource.attributes[1].key, "host.name");
        let attributes = &request.resource_spans[0].scope_spans[0].spans[0].attributes;
        assert_eq!(
            attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(502))
        );
    }
}
