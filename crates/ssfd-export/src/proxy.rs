//! The proxy role (SPEC 1, issue 6): what locals forward to a proxy is routed over a
//! consistent-hash ring of globals ([`ssfd_cluster::Ring`]): forwarded metrics by
//! series key (name, type and sorted tags, minus `ignore_tags`), spans by trace id, so
//! a series and a trace always land whole on one global. A proxy holds nothing it has
//! acknowledged (SPEC 7): a call is answered OK only once every global its items went
//! to answered OK, and a global answers OK once the items are in its write-ahead log.
//! A global that fails a call (down, refusing, too slow) is left out of that call and
//! its items go where the ring would send them without it; when no global is left the
//! call fails with `UNAVAILABLE`, so the local keeps the items and retries (items that
//! went through before then arrive again: at least once). A health check every second
//! takes a destination that does not answer SERVING out of the ring (its keys move to
//! the others) and puts it back when it answers again. `/api/v1/traces/{id}` at the
//! proxy asks the owning global (`ssfd.v1.Query/GetTrace`) and joins the answer there;
//! every other read asks every global at once (`ssfd.v1.Query/Read`, `Tail`) and the
//! answers are merged by `ssfd_query::fleet`.
//! Destinations are a static list plus what `dns_names` resolve to, resolved again
//! every `resolve_interval` (a headless Kubernetes service).

use crate::delivery::{GrpcClient, forward_logs, forward_metrics, forward_spans, peer_channel};
use ssfd_cluster::Ring;
use ssfd_telemetry::SinkCounters;
use ssfd_wire::metricpb::Metric;
use ssfd_wire::ssf::SsfSpan;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How long a proxy waits for a global to connect, and to answer one call, before it
/// routes that call's items around it (below a local's own 10 s call timeout, so the
/// local is answered before it gives up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// No new round of calls starts this long after the first: the call fails instead
/// and the local retries it. A round takes at most the connect and call timeouts, so
/// a call ends within about 9 s, before the local's own 10 s timeout.
const ROUTE_BUDGET: Duration = Duration::from_secs(3);

/// A destination's channel and its `ssfd_forward_*{destination}` counters.
#[derive(Clone)]
struct Upstream {
    channel: tonic::transport::Channel,
    counters: Arc<SinkCounters>,
}

/// Routes forwarded metrics and spans to the globals.
pub struct Proxy {
    ring: Arc<RwLock<Ring>>,
    upstreams: Mutex<HashMap<String, Upstream>>,
    /// Every destination the health check watches: the static ones and what the DNS
    /// names resolve to now.
    known: Arc<RwLock<Vec<String>>>,
    ignore_tags: Vec<String>,
    /// Channels for reads, without the forwarding's call timeout (a read has its own).
    readers: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// `Bearer <token>` sent with every read, when the fleet's API has a token.
    read_token: RwLock<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>,
}

/// One global's answer to a read: its address, and its status and JSON body or why
/// it gave none.
pub type NodeAnswer = (String, Result<(u16, Vec<u8>), String>);

/// What a proxy routes: forwarded metrics and spans.
trait Routed: Clone + Send + Sync + 'static {
    /// Where on the ring the item belongs.
    fn key(&self, ignore_tags: &[String]) -> u64;
    /// One call to a global with `items`.
    fn send(
        channel: tonic::transport::Channel,
        items: Arc<[Self]>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send;
}

impl Routed for Metric {
    fn key(&self, ignore_tags: &[String]) -> u64 {
        metric_key(self, ignore_tags)
    }
    fn send(
        channel: tonic::transport::Channel,
        items: Arc<[Self]>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send {
        forward_metrics(channel, items)
    }
}

impl Routed for SsfSpan {
    fn key(&self, _: &[String]) -> u64 {
        span_key(ssfd_wire::ids::TraceId::from_parts(
            self.trace_id_high,
            self.trace_id,
        ))
    }
    fn send(
        channel: tonic::transport::Channel,
        items: Arc<[Self]>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send {
        forward_spans(channel, items)
    }
}

impl Routed for ssfd_wire::ssfd::v1::LogRecord {
    fn key(&self, _: &[String]) -> u64 {
        log_key(self)
    }
    fn send(
        channel: tonic::transport::Channel,
        items: Arc<[Self]>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send {
        forward_logs(channel, items)
    }
}

/// The routing key of a log record (SPEC 1): its trace's, so it meets the trace's
/// spans at one global; without a trace id, a hash of the record, to spread them.
pub fn log_key(record: &ssfd_wire::ssfd::v1::LogRecord) -> u64 {
    let trace = ssfd_wire::ids::TraceId::from_parts(record.trace_id_high, record.trace_id);
    if trace != ssfd_wire::ids::TraceId::default() {
        return span_key(trace);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(&record.timestamp_ns.to_le_bytes());
    hasher.update(record.service.as_bytes());
    hasher.update(&[0]);
    hasher.update(record.name.as_bytes());
    hasher.update(&[0]);
    hasher.update(record.message.as_bytes());
    hasher.digest()
}

/// One call to a global: the owner, its counters, the items, and how it went.
type Call<T> = (
    String,
    Arc<SinkCounters>,
    Arc<[T]>,
    Result<(), tonic::Status>,
);

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

/// The routing key of a span: its 128-bit trace id (an SSF id hashes as its 64 bits
/// always did, so SSF traces keep their owners).
pub fn span_key(trace_id: ssfd_wire::ids::TraceId) -> u64 {
    trace_id.hash64()
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
            upstreams: Mutex::new(HashMap::new()),
            known: Arc::new(RwLock::new(all.clone())),
            ignore_tags,
            readers: Mutex::new(HashMap::new()),
            read_token: RwLock::new(None),
        });
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

    /// The destinations now: new ones join the ring (the health check then keeps it
    /// honest), vanished ones leave it and lose their channels.
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
                ring.add(new);
            }
        }
        self.upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|destination, _| destinations.contains(destination));
        *known = destinations;
    }

    /// The channel and counters of `destination`, made on first use (inside the
    /// caller's runtime); `Err` when its address does not make an endpoint.
    fn upstream(&self, destination: &str) -> Result<Upstream, String> {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = upstreams.get(destination) {
            return Ok(upstream.clone());
        }
        let upstream = Upstream {
            channel: peer_channel(destination, CONNECT_TIMEOUT, CALL_TIMEOUT)?,
            counters: ssfd_telemetry::sink(destination, "forward"),
        };
        upstreams.insert(destination.to_string(), upstream.clone());
        Ok(upstream)
    }

    /// Sends `Bearer <token>` with every read (`http_bearer_token_file`: a fleet shares
    /// it); a token that is not valid metadata is not sent.
    pub fn set_read_token(&self, token: Option<String>) {
        let value = token.and_then(|t| format!("Bearer {t}").parse().ok());
        if let Ok(mut slot) = self.read_token.write() {
            *slot = value;
        }
    }

    /// `request` with the read token, when there is one.
    fn with_token<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = self.read_token.read().ok().and_then(|t| t.clone()) {
            request.metadata_mut().insert("authorization", token);
        }
        request
    }

    /// The channel for reads from `destination`, made on first use.
    fn reader(&self, destination: &str) -> Result<tonic::transport::Channel, String> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = readers.get(destination) {
            return Ok(channel.clone());
        }
        let channel = peer_channel(destination, CONNECT_TIMEOUT, Duration::from_secs(3600))?;
        readers.insert(destination.to_string(), channel.clone());
        Ok(channel)
    }

    /// Every global the proxy knows (in the ring or not: one out of it is a failed
    /// part of a fleet-wide answer).
    pub fn globals(&self) -> Vec<String> {
        self.known.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// `GET path?query` asked of every global at once (`ssfd.v1.Query/Read`); each
    /// answer or why there was none within `timeout`, in the order of [`Proxy::globals`].
    pub async fn read_all(&self, path: &str, query: &str, timeout: Duration) -> Vec<NodeAnswer> {
        let mut calls = Vec::new();
        for global in self.globals() {
            let channel = self.reader(&global);
            let request = self.with_token(ssfd_wire::ssfd::v1::ReadRequest {
                path: path.to_string(),
                query: query.to_string(),
            });
            calls.push(async move {
                let answer = match channel {
                    Err(error) => Err(error),
                    Ok(channel) => {
                        let mut client =
                            ssfd_wire::ssfd::v1::query_client::QueryClient::new(channel)
                                .max_decoding_message_size(256 << 20);
                        match tokio::time::timeout(timeout, client.read(request)).await {
                            Err(_) => Err(format!("no answer within query_timeout {timeout:?}")),
                            Ok(Err(status)) => Err(status_text(&status)),
                            Ok(Ok(answer)) => {
                                let answer = answer.into_inner();
                                Ok((u16::try_from(answer.status).unwrap_or(502), answer.body))
                            }
                        }
                    }
                };
                (global, answer)
            });
        }
        futures_join_all(calls).await
    }

    /// New log records matching `query`, from every global (`ssfd.v1.Query/Tail`),
    /// until the receiver is dropped; a global that fails is asked again every second.
    pub fn tail_all(
        self: &Arc<Self>,
        query: &str,
    ) -> tokio::sync::mpsc::Receiver<ssfd_wire::ssfd::v1::LogRecord> {
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        for global in self.globals() {
            let (proxy, sender, query) = (Arc::clone(self), sender.clone(), query.to_string());
            tokio::spawn(async move {
                while !sender.is_closed() {
                    if let Ok(channel) = proxy.reader(&global) {
                        let mut client =
                            ssfd_wire::ssfd::v1::query_client::QueryClient::new(channel);
                        let request = proxy.with_token(ssfd_wire::ssfd::v1::ReadRequest {
                            path: "/api/v1/logs/tail".into(),
                            query: query.clone(),
                        });
                        // a global that never answers holds nothing once the reader left
                        let call = tokio::select! {
                            call = client.tail(request) => call,
                            () = sender.closed() => return,
                        };
                        if let Ok(stream) = call {
                            let mut stream = stream.into_inner();
                            loop {
                                tokio::select! {
                                    record = stream.message() => match record {
                                        Ok(Some(record)) => {
                                            if sender.send(record).await.is_err() {
                                                return;
                                            }
                                        }
                                        _ => break,
                                    },
                                    () = sender.closed() => return,
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        receiver
    }

    /// The stored spans of `trace_id`, asked of the global that owns it
    /// (`ssfd.v1.Query/GetTrace`); blocking.
    pub fn fetch_trace(
        &self,
        trace_id: ssfd_wire::ids::TraceId,
    ) -> Result<(Vec<Vec<u8>>, Vec<ssfd_engine::LogRecord>), String> {
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
                    .get_trace(self.with_token(ssfd_wire::ssfd::v1::TraceRequest {
                        trace_id: trace_id.low(),
                        trace_id_high: trace_id.high(),
                    }))
                    .await
            })
            .map(|answer| {
                let answer = answer.into_inner();
                let logs = answer
                    .logs
                    .into_iter()
                    .map(ssfd_engine::LogRecord::from_wire)
                    .collect();
                (answer.spans, logs)
            })
            .map_err(|status| format!("global {owner}: {}", status.message()))
    }

    /// Routes forwarded metrics by series key; `Ok` once every global they went to
    /// answered OK, `Err` when some could go to no global (nothing is kept here).
    pub async fn route_metrics(&self, metrics: Vec<Metric>) -> Result<(), String> {
        self.route(metrics).await
    }

    /// Routes forwarded spans by trace id, as [`Proxy::route_metrics`].
    pub async fn route_spans(&self, spans: Vec<SsfSpan>) -> Result<(), String> {
        self.route(spans).await
    }

    /// Routes forwarded log records by trace id (others by a hash of the record), as
    /// [`Proxy::route_metrics`].
    pub async fn route_logs(
        &self,
        records: Vec<ssfd_wire::ssfd::v1::LogRecord>,
    ) -> Result<(), String> {
        self.route(records).await
    }

    /// Sends `items` to their owners, to all owners at once; the items of an owner
    /// that fails go again to their owners without it, until every item is delivered
    /// or no global is left.
    async fn route<T: Routed>(&self, mut items: Vec<T>) -> Result<(), String> {
        let mut excluded: Vec<String> = Vec::new();
        let mut last_error = String::from("no global is in the proxy's ring");
        let started = std::time::Instant::now();
        while !items.is_empty() {
            if started.elapsed() > ROUTE_BUDGET {
                return Err(format!(
                    "the globals did not take the items within {ROUTE_BUDGET:?}: {last_error}"
                ));
            }
            let mut by_owner: HashMap<String, Vec<T>> = HashMap::new();
            {
                let ring = self.ring.read().map_err(|e| e.to_string())?;
                for item in items {
                    let Some(owner) = ring.owner_excluding(item.key(&self.ignore_tags), &excluded)
                    else {
                        return Err(format!("no global took the items: {last_error}"));
                    };
                    by_owner.entry(owner.to_string()).or_default().push(item);
                }
            }
            let mut calls = tokio::task::JoinSet::<Call<T>>::new();
            items = Vec::new();
            for (owner, owned) in by_owner {
                match self.upstream(&owner) {
                    Ok(Upstream { channel, counters }) => {
                        calls.spawn(async move {
                            let owned: Arc<[T]> = owned.into();
                            let result = T::send(channel, Arc::clone(&owned)).await;
                            (owner, counters, owned, result)
                        });
                    }
                    Err(error) => {
                        last_error = error;
                        excluded.push(owner);
                        items.extend(owned);
                    }
                }
            }
            while let Some(joined) = calls.join_next().await {
                let (owner, counters, owned, result) = joined.map_err(|e| e.to_string())?;
                match result {
                    Ok(()) => {
                        counters.sent.fetch_add(owned.len() as u64, Relaxed);
                    }
                    Err(status) => {
                        tracing::warn!(
                            global = %owner,
                            error = %status,
                            items = owned.len(),
                            "proxy: a global failed a call; its items go to the next global"
                        );
                        counters.retries.fetch_add(1, Relaxed);
                        last_error = format!("global {owner}: {}", status.message());
                        excluded.push(owner);
                        items.extend(owned.iter().cloned());
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a failed read says: the status's message, else its code.
fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    }
}

/// Runs `calls` together; their outputs in order.
async fn futures_join_all<F>(calls: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => out.push(output),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    out
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
    fn a_log_record_goes_where_its_trace_goes() {
        let trace = ssfd_wire::ids::TraceId::from_parts(7, 9);
        let record =
            |trace: ssfd_wire::ids::TraceId, message: &str| ssfd_wire::ssfd::v1::LogRecord {
                trace_id_high: trace.high(),
                trace_id: trace.low(),
                message: message.into(),
                ..Default::default()
            };
        assert_eq!(log_key(&record(trace, "a")), span_key(trace));
        assert_eq!(log_key(&record(trace, "b")), span_key(trace));
        let none = ssfd_wire::ids::TraceId::default();
        assert_ne!(log_key(&record(none, "a")), log_key(&record(none, "b")));
    }

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
