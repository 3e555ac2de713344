//! The proxy role (SPEC 1, issue 6, first part): what locals forward to a proxy is
//! routed over a consistent-hash ring of globals ([`ssfd_cluster::Ring`]): forwarded
//! metrics by series key (name, type and sorted tags, minus `ignore_tags`), spans by
//! trace id, so a series and a trace always land whole on one global. Each destination
//! has its own bounded queues and sender threads with retries; a health check every
//! second takes a destination that does not answer SERVING out of the ring (its keys
//! move to the others) and puts it back when it answers again. `/api/v1/traces/{id}`
//! at the proxy asks the owning global (`ssfd.v1.Query/GetTrace`) and joins the
//! answer there. Destinations are a static list plus what `dns_names` resolve to,
//! resolved again every `resolve_interval` (a headless Kubernetes service).

use crate::delivery::{
    BatchQueue, GrpcClient, RetryPolicy, send_forwarded_metrics, send_forwarded_spans,
};
use ssfd_cluster::Ring;
use ssfd_wire::metricpb::Metric;
use ssfd_wire::ssf::SsfSpan;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

struct Upstream {
    metrics: BatchQueue<Metric>,
    spans: BatchQueue<SsfSpan>,
}

/// Forwarded items per call to a global.
const PER_CALL: usize = 10_000;

/// Routes forwarded metrics and spans to the globals.
pub struct Proxy {
    ring: Arc<RwLock<Ring>>,
    upstreams: RwLock<HashMap<String, Upstream>>,
    /// Every destination the health check watches: the static ones and what the DNS
    /// names resolve to now.
    known: Arc<RwLock<Vec<String>>>,
    ignore_tags: Vec<String>,
}

/// `host:port` names resolved to `ip:port` destinations (IPv6 in brackets).
pub fn resolve(names: &[String]) -> Vec<String> {
    use std::net::ToSocketAddrs;
    let mut out: Vec<String> = names
        .iter()
        .flat_map(|name| match name.to_socket_addrs() {
            Ok(addresses) => addresses.map(|a| a.to_string()).collect::<Vec<_>>(),
            Err(error) => {
                tracing::warn!(%name, %error, "proxy: a DNS name does not resolve");
                Vec::new()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The routing key of a forwarded metric: name, type, its tags sorted, minus the
/// ignored tag names.
pub fn metric_key(metric: &Metric, ignore_tags: &[String]) -> u64 {
    let mut tags: Vec<&str> = metric
        .tags
        .iter()
        .map(String::as_str)
        .filter(|tag| {
            let name = tag.split_once(':').map_or(*tag, |(name, _)| name);
            !ignore_tags.iter().any(|ignored| ignored == name)
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(metric.name.as_bytes());
    hasher.update(&[0, metric.r#type as u8, 0]);
    hasher.update(tags.join(",").as_bytes());
    hasher.digest()
}

/// The routing key of a span: its trace id.
pub fn span_key(trace_id: i64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&trace_id.to_le_bytes())
}

impl Proxy {
    /// Starts routing to `destinations` and to what `dns_names` resolve to, resolved
    /// again every `resolve_interval`.
    pub fn start(
        destinations: &[String],
        dns_names: &[String],
        resolve_interval: Duration,
        ignore_tags: Vec<String>,
    ) -> Arc<Proxy> {
        let mut all = destinations.to_vec();
        all.extend(resolve(dns_names));
        all.sort();
        all.dedup();
        let proxy = Arc::new(Proxy {
            ring: Arc::new(RwLock::new(Ring::new(&all))),
            upstreams: RwLock::new(HashMap::new()),
            known: Arc::new(RwLock::new(all.clone())),
            ignore_tags,
        });
        for destination in &all {
            proxy.upstream(destination);
        }
        let (known, ring) = (Arc::clone(&proxy.known), Arc::clone(&proxy.ring));
        std::thread::Builder::new()
            .name("ssfd-proxy-health".into())
            .spawn(move || health(&known, &ring))
            .expect("spawn the proxy health thread");
        if !dns_names.is_empty() {
            let weak = Arc::downgrade(&proxy);
            let (statics, names) = (destinations.to_vec(), dns_names.to_vec());
            std::thread::Builder::new()
                .name("ssfd-proxy-dns".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(resolve_interval);
                        let Some(proxy) = weak.upgrade() else { return };
                        let mut now = statics.clone();
                        now.extend(resolve(&names));
                        now.sort();
                        now.dedup();
                        proxy.set_destinations(now);
                    }
                })
                .expect("spawn the proxy resolver thread");
        }
        proxy
    }

    /// The destinations now: new ones get their queues and join the ring (the
    /// health check then keeps it honest), vanished ones leave.
    pub fn set_destinations(&self, destinations: Vec<String>) {
        let Ok(mut known) = self.known.write() else {
            return;
        };
        if *known == destinations {
            return;
        }
        tracing::info!(?destinations, "proxy destinations changed");
        if let Ok(mut ring) = self.ring.write() {
            for gone in known.iter().filter(|d| !destinations.contains(d)) {
                ring.remove(gone);
            }
            for new in destinations.iter().filter(|d| !known.contains(d)) {
                self.upstream(new);
                ring.add(new);
            }
        }
        *known = destinations;
    }

    /// The queues and sender threads of `destination`, made on first use.
    fn upstream(&self, destination: &str) {
        let Ok(mut upstreams) = self.upstreams.write() else {
            return;
        };
        if upstreams.contains_key(destination) {
            return;
        }
        let policy = RetryPolicy::default();
        let mut metric_client = GrpcClient::peer(destination);
        let mut span_client = GrpcClient::peer(destination);
        let metrics = BatchQueue::start(
            "proxy-metrics",
            ssfd_telemetry::sink(destination, "forward"),
            ssfd_telemetry::Stage::Forward,
            policy,
            PER_CALL,
            move |metrics: &[Metric]| send_forwarded_metrics(&mut metric_client, metrics),
        );
        let spans = BatchQueue::start(
            "proxy-spans",
            ssfd_telemetry::sink(&format!("{destination} spans"), "forward"),
            ssfd_telemetry::Stage::Forward,
            policy,
            PER_CALL,
            move |spans: &[SsfSpan]| send_forwarded_spans(&mut span_client, spans),
        );
        upstreams.insert(destination.to_string(), Upstream { metrics, spans });
    }

    /// The stored spans of `trace_id`, asked of the global that owns it
    /// (`ssfd.v1.Query/GetTrace`); blocking.
    pub fn fetch_trace(&self, trace_id: i64) -> Result<Vec<Vec<u8>>, String> {
        let owner = self
            .ring
            .read()
            .map_err(|e| e.to_string())?
            .owner(span_key(trace_id))
            .map(String::from)
            .ok_or("no global is in the ring")?;
        let mut client = GrpcClient::peer(&owner);
        let channel = client
            .channel()
            .map_err(|_| format!("global {owner} does not answer"))?;
        client
            .block_on(async move {
                ssfd_wire::ssfd::v1::query_client::QueryClient::new(channel)
                    .max_decoding_message_size(256 << 20)
                    .get_trace(ssfd_wire::ssfd::v1::TraceRequest { trace_id })
                    .await
            })
            .map(|answer| answer.into_inner().spans)
            .map_err(|status| format!("global {owner}: {}", status.message()))
    }

    /// Routes forwarded metrics by series key; a full queue drops and counts, and so
    /// does a key no global owns.
    pub fn route_metrics(&self, metrics: Vec<Metric>) {
        let mut by_owner: HashMap<String, Vec<Metric>> = HashMap::new();
        {
            let Ok(ring) = self.ring.read() else { return };
            for metric in metrics {
                let Some(owner) = ring.owner(metric_key(&metric, &self.ignore_tags)) else {
                    ssfd_telemetry::dropped(
                        ssfd_telemetry::Stage::Forward,
                        ssfd_telemetry::DropReason::RetryExhausted,
                        1,
                    );
                    continue;
                };
                by_owner.entry(owner.to_string()).or_default().push(metric);
            }
        }
        let Ok(upstreams) = self.upstreams.read() else {
            return;
        };
        for (owner, metrics) in by_owner {
            let Some(upstream) = upstreams.get(&owner) else {
                unrouted(metrics.len());
                continue;
            };
            upstream.metrics.offer(metrics);
        }
    }

    /// Routes forwarded spans by trace id; a full queue drops and counts.
    pub fn route_spans(&self, spans: Vec<SsfSpan>) {
        let mut by_owner: HashMap<String, Vec<SsfSpan>> = HashMap::new();
        {
            let Ok(ring) = self.ring.read() else { return };
            for span in spans {
                match ring.owner(span_key(span.trace_id)) {
                    Some(owner) => by_owner.entry(owner.to_string()).or_default().push(span),
                    // no global answers: dropped, and counted as the metrics are
                    None => unrouted(1),
                }
            }
        }
        let Ok(upstreams) = self.upstreams.read() else {
            unrouted(by_owner.values().map(Vec::len).sum());
            return;
        };
        for (owner, spans) in by_owner {
            let Some(upstream) = upstreams.get(&owner) else {
                unrouted(spans.len());
                continue;
            };
            upstream.spans.offer(spans);
        }
    }
}

/// Items a proxy could not route (no global in its ring answers): dropped and counted.
fn unrouted(items: usize) {
    ssfd_telemetry::dropped(
        ssfd_telemetry::Stage::Forward,
        ssfd_telemetry::DropReason::RetryExhausted,
        items as u64,
    );
}

/// Every second: a known destination answering SERVING is in the ring, any other is
/// out.
fn health(known: &RwLock<Vec<String>>, ring: &RwLock<Ring>) {
    let mut clients: HashMap<String, GrpcClient> = HashMap::new();
    loop {
        let destinations = known.read().map(|k| k.clone()).unwrap_or_default();
        clients.retain(|d, _| destinations.contains(d));
        for destination in &destinations {
            let client = clients
                .entry(destination.clone())
                .or_insert_with(|| GrpcClient::peer(destination));
            let serving = client.channel().is_ok_and(|channel| {
                let answer = client.block_on(async move {
                    tokio::time::timeout(
                        Duration::from_secs(1),
                        tonic_health::pb::health_client::HealthClient::new(channel).check(
                            tonic_health::pb::HealthCheckRequest {
                                service: String::new(),
                            },
                        ),
                    )
                    .await
                });
                matches!(answer, Ok(Ok(response)) if response.get_ref().status == 1)
            });
            if !serving {
                // the next check connects afresh
                let _ = client.status(tonic::Status::unavailable("health check failed"));
            }
            if let Ok(mut ring) = ring.write() {
                // a destination that vanished meanwhile stays out
                let still_known = known.read().is_ok_and(|k| k.contains(destination));
                let present = ring.destinations().iter().any(|d| d == destination);
                match (serving && still_known, present) {
                    (true, false) => {
                        tracing::info!(%destination, "global answers again: back in the ring");
                        ring.add(destination);
                    }
                    (false, true) => {
                        tracing::warn!(%destination, "global does not answer: out of the ring");
                        ring.remove(destination);
                    }
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_tags_do_not_split_a_series_key() {
        let metric = |tags: &[&str]| Metric {
            name: "m".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let ignore = vec!["host".to_string()];
        let key = |tags: &[&str]| metric_key(&metric(tags), &ignore);
        assert_eq!(key(&["env:a", "host:h1"]), key(&["host:h2", "env:a"]));
        assert_eq!(key(&["env:a", "host"]), key(&["env:a"]));
        assert_ne!(key(&["env:a"]), key(&["env:b"]));
        assert_ne!(
            metric_key(&metric(&["host:h1"]), &[]),
            metric_key(&metric(&["host:h2"]), &[])
        );
    }
}
