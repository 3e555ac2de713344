//! Forwarding (SPEC 1, 4.2; issue 6): a local sends, every flush, its global and mixed
//! state to `forward_address` over Veneur's `/forwardrpc.Forward/SendMetricsV2` (a
//! stream of `metricpb.Metric`), behind its own queue and thread with retries
//! ([`crate::delivery`]). Its telemetry is `ssfd_forward_*{destination}`. Every valid
//! span goes upstream too ([`ForwardSpans`]), over `ssfd.v1.Ingest/SendSpans` with
//! the `ssfd-forwarded` metadata, so the global stores and indexes it without deriving
//! its metrics again; so does every log record a client sent alone, over
//! `ssfd.v1.Logs/SendLogs` (a proxy sends each to its trace's owner).

use crate::delivery::{
    BatchQueue, Deliver, GrpcClient, Payload, RetryPolicy, SendError, send_forwarded_logs,
    send_forwarded_metrics, send_forwarded_spans,
};
use prost::Message;
use ssfd_engine::{Flush, SpanBatch, SpanSink};
use ssfd_wire::forwardrpc::MetricList;
use ssfd_wire::ssf::SsfSpan;

/// Metrics per `SendMetricsV2` call.
const METRICS_PER_CALL: usize = 10_000;

pub struct ForwardSink {
    address: String,
    client: Option<GrpcClient>,
}

impl ForwardSink {
    pub fn new(address: &str) -> ForwardSink {
        ForwardSink {
            address: address.to_string(),
            client: None,
        }
    }
}

impl Deliver for ForwardSink {
    fn kind(&self) -> &'static str {
        "forward"
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        flush
            .forward
            .chunks(METRICS_PER_CALL)
            .map(|chunk| Payload {
                endpoint: 0,
                items: chunk.len() as u64,
                body: MetricList {
                    metrics: chunk.to_vec(),
                }
                .encode_to_vec(),
            })
            .collect()
    }

    fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let list = MetricList::decode(&payload.body[..])
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let address = self.address.clone();
        let client = self
            .client
            .get_or_insert_with(|| GrpcClient::peer(&address));
        send_forwarded_metrics(client, &list.metrics)
    }
}

/// Spans per `SendSpans` call.
const SPANS_PER_CALL: usize = 4096;

/// A local's span and log forwarding: a span sink with its own queues and threads.
pub struct ForwardSpans {
    spans: BatchQueue<SsfSpan>,
    logs: BatchQueue<ssfd_wire::ssfd::v1::LogRecord>,
}

impl ForwardSpans {
    pub fn start(address: &str, policy: RetryPolicy) -> ForwardSpans {
        let mut client = GrpcClient::peer(address);
        let spans = BatchQueue::start(
            "forward-spans",
            ssfd_telemetry::span_sink(&format!("{address} spans"), "forward"),
            ssfd_telemetry::Stage::Forward,
            policy,
            SPANS_PER_CALL,
            move |spans: &[SsfSpan]| send_forwarded_spans(&mut client, spans),
        );
        let mut client = GrpcClient::peer(address);
        let logs = BatchQueue::start(
            "forward-logs",
            ssfd_telemetry::span_sink(&format!("{address} logs"), "forward"),
            ssfd_telemetry::Stage::Forward,
            policy,
            SPANS_PER_CALL,
            move |records: &[ssfd_wire::ssfd::v1::LogRecord]| {
                send_forwarded_logs(&mut client, records)
            },
        );
        ForwardSpans { spans, logs }
    }
}

impl SpanSink for ForwardSpans {
    fn append(&self, spans: &SpanBatch) {
        // spans forwarded to this server go no further
        if spans.forwarded {
            return;
        }
        self.spans.offer(
            spans
                .iter()
                .filter_map(|(_, bytes)| SsfSpan::decode(bytes).ok())
                .collect(),
        );
    }

    /// A record inside a span travels with its span; one sent alone goes by itself.
    fn append_alone(&self, records: &[ssfd_engine::LogRecord]) {
        self.logs.offer(
            records
                .iter()
                .map(ssfd_engine::LogRecord::to_wire)
                .collect(),
        );
    }
}
