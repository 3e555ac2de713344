//! Sink isolation (SPEC 7, issue 5): every network sink gets its own bounded queue and
//! thread. The flusher only routes the interval (`metric_sink_routing`) and offers it
//! to the queue; a full queue drops the interval's items and counts them
//! (`ssfd_sink_dropped_total`), so a stalled or failing sink never slows ingest, the
//! flusher or the other sinks. The thread encodes the interval into payloads and sends
//! each with retries: exponential backoff from 100 ms, doubling to at most 5 s, with
//! ±50 % jitter, up to `max_retries`; then the payload's items are dropped and counted
//! and the delivery counts as a failure. Telemetry per sink: SPEC 10's sent, retries,
//! dropped, failures and a flush-duration summary.

use crate::routing::Router;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use ssfd_engine::{Flush, MetricSink};
use ssfd_telemetry::SinkCounters;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One unit a sink sends whole.
#[derive(Clone, Debug)]
pub struct Payload {
    /// Which of the sink's endpoints (a sink with several APIs numbers them).
    pub endpoint: usize,
    pub body: Vec<u8>,
    /// Metrics, checks or events it carries.
    pub items: u64,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Worth retrying (connection refused, timeout, 5xx, 429).
    Retry(String),
    /// Retrying cannot help (4xx): the payload is dropped at once.
    Permanent(String),
}

/// What a network sink knows how to do.
pub trait Deliver: Send + 'static {
    fn kind(&self) -> &'static str;
    /// The interval's (routed) metrics and events as payloads.
    fn encode(&mut self, flush: &Flush) -> Vec<Payload>;
    fn send(&mut self, payload: &Payload) -> Result<(), SendError>;
}

/// Retry settings of one sink.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Intervals waiting for the sink's thread.
    pub queue: usize,
    /// Retries of one payload after its first attempt.
    pub max_retries: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a queue of spans or forwarded items ([`BatchQueue`]) may keep
    /// delivering once it is dropped at shutdown (`shutdown_timeout`).
    pub shutdown_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            queue: 8,
            max_retries: 4,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A local's forwarding upstream: 8 retries, about 16 s of backoff in all, so a
    /// global (or proxy) that restarts loses the local nothing; later intervals wait
    /// in the queue meanwhile.
    pub fn forward(shutdown_timeout: Duration) -> Self {
        RetryPolicy {
            max_retries: 8,
            shutdown_timeout,
            ..RetryPolicy::default()
        }
    }
}

/// The backoff before retry `attempt` (1-based), with ±50 % jitter from `random`
/// (uniform in [0, 1)).
pub fn backoff(policy: &RetryPolicy, attempt: u32, random: f64) -> Duration {
    let base = policy
        .first_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    base.mul_f64(0.5 + random)
}

enum Work {
    Interval(Arc<Flush>),
    Stop,
}

/// A network sink behind its own queue and thread (the flusher's `MetricSink`).
pub struct QueuedSink {
    name: String,
    router: Option<Arc<Router>>,
    queue: Option<Sender<Work>>,
    counters: Arc<SinkCounters>,
    /// Items queued and not yet handled by the thread.
    queued: Arc<std::sync::atomic::AtomicU64>,
    /// The forwarding sink: it gets `Flush::forward` and nothing else.
    forward: bool,
    /// Where its drops count: `forward` for the forwarding sink, else `sink`.
    stage: ssfd_telemetry::Stage,
    done: Receiver<()>,
    shutdown_timeout: Duration,
}

impl QueuedSink {
    pub fn start(
        name: &str,
        sink: Box<dyn Deliver>,
        policy: RetryPolicy,
        router: Option<Arc<Router>>,
        shutdown_timeout: Duration,
    ) -> QueuedSink {
        let forward = sink.kind() == "forward";
        let stage = if forward {
            ssfd_telemetry::Stage::Forward
        } else {
            ssfd_telemetry::Stage::Sink
        };
        let counters = ssfd_telemetry::sink(name, sink.kind());
        let (queue, work) = bounded(policy.queue);
        let (finished, done) = bounded(1);
        let thread_counters = Arc::clone(&counters);
        let thread_name = name.to_string();
        let queued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name(format!("ssfd-sink-{name}"))
            .spawn(move || {
                run(
                    &thread_name,
                    stage,
                    sink,
                    policy,
                    &work,
                    &thread_counters,
                    &thread_queued,
                );
                let _ = finished.send(());
            })
            .expect("spawn a sink thread");
        QueuedSink {
            name: name.to_string(),
            router,
            queue: Some(queue),
            counters,
            queued,
            forward,
            stage,
            done,
            shutdown_timeout,
        }
    }
}

/// Items an interval carries for a sink.
fn items(flush: &Flush) -> u64 {
    (flush.metrics.len() + flush.summaries.len() + flush.events.len() + flush.forward.len()) as u64
}

impl MetricSink for QueuedSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn flush(&mut self, flush: &Flush) {
        let routed = match &self.router {
            // forwarding takes only the state marked for upstream
            _ if self.forward => Flush {
                timestamp: flush.timestamp,
                forward: flush.forward.clone(),
                durable: flush.durable.clone(),
                ..Flush::default()
            },
            Some(router) => router.route(&self.name, flush),
            None => Flush {
                forward: Vec::new(),
                ..flush.clone()
            },
        };
        let count = items(&routed);
        let Some(queue) = &self.queue else {
            return;
        };
        if ssfd_engine::memory::under_pressure() {
            // memory_limit: a new interval does not wait in memory behind a slow sink
            self.counters
                .dropped
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            ssfd_telemetry::dropped(self.stage, ssfd_telemetry::DropReason::MemoryLimit, count);
            return;
        }
        self.queued
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            queue.try_send(Work::Interval(Arc::new(routed)))
        {
            self.queued
                .fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
            self.counters
                .dropped
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            ssfd_telemetry::dropped(self.stage, ssfd_telemetry::DropReason::QueueFull, count);
        }
    }
}

/// When shutdown began, the moment every sink and queue must be done by
/// (`shutdown_timeout` after the signal), so several sinks do not each wait a whole
/// `shutdown_timeout` one after the other.
static SHUTDOWN_DEADLINE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Starts the shutdown clock: every sink's and queue's delivery at shutdown ends by
/// `timeout` from now (the first call counts).
pub fn begin_shutdown(timeout: Duration) {
    let _ = SHUTDOWN_DEADLINE.set(Instant::now() + timeout);
}

/// The deadline of a delivery at shutdown that may take `timeout` from now.
fn shutdown_deadline(timeout: Duration) -> Instant {
    let own = Instant::now() + timeout;
    SHUTDOWN_DEADLINE.get().map_or(own, |&all| own.min(all))
}

impl Drop for QueuedSink {
    /// Delivers what is queued within `shutdown_timeout`; what is still undelivered
    /// then is counted as dropped (`reason="shutdown"`) and left behind.
    fn drop(&mut self) {
        let deadline = shutdown_deadline(self.shutdown_timeout);
        if let Some(queue) = self.queue.take() {
            let _ = queue.send_deadline(Work::Stop, deadline);
        }
        if self.done.recv_deadline(deadline).is_err() {
            let left = self.queued.load(std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(sink = %self.name, left, "sink still delivering at shutdown; its items are dropped");
            self.counters
                .dropped
                .fetch_add(left, std::sync::atomic::Ordering::Relaxed);
            ssfd_telemetry::dropped(self.stage, ssfd_telemetry::DropReason::Shutdown, left);
        }
    }
}

/// Jitter for backoffs: a xorshift generator seeded from the clock.
pub struct Jitter(u64);

impl Default for Jitter {
    fn default() -> Self {
        Jitter(0x9e37_79b9_7f4a_7c15_u64 ^ now_nanos() | 1)
    }
}

impl Jitter {
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Calls `send` until it succeeds, retrying retryable failures with backoff up to
/// `policy.max_retries`; counts `items` as sent, or as dropped with one failure.
pub fn send_with_retries(
    name: &str,
    stage: ssfd_telemetry::Stage,
    policy: &RetryPolicy,
    counters: &SinkCounters,
    jitter: &mut Jitter,
    items: u64,
    mut send: impl FnMut() -> Result<(), SendError>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut attempt = 0;
    loop {
        match send() {
            Ok(()) => {
                counters.sent.fetch_add(items, Relaxed);
                return;
            }
            Err(SendError::Retry(error)) if attempt < policy.max_retries => {
                attempt += 1;
                counters.retries.fetch_add(1, Relaxed);
                tracing::debug!(sink = name, %error, attempt, "sink send failed; retrying");
                std::thread::sleep(backoff(policy, attempt, jitter.uniform()));
            }
            Err(SendError::Retry(error) | SendError::Permanent(error)) => {
                tracing::warn!(sink = name, %error, "sink send failed; dropping the payload");
                counters.failures.fetch_add(1, Relaxed);
                counters.dropped.fetch_add(items, Relaxed);
                ssfd_telemetry::dropped(stage, ssfd_telemetry::DropReason::RetryExhausted, items);
                return;
            }
        }
    }
}

fn run(
    name: &str,
    stage: ssfd_telemetry::Stage,
    mut sink: Box<dyn Deliver>,
    policy: RetryPolicy,
    work: &Receiver<Work>,
    counters: &SinkCounters,
    queued: &std::sync::atomic::AtomicU64,
) {
    let mut jitter = Jitter::default();
    while let Ok(Work::Interval(flush)) = work.recv() {
        let started = Instant::now();
        for payload in sink.encode(&flush) {
            send_with_retries(
                name,
                stage,
                &policy,
                counters,
                &mut jitter,
                payload.items,
                || sink.send(&payload),
            );
        }
        counters.observe_flush(started.elapsed().as_secs_f64());
        queued.fetch_sub(items(&flush), std::sync::atomic::Ordering::Relaxed);
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Maps an HTTP answer to a send result: 2xx ok; 408, 429 and 5xx retry; other 4xx are
/// permanent.
pub fn http_result(status: u16, what: &str) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("{what} answered {status}"))),
        _ => Err(SendError::Permanent(format!("{what} answered {status}"))),
    }
}

/// An HTTP agent for sinks: 10 s to connect and for the whole exchange, non-2xx
/// answers as values.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs `body` with `headers`; connection errors and timeouts are retryable.
pub fn http_post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), SendError> {
    let mut request = agent.post(url);
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    let shown = shown_url(url);
    match request.send(body) {
        Ok(response) => http_result(response.status().as_u16(), &shown),
        Err(error) => Err(SendError::Retry(format!("{shown}: {error}"))),
    }
}

/// `url` as an error or log line may show it: no query string (Datadog's `api_key`
/// travels there) and no password in the user part.
pub fn shown_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_string(),
    }
}

/// A local sink written by the flusher until now (the `jsonl` file) behind its own
/// queue and thread, so a slow disk stalls nothing else. It writes the interval whole.
pub struct Local {
    kind: &'static str,
    inner: Box<dyn MetricSink>,
    interval: Option<Flush>,
}

impl Local {
    pub fn new(kind: &'static str, inner: Box<dyn MetricSink>) -> Local {
        Local {
            kind,
            inner,
            interval: None,
        }
    }
}

impl Deliver for Local {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        self.interval = Some(flush.clone());
        vec![Payload {
            endpoint: 0,
            body: Vec::new(),
            items: items(flush),
        }]
    }

    fn send(&mut self, _payload: &Payload) -> Result<(), SendError> {
        if let Some(flush) = self.interval.take() {
            self.inner.flush(&flush);
        }
        // the interval was handed over once; a write that failed is not retried (it
        // may have written part of it), so its items count as dropped
        match self.inner.take_error() {
            Some(error) => Err(SendError::Permanent(error)),
            None => Ok(()),
        }
    }
}

/// The `blackhole` sink: accepts everything, delivers nowhere (counted as sent).
pub struct Blackhole;

impl Deliver for Blackhole {
    fn kind(&self) -> &'static str {
        "blackhole"
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        vec![Payload {
            endpoint: 0,
            body: Vec::new(),
            items: items(flush),
        }]
    }

    fn send(&mut self, _payload: &Payload) -> Result<(), SendError> {
        Ok(())
    }
}

/// A bounded queue of items (spans, forwarded metrics) with one sender thread: the
/// thread gathers what is queued, up to `max_batch`, and delivers it with
/// [`send_with_retries`]; a full queue drops the items offered and counts them at
/// `stage`. The OTLP span sink, span forwarding and the proxy's per-global queues are
/// all one of these.
pub struct BatchQueue<T> {
    queue: Option<Sender<Vec<T>>>,
    counters: Arc<SinkCounters>,
    stage: ssfd_telemetry::Stage,
    /// Items offered and not yet sent or dropped by the thread.
    queued: Arc<std::sync::atomic::AtomicU64>,
    /// Closed (disconnected) when the thread has delivered everything and ended.
    done: Receiver<()>,
    shutdown_timeout: Duration,
    name: String,
}

impl<T: Send + 'static> BatchQueue<T> {
    pub fn start(
        name: &str,
        counters: Arc<SinkCounters>,
        stage: ssfd_telemetry::Stage,
        policy: RetryPolicy,
        max_batch: usize,
        mut send: impl FnMut(&[T]) -> Result<(), SendError> + Send + 'static,
    ) -> BatchQueue<T> {
        let (queue, work) = bounded::<Vec<T>>(policy.queue.max(1) * 64);
        let (finished, done) = bounded::<()>(0);
        let queued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread_queued = Arc::clone(&queued);
        let thread_counters = Arc::clone(&counters);
        let label = name.to_string();
        std::thread::Builder::new()
            .name(format!("ssfd-{name}"))
            .spawn(move || {
                // dropped when the queue is closed and empty: the owner's `Drop` waits
                let _finished = finished;
                let mut jitter = Jitter::default();
                while let Ok(mut items) = work.recv() {
                    let started = Instant::now();
                    while items.len() < max_batch {
                        match work.try_recv() {
                            Ok(more) => items.extend(more),
                            Err(_) => break,
                        }
                    }
                    let count = items.len() as u64;
                    send_with_retries(
                        &label,
                        stage,
                        &policy,
                        &thread_counters,
                        &mut jitter,
                        count,
                        || send(&items),
                    );
                    thread_queued.fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
                    thread_counters.observe_flush(started.elapsed().as_secs_f64());
                }
            })
            .expect("spawn a queue thread");
        BatchQueue {
            queue: Some(queue),
            counters,
            stage,
            queued,
            done,
            shutdown_timeout: policy.shutdown_timeout,
            name: name.to_string(),
        }
    }

    /// Queues `items` without waiting; when full they are dropped and counted.
    pub fn offer(&self, items: Vec<T>) {
        if items.is_empty() {
            return;
        }
        let count = items.len() as u64;
        let Some(queue) = &self.queue else {
            return;
        };
        // counted before it is sent, so the thread never subtracts what is not there
        self.queued
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(items) {
            self.queued
                .fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
            self.counters
                .dropped
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            ssfd_telemetry::dropped(self.stage, ssfd_telemetry::DropReason::QueueFull, count);
        }
    }
}

impl<T> Drop for BatchQueue<T> {
    /// Delivers what is queued within `shutdown_timeout` (SPEC 7); what is still
    /// undelivered then is counted as dropped (`reason="shutdown"`) and left behind.
    fn drop(&mut self) {
        let deadline = shutdown_deadline(self.shutdown_timeout);
        // closing the queue ends the thread once it has sent what it holds
        drop(self.queue.take());
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = self.done.recv_deadline(deadline)
        {
            let left = self.queued.load(std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(queue = %self.name, left, "still delivering at shutdown; its items are dropped");
            self.counters
                .dropped
                .fetch_add(left, std::sync::atomic::Ordering::Relaxed);
            ssfd_telemetry::dropped(self.stage, ssfd_telemetry::DropReason::Shutdown, left);
        }
    }
}

/// `ssfd.v1.Ingest/SendSpans` marked `ssfd-forwarded` (span forwarding and the proxy).
pub fn send_forwarded_spans(
    client: &mut GrpcClient,
    spans: &[ssfd_wire::ssf::SsfSpan],
) -> Result<(), SendError> {
    let channel = client.channel()?;
    let result = client.block_on(forward_spans(channel, spans.to_vec().into()));
    result.map_err(|status| client.status(status))
}

/// `ssfd.v1.Ingest/SendSpans` of `spans`, marked as forwarded (their metrics were
/// extracted where they entered).
pub async fn forward_spans(
    channel: tonic::transport::Channel,
    spans: Arc<[ssfd_wire::ssf::SsfSpan]>,
) -> Result<(), tonic::Status> {
    let stream = tokio_stream::iter((0..spans.len()).map(move |i| spans[i].clone()));
    let mut request = tonic::Request::new(stream);
    request.metadata_mut().insert(
        "ssfd-forwarded",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    ssfd_wire::ssfd::v1::ingest_client::IngestClient::new(channel)
        .send_spans(request)
        .await
        .map(drop)
}

/// `ssfd.v1.Logs/SendLogs` (a local's forwarding of the log records it took alone).
pub fn send_forwarded_logs(
    client: &mut GrpcClient,
    records: &[ssfd_wire::ssfd::v1::LogRecord],
) -> Result<(), SendError> {
    let channel = client.channel()?;
    let result = client.block_on(forward_logs(channel, records.to_vec().into()));
    result.map_err(|status| client.status(status))
}

/// `ssfd.v1.Logs/SendLogs` of `records`, marked as forwarded.
pub async fn forward_logs(
    channel: tonic::transport::Channel,
    records: Arc<[ssfd_wire::ssfd::v1::LogRecord]>,
) -> Result<(), tonic::Status> {
    let stream = tokio_stream::iter((0..records.len()).map(move |i| records[i].clone()));
    let mut request = tonic::Request::new(stream);
    request.metadata_mut().insert(
        "ssfd-forwarded",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    ssfd_wire::ssfd::v1::logs_client::LogsClient::new(channel)
        .send_logs(request)
        .await
        .map(drop)
}

/// `forwardrpc.Forward/SendMetricsV2` (a local's forwarding and the proxy).
pub fn send_forwarded_metrics(
    client: &mut GrpcClient,
    metrics: &[ssfd_wire::metricpb::Metric],
) -> Result<(), SendError> {
    let channel = client.channel()?;
    let result = client.block_on(forward_metrics(channel, metrics.to_vec().into()));
    result.map_err(|status| client.status(status))
}

/// `forwardrpc.Forward/SendMetricsV2` of `metrics`.
pub async fn forward_metrics(
    channel: tonic::transport::Channel,
    metrics: Arc<[ssfd_wire::metricpb::Metric]>,
) -> Result<(), tonic::Status> {
    let stream = tokio_stream::iter((0..metrics.len()).map(move |i| metrics[i].clone()));
    ssfd_wire::forwardrpc::forward_client::ForwardClient::new(channel)
        .send_metrics_v2(stream)
        .await
        .map(drop)
}

/// TLS for ssfd's own peers (a local's global, a proxy's globals), set once at start.
static PEER_TLS: std::sync::OnceLock<tonic::transport::ClientTlsConfig> =
    std::sync::OnceLock::new();

/// Connects to peers over TLS: servers must present a certificate signed by `ca`;
/// with `identity` (certificate and key, PEM) ssfd presents it (mutual TLS).
pub fn set_peer_tls(ca: &[u8], identity: Option<(&[u8], &[u8])>) {
    let mut config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    let _ = PEER_TLS.set(config);
}

/// The endpoint `url` (`http://` or `https://`) with these timeouts and TLS.
fn endpoint(
    url: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Endpoint, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("grpc endpoint {url}: {e}"))?
        .connect_timeout(connect_timeout)
        .timeout(timeout);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("grpc endpoint {url}: tls: {e}"))?;
    }
    Ok(endpoint)
}

/// A channel to the ssfd peer `destination` (`host:port`), over TLS when
/// [`set_peer_tls`] was called, that connects on its first call and again after a
/// failure. Must be made inside a tokio runtime.
pub fn peer_channel(
    destination: &str,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, String> {
    let (url, tls) = match PEER_TLS.get() {
        Some(tls) => (format!("https://{destination}"), Some(tls)),
        None => (format!("http://{destination}"), None),
    };
    Ok(endpoint(&url, tls, connect_timeout, timeout)?.connect_lazy())
}

/// A current-thread runtime and a lazily connected gRPC channel, for a sink's own
/// thread.
pub struct GrpcClient {
    runtime: tokio::runtime::Runtime,
    endpoint: String,
    channel: Option<tonic::transport::Channel>,
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl GrpcClient {
    pub fn new(endpoint: &str) -> GrpcClient {
        let endpoint = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        GrpcClient {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime"),
            endpoint,
            channel: None,
            tls: None,
        }
    }

    /// A client for an ssfd peer: over TLS when [`set_peer_tls`] was called.
    pub fn peer(endpoint: &str) -> GrpcClient {
        let mut client = GrpcClient::new(endpoint);
        if let Some(tls) = PEER_TLS.get() {
            client.endpoint = client.endpoint.replacen("http://", "https://", 1);
            client.tls = Some(tls.clone());
        }
        client
    }

    pub fn channel(&mut self) -> Result<tonic::transport::Channel, SendError> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let endpoint = endpoint(
            &self.endpoint,
            self.tls.as_ref(),
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(10),
        )
        .map_err(SendError::Permanent)?;
        let channel = self
            .runtime
            .block_on(endpoint.connect())
            .map_err(|e| SendError::Retry(format!("grpc endpoint {}: {e:?}", self.endpoint)))?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    pub fn status(&mut self, status: tonic::Status) -> SendError {
        use tonic::Code;
        let message = format!("grpc endpoint {}: {status}", self.endpoint);
        match status.code() {
            Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unknown
            | Code::Internal => {
                self.channel = None;
                SendError::Retry(message)
            }
            _ => SendError::Permanent(message),
        }
    }

    /// Runs a call on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_hold_no_secret() {
        assert_eq!(
            shown_url("https://app.datadoghq.com/api/v1/series?api_key=s3cret"),
            "https://app.datadoghq.com/api/v1/series"
        );
        assert_eq!(
            shown_url("http://user:pa55@host:9/api/v1/write"),
            "http://host:9/api/v1/write"
        );
        assert_eq!(shown_url("http://host:9/x"), "http://host:9/x");
    }

    #[test]
    fn a_batch_queue_delivers_what_it_holds_when_dropped() {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sent);
        let counters = ssfd_telemetry::sink("batch-queue-test-a", "test");
        let queue = BatchQueue::start(
            "batch-queue-test-a",
            Arc::clone(&counters),
            ssfd_telemetry::Stage::Sink,
            RetryPolicy {
                shutdown_timeout: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
            2,
            move |items: &[u32]| {
                std::thread::sleep(Duration::from_millis(30));
                seen.lock().unwrap().extend_from_slice(items);
                Ok(())
            },
        );
        for i in 0..5 {
            queue.offer(vec![i * 2, i * 2 + 1]);
        }
        drop(queue);
        // the drop waited until all ten were sent
        assert_eq!(sent.lock().unwrap().len(), 10);
        assert_eq!(counters.sent.load(Relaxed), 10);
        assert_eq!(counters.dropped.load(Relaxed), 0);

        // a receiver that never answers: after shutdown_timeout what is left is dropped
        let counters = ssfd_telemetry::sink("batch-queue-test-b", "test");
        let queue = BatchQueue::start(
            "batch-queue-test-b",
            Arc::clone(&counters),
            ssfd_telemetry::Stage::Sink,
            RetryPolicy {
                shutdown_timeout: Duration::from_millis(200),
                ..RetryPolicy::default()
            },
            1,
            |_: &[u32]| {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            },
        );
        queue.offer(vec![1]);
        queue.offer(vec![2, 3]);
        let started = Instant::now();
        drop(queue);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            counters.dropped.load(Relaxed),
            3,
            "counted as dropped at shutdown"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(backoff(&policy, 1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(&policy, 2, 0.5), Duration::from_millis(200));
        assert_eq!(
            backoff(&policy, 3, 0.0),
            Duration::from_millis(200),
            "-50 %"
        );
        assert_eq!(backoff(&policy, 3, 0.999_999).as_millis(), 599, "+50 %");
        assert_eq!(backoff(&policy, 30, 0.5), Duration::from_secs(5), "capped");
    }

    #[test]
    fn http_statuses() {
        assert!(http_result(202, "x").is_ok());
        assert!(matches!(http_result(503, "x"), Err(SendError::Retry(_))));
        assert!(matches!(http_result(429, "x"), Err(SendError::Retry(_))));
        assert!(matches!(
            http_result(400, "x"),
            Err(SendError::Permanent(_))
        ));
    }
}
