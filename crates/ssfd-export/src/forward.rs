//! Forwarding (SPEC 1, 4.2; issue 6): a local sends, every flush, its global and mixed
//! state to `forward_address` over Veneur's `/forwardrpc.Forward/SendMetricsV2` (a
//! stream of `metricpb.Metric`), behind its own queue and thread with retries
//! ([`crate::delivery`]). Its telemetry is `ssfd_forward_*{destination}`.

use crate::delivery::{Deliver, GrpcClient, Payload, SendError};
use prost::Message;
use ssfd_engine::Flush;
use ssfd_wire::forwardrpc::MetricList;
use ssfd_wire::forwardrpc::forward_client::ForwardClient;

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
