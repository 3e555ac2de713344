//! Forwarding (SPEC 1, 4.2; issue 6): a local sends, every flush, its global and mixed
//! state to `forward_address` over Veneur's `/forwardrpc.Forward/SendMetricsV2` (a
//! stream of `metricpb.Metric`), behind its own queue and thread with retries
//! ([`crate::delivery`]). Its telemetry is `ssfd_forward_*{destination}`. Every valid
//! span goes upstream too ([`ForwardSpans`]), over `ssfd.v1.Ingest/SendSpans` with
//! the `ssfd-forwarded` metadata, so the global stores and indexes it without deriving
//! its metrics again.

use crate::delivery::{
    Deliver, GrpcClient, Jitter, Payload, RetryPolicy, SendError, send_with_retries,
};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use prost::Message;
use ssfd_engine::Flush;
use ssfd_engine::{SpanBatch, SpanSink};
use ssfd_wire::forwardrpc::MetricList;
use ssfd_wire::forwardrpc::forward_client::ForwardClient;
use ssfd_wire::ssf::SsfSpan;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

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
        let client = self.client.get_or_insert_with(|| GrpcClient::new(&address));
        let channel = client.channel()?;
        let result = client.block_on(async move {
            ForwardClient::new(channel)
                .send_metrics_v2(tokio_stream::iter(list.metrics))
                .await
        });
        result.map(drop).map_err(|status| client.status(status))
    }
}

/// Spans per `SendSpans` call.
const SPANS_PER_CALL: usize = 4096;

/// A local's span forwarding: a span sink with its own queue and thread.
pub struct ForwardSpans {
    queue: Sender<Vec<SsfSpan>>,
    counters: Arc<ssfd_telemetry::SinkCounters>,
}

impl ForwardSpans {
    pub fn start(address: &str, policy: RetryPolicy) -> ForwardSpans {
        let counters = ssfd_telemetry::sink(&format!("{address} spans"), "forward");
        let (queue, work) = bounded(policy.queue.max(1) * 64);
        let thread_counters = Arc::clone(&counters);
        let address = address.to_string();
        std::thread::Builder::new()
            .name("ssfd-forward-spans".into())
            .spawn(move || forward_spans(&address, policy, &work, &thread_counters))
            .expect("spawn the span forwarding thread");
        ForwardSpans { queue, counters }
    }
}

fn forward_spans(
    address: &str,
    policy: RetryPolicy,
    work: &Receiver<Vec<SsfSpan>>,
    counters: &ssfd_telemetry::SinkCounters,
) {
    let mut client = GrpcClient::new(address);
    let mut jitter = Jitter::default();
    while let Ok(first) = work.recv() {
        let started = std::time::Instant::now();
        let mut spans = first;
        while spans.len() < SPANS_PER_CALL {
            match work.try_recv() {
                Ok(more) => spans.extend(more),
                Err(_) => break,
            }
        }
        let count = spans.len() as u64;
        send_with_retries(
            "forward spans",
            &policy,
            counters,
            &mut jitter,
            count,
            || {
                let channel = client.channel()?;
                let mut request = tonic::Request::new(tokio_stream::iter(spans.clone()));
                request.metadata_mut().insert(
                    "ssfd-forwarded",
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                let result = client.block_on(async move {
                    ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel)
                        .send_spans(request)
                        .await
                });
                result.map(drop).map_err(|status| client.status(status))
            },
        );
        counters.observe_flush(started.elapsed().as_secs_f64());
    }
}

impl SpanSink for ForwardSpans {
    fn append(&self, spans: &SpanBatch) {
        // spans forwarded to this server go no further
        if spans.forwarded {
            return;
        }
        let decoded: Vec<SsfSpan> = spans
            .iter()
            .filter_map(|(_, bytes)| SsfSpan::decode(bytes).ok())
            .collect();
        let count = decoded.len() as u64;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(decoded)
        {
            self.counters.dropped.fetch_add(count, Relaxed);
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Forward,
                ssfd_telemetry::DropReason::QueueFull,
                count,
            );
        }
    }
}
