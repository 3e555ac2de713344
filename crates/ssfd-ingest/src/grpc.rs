//! The gRPC services (SPEC 3.3): Veneur's `SSFGRPC/SendSpan` and
//! `DogstatsdGRPC/SendPacket`, ssfd's streaming `Ingest/SendSpans`, and
//! `grpc.health.v1`, and Veneur's forward import `forwardrpc.Forward` (`SendMetrics`,
//! `SendMetricsV2`), where a global merges what locals forward. Unary calls answer
//! `UNAVAILABLE` when a queue is full, without sending anything; streams wait for room
//! instead.

use crate::handoff::{Handoff, HandoffConfig};
use crate::room::{Attempt, Class, Refusal, Waiting};
use crate::stream::flush_with_backpressure;
use crate::wal::{self, Durability, Kind};
use ssfd_engine::{Pipeline, WhenFull};
use ssfd_telemetry::{Listener, Protocol, RefuseReason};
use ssfd_wire::dogstatsd::{self, DogstatsdPacket, dogstatsd_grpc_server::DogstatsdGrpc};
use ssfd_wire::grpc_codec::RawSpan;
use ssfd_wire::raw::{ssf::ssfgrpc_server::Ssfgrpc, ssfd_v1::ingest_server::Ingest};
use ssfd_wire::ssf;
use ssfd_wire::ssfd::v1::SendSummary;
use tonic::{Request, Response, Status, Streaming};

/// The ingest gRPC services share one pipeline handle.
#[derive(Clone)]
pub struct GrpcIngest {
    pub pipeline: Pipeline,
    pub handoff: HandoffConfig,
    /// On a proxy: where forwarded metrics and spans go instead of the pipeline.
    pub proxy: Option<std::sync::Arc<dyn ForwardRoute>>,
    /// The write-ahead log: a call is answered once what it handed off is on disk.
    pub durability: Durability,
    /// How long a unary call waits for room in a full queue (`grpc_wait`).
    pub waiting: Waiting,
}

/// A proxy's router (SPEC 1): forwarded metrics by series key and spans by trace id,
/// to the globals. `Ok` once the globals answered OK for every item (SPEC 7: a proxy
/// acknowledges only what a global has); `Err` says why some went nowhere.
#[tonic::async_trait]
pub trait ForwardRoute: Send + Sync {
    async fn metrics(&self, metrics: Vec<ssfd_wire::metricpb::Metric>) -> Result<(), String>;
    async fn spans(&self, spans: Vec<ssf::SsfSpan>) -> Result<(), String>;
    async fn logs(&self, records: Vec<ssfd_wire::ssfd::v1::LogRecord>) -> Result<(), String>;
}

/// A proxy's answer when its globals did not take a call's items: the caller keeps
/// them and retries.
fn unrouted(items: u64, error: String) -> Status {
    ssfd_telemetry::refused(Listener::Forward, RefuseReason::Upstream, items);
    Status::unavailable(format!("ssfd proxy: {error}"))
}

impl GrpcIngest {
    fn handoff(&self) -> Handoff {
        Handoff::new(
            self.pipeline.clone(),
            self.handoff.clone(),
            Listener::Grpc,
            Protocol::Grpc,
        )
    }
}

/// A flush refused for a full queue is an attempt the call may repeat after waiting
/// for room (`room::Waiting::with_room`); its work stays pending in the hand-off.
fn full(flushed: Result<(), ssfd_engine::Full>) -> Result<(), Attempt<Status>> {
    flushed.map_err(|_| Attempt::Full)
}

/// The answer of a unary call that did not get through: its own error, or
/// UNAVAILABLE after its wait for room (counted by reason; `items` is what the client
/// sent, spans or lines).
pub fn refusal(
    listener: Listener,
    items: u64,
    grpc_wait: std::time::Duration,
    outcome: Result<Status, Refusal>,
) -> Status {
    match outcome {
        Ok(status) => status,
        Err(Refusal::QueueFull) => {
            ssfd_telemetry::refused(listener, RefuseReason::QueueFull, items);
            Status::unavailable(format!(
                "ssfd is overloaded: a pipeline queue stayed full for {grpc_wait:?} (grpc_wait), retry later"
            ))
        }
        Err(Refusal::MemoryLimit) => {
            ssfd_telemetry::refused(listener, RefuseReason::MemoryLimit, items);
            Status::unavailable("ssfd is near its memory_limit, retry later")
        }
    }
}

#[tonic::async_trait]
impl Ssfgrpc for GrpcIngest {
    async fn send_span(&self, request: Request<RawSpan>) -> Result<Response<ssf::Empty>, Status> {
        let deadline = self.waiting.deadline(request.metadata());
        let span = request.into_inner().0;
        self.durability.refuse_while_failing(Listener::Grpc, 1)?;
        // read once; a full queue keeps the work pending for the next attempt
        let mut handoff = self.handoff();
        if let Err(error) = handoff.ssf_packet(&span) {
            handoff.discard();
            return Err(Status::invalid_argument(error.to_string()));
        }
        let ((), pending) = self
            .waiting
            .with_room(Class::Spans, deadline, || {
                self.durability.hand_off(
                    self.pipeline.gate(),
                    Kind::Spans,
                    || full(handoff.flush(WhenFull::Refuse)),
                    || {
                        let mut payload = Vec::with_capacity(span.len() + 4);
                        wal::push_span(&mut payload, &span);
                        payload
                    },
                )
            })
            .await
            .map_err(|outcome| {
                handoff.discard();
                refusal(Listener::Grpc, 1, self.waiting.grpc_wait, outcome)
            })?;
        pending.durable().await?;
        Ok(Response::new(ssf::Empty {}))
    }
}

#[tonic::async_trait]
impl DogstatsdGrpc for GrpcIngest {
    async fn send_packet(
        &self,
        request: Request<DogstatsdPacket>,
    ) -> Result<Response<dogstatsd::Empty>, Status> {
        let deadline = self.waiting.deadline(request.metadata());
        let packet = request.into_inner().packet_bytes;
        let lines = ssfd_wire::dogstatsd_text::lines(&packet).count() as u64;
        self.durability
            .refuse_while_failing(Listener::Grpc, lines)?;
        let mut handoff = self.handoff();
        handoff.statsd_packet(&packet);
        let ((), pending) = self
            .waiting
            .with_room(Class::Metrics, deadline, || {
                self.durability.hand_off(
                    self.pipeline.gate(),
                    Kind::StatsdPacket,
                    || full(handoff.flush(WhenFull::Refuse)),
                    || packet.to_vec(),
                )
            })
            .await
            .map_err(|outcome| {
                handoff.discard();
                refusal(Listener::Grpc, lines, self.waiting.grpc_wait, outcome)
            })?;
        pending.durable().await?;
        Ok(Response::new(dogstatsd::Empty {}))
    }
}

/// The gRPC metadata key a local sets on `SendSpans` when it forwards spans upstream.
pub const FORWARDED_HEADER: &str = "ssfd-forwarded";

/// Spans handed off per batch on the stream.
const STREAM_BATCH: usize = 256;

/// Items a proxy routes per round of calls to its globals, from one stream.
const PROXY_BATCH: usize = 4096;

#[tonic::async_trait]
impl Ingest for GrpcIngest {
    async fn send_spans(
        &self,
        request: Request<Streaming<RawSpan>>,
    ) -> Result<Response<SendSummary>, Status> {
        // a local forwarding spans says so; their metrics were extracted there
        let forwarded = request.metadata().get(FORWARDED_HEADER).is_some();
        let mut stream = request.into_inner();
        if let Some(proxy) = &self.proxy {
            use prost::Message;
            let mut summary = SendSummary {
                accepted: 0,
                rejected: 0,
            };
            let mut batch = Vec::new();
            loop {
                let end = match stream.message().await {
                    Ok(Some(span)) => {
                        match ssf::SsfSpan::decode(&span.0[..]) {
                            Ok(span) => batch.push(span),
                            Err(_) => summary.rejected += 1,
                        }
                        false
                    }
                    Ok(None) => true,
                    // the caller did not see an answer: it keeps and resends them all
                    Err(status) => return Err(status),
                };
                if batch.len() >= PROXY_BATCH || (end && !batch.is_empty()) {
                    let items = batch.len() as u64;
                    ssfd_telemetry::received(Listener::Forward, Protocol::Grpc, items);
                    proxy
                        .spans(std::mem::take(&mut batch))
                        .await
                        .map_err(|error| unrouted(items, error))?;
                    summary.accepted += items;
                }
                if end {
                    return Ok(Response::new(summary));
                }
            }
        }
        let mut handoff = if forwarded {
            let mut config = self.handoff.clone();
            config.forwarded = true;
            Handoff::new(
                self.pipeline.clone(),
                config,
                Listener::Forward,
                Protocol::Grpc,
            )
        } else {
            self.handoff()
        };
        let mut summary = SendSummary {
            accepted: 0,
            rejected: 0,
        };
        let kind = if forwarded {
            Kind::ForwardedSpans
        } else {
            Kind::Spans
        };
        let mut payload = wal::record_buffer();
        let mut pending = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(span)) => match handoff.ssf_packet(&span.0) {
                    Ok(_) => {
                        summary.accepted += 1;
                        if self.durability.enabled() {
                            wal::push_span(&mut payload, &span.0);
                        }
                    }
                    Err(_) => summary.rejected += 1,
                },
                Ok(None) => break,
                Err(status) => {
                    self.durability.wait_while_failing().await;
                    let _ = self.hand_off_logged(&mut handoff, kind, &mut payload);
                    return Err(status);
                }
            }
            if handoff.pending() >= STREAM_BATCH {
                // a full disk holds the stream here until it has room again
                self.durability.wait_while_failing().await;
                pending.push(self.hand_off_logged(&mut handoff, kind, &mut payload));
            }
        }
        self.durability.wait_while_failing().await;
        pending.push(self.hand_off_logged(&mut handoff, kind, &mut payload));
        for pending in pending {
            pending.durable().await?;
        }
        Ok(Response::new(summary))
    }
}

#[tonic::async_trait]
impl ssfd_wire::ssfd::v1::logs_server::Logs for GrpcIngest {
    /// Log records a local forwards (SPEC 1): a proxy routes them by trace id; a
    /// global logs them and indexes them, as forwarded spans.
    async fn send_logs(
        &self,
        request: Request<Streaming<ssfd_wire::ssfd::v1::LogRecord>>,
    ) -> Result<Response<SendSummary>, Status> {
        use prost::Message;
        let mut stream = request.into_inner();
        let mut summary = SendSummary {
            accepted: 0,
            rejected: 0,
        };
        if let Some(proxy) = &self.proxy {
            let mut batch = Vec::new();
            loop {
                let end = match stream.message().await? {
                    Some(record) => {
                        batch.push(record);
                        false
                    }
                    None => true,
                };
                if batch.len() >= PROXY_BATCH || (end && !batch.is_empty()) {
                    let items = batch.len() as u64;
                    ssfd_telemetry::received(Listener::Forward, Protocol::Grpc, items);
                    proxy
                        .logs(std::mem::take(&mut batch))
                        .await
                        .map_err(|error| unrouted(items, error))?;
                    summary.accepted += items;
                }
                if end {
                    return Ok(Response::new(summary));
                }
            }
        }
        let mut config = self.handoff.clone();
        config.forwarded = true;
        let mut handoff = Handoff::new(
            self.pipeline.clone(),
            config,
            Listener::Forward,
            Protocol::Grpc,
        );
        let mut payload = wal::record_buffer();
        let mut pending = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(record)) => {
                    if self.durability.enabled() {
                        wal::push_span(&mut payload, &record.encode_to_vec());
                    }
                    handoff.log_record(ssfd_engine::LogRecord::from_wire(record));
                    summary.accepted += 1;
                }
                Ok(None) => break,
                Err(status) => {
                    self.durability.wait_while_failing().await;
                    let _ = self.hand_off_logged(&mut handoff, Kind::ForwardedLogs, &mut payload);
                    return Err(status);
                }
            }
            if handoff.pending() >= STREAM_BATCH {
                self.durability.wait_while_failing().await;
                pending.push(self.hand_off_logged(&mut handoff, Kind::ForwardedLogs, &mut payload));
            }
        }
        self.durability.wait_while_failing().await;
        pending.push(self.hand_off_logged(&mut handoff, Kind::ForwardedLogs, &mut payload));
        for pending in pending {
            pending.durable().await?;
        }
        Ok(Response::new(summary))
    }
}

impl GrpcIngest {
    /// A stream's batch: hands off what is pending (waiting for room) and logs it, in
    /// one step under the gate.
    fn hand_off_logged(
        &self,
        handoff: &mut Handoff,
        kind: Kind,
        payload: &mut Vec<u8>,
    ) -> wal::Pending {
        let _gate = self.pipeline.gate().enter();
        flush_with_backpressure(handoff);
        if payload.len() <= wal::HEADER {
            return wal::Pending::none();
        }
        let taken = std::mem::replace(payload, wal::record_buffer());
        self.durability.append_record(kind, taken)
    }
}

/// Forwarded metrics handed off per batch on a `SendMetricsV2` stream.
const FORWARD_BATCH: usize = 512;

impl GrpcIngest {
    fn forward_handoff(&self) -> Handoff {
        Handoff::new(
            self.pipeline.clone(),
            self.handoff.clone(),
            Listener::Forward,
            Protocol::Grpc,
        )
    }
}

#[tonic::async_trait]
impl ssfd_wire::forwardrpc::forward_server::Forward for GrpcIngest {
    async fn send_metrics(
        &self,
        request: Request<ssfd_wire::forwardrpc::MetricList>,
    ) -> Result<Response<()>, Status> {
        let deadline = self.waiting.deadline(request.metadata());
        let list = request.into_inner();
        if let Some(proxy) = &self.proxy {
            let items = list.metrics.len() as u64;
            ssfd_telemetry::received(Listener::Forward, Protocol::Grpc, items);
            proxy
                .metrics(list.metrics)
                .await
                .map_err(|error| unrouted(items, error))?;
            return Ok(Response::new(()));
        }
        let items = list.metrics.len() as u64;
        self.durability
            .refuse_while_failing(Listener::Forward, items)?;
        let mut handoff = self.forward_handoff();
        for metric in &list.metrics {
            // a bad metric is refused alone and counted; the others go on
            let _ = handoff.forwarded_metric(metric);
        }
        let ((), pending) = self
            .waiting
            .with_room(Class::Metrics, deadline, || {
                self.durability.hand_off(
                    self.pipeline.gate(),
                    Kind::ForwardMetrics,
                    || full(handoff.flush(WhenFull::Refuse)),
                    || prost::Message::encode_to_vec(&list),
                )
            })
            .await
            .map_err(|outcome| {
                handoff.discard();
                refusal(Listener::Forward, items, self.waiting.grpc_wait, outcome)
            })?;
        pending.durable().await?;
        Ok(Response::new(()))
    }

    async fn send_metrics_v2(
        &self,
        request: Request<Streaming<ssfd_wire::metricpb::Metric>>,
    ) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        if let Some(proxy) = &self.proxy {
            let mut batch = Vec::new();
            loop {
                let end = match stream.message().await {
                    Ok(Some(metric)) => {
                        batch.push(metric);
                        false
                    }
                    Ok(None) => true,
                    // the caller did not see an answer: it keeps and resends them all
                    Err(status) => return Err(status),
                };
                if batch.len() >= PROXY_BATCH || (end && !batch.is_empty()) {
                    let items = batch.len() as u64;
                    ssfd_telemetry::received(Listener::Forward, Protocol::Grpc, items);
                    proxy
                        .metrics(std::mem::take(&mut batch))
                        .await
                        .map_err(|error| unrouted(items, error))?;
                }
                if end {
                    return Ok(Response::new(()));
                }
            }
        }
        let mut handoff = self.forward_handoff();
        let mut batch = ssfd_wire::forwardrpc::MetricList::default();
        let mut pending = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(metric)) => {
                    if handoff.forwarded_metric(&metric).is_ok() && self.durability.enabled() {
                        batch.metrics.push(metric);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    self.durability.wait_while_failing().await;
                    let _ = self.hand_off_metrics(&mut handoff, &mut batch);
                    return Err(status);
                }
            }
            if handoff.pending() >= FORWARD_BATCH {
                self.durability.wait_while_failing().await;
                pending.push(self.hand_off_metrics(&mut handoff, &mut batch));
            }
        }
        self.durability.wait_while_failing().await;
        pending.push(self.hand_off_metrics(&mut handoff, &mut batch));
        for pending in pending {
            pending.durable().await?;
        }
        Ok(Response::new(()))
    }
}

impl GrpcIngest {
    /// A `SendMetricsV2` batch: hands off and logs it under the gate.
    fn hand_off_metrics(
        &self,
        handoff: &mut Handoff,
        batch: &mut ssfd_wire::forwardrpc::MetricList,
    ) -> wal::Pending {
        let _gate = self.pipeline.gate().enter();
        flush_with_backpressure(handoff);
        if batch.metrics.is_empty() {
            return wal::Pending::none();
        }
        let taken = std::mem::take(batch);
        self.durability.append(Kind::ForwardMetrics, move || {
            prost::Message::encode_to_vec(&taken)
        })
    }
}

/// What `ssfd.v1.Query` reads: a global's span store and log index, and its HTTP API.
pub trait TraceLookup: Send + Sync {
    /// The stored spans of a trace, each its SSF encoding.
    fn trace(&self, trace_id: ssfd_wire::ids::TraceId) -> Result<Vec<Vec<u8>>, String>;
    /// The log records held for a trace (SPEC 5).
    fn trace_logs(
        &self,
        _trace_id: ssfd_wire::ids::TraceId,
    ) -> Result<Vec<ssfd_engine::LogRecord>, String> {
        Ok(Vec::new())
    }
    /// `GET path?query` as this node's HTTP API answers it: status and JSON body.
    fn read(&self, _path: String, _query: String) -> ReadFuture {
        Box::pin(async { (404, br#"{"error":"no reads here"}"#.to_vec()) })
    }
    /// The new log records that match `query` (`/api/v1/logs/tail`'s filters).
    fn tail(&self, _query: &str) -> Result<LogStream, String> {
        Err("no log index here".into())
    }
    /// True when a call with this `authorization` value may read (the HTTP API's
    /// bearer token guards these reads too).
    fn authorized(&self, _authorization: Option<&str>) -> bool {
        true
    }
}

/// Refuses a read without the node's bearer token (SPEC 6's token covers every read).
fn authorize<T>(lookup: &dyn TraceLookup, request: &Request<T>) -> Result<(), Status> {
    let given = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if lookup.authorized(given) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "this read needs authorization: Bearer <token>",
        ))
    }
}

/// An answer of [`TraceLookup::read`].
pub type ReadFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (u16, Vec<u8>)> + Send>>;
/// The records of [`TraceLookup::tail`].
pub type LogStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = ssfd_wire::ssfd::v1::LogRecord> + Send>>;

/// `ssfd.v1.Query`: a proxy asks the global that owns a trace for its spans.
#[derive(Clone)]
pub struct QueryService(pub std::sync::Arc<dyn TraceLookup>);

#[tonic::async_trait]
impl ssfd_wire::ssfd::v1::query_server::Query for QueryService {
    async fn get_trace(
        &self,
        request: Request<ssfd_wire::ssfd::v1::TraceRequest>,
    ) -> Result<Response<ssfd_wire::ssfd::v1::TraceSpans>, Status> {
        authorize(self.0.as_ref(), &request)?;
        let request = request.into_inner();
        let trace_id = ssfd_wire::ids::TraceId::from_parts(request.trace_id_high, request.trace_id);
        let lookup = std::sync::Arc::clone(&self.0);
        let (spans, logs) = tokio::task::spawn_blocking(move || {
            Ok::<_, String>((lookup.trace(trace_id)?, lookup.trace_logs(trace_id)?))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Status::internal)?;
        Ok(Response::new(ssfd_wire::ssfd::v1::TraceSpans {
            spans,
            logs: logs.iter().map(ssfd_engine::LogRecord::to_wire).collect(),
        }))
    }

    async fn read(
        &self,
        request: Request<ssfd_wire::ssfd::v1::ReadRequest>,
    ) -> Result<Response<ssfd_wire::ssfd::v1::ReadAnswer>, Status> {
        authorize(self.0.as_ref(), &request)?;
        let request = request.into_inner();
        // reads only: the API, not `/metrics` or the UI
        if !request.path.starts_with("/api/") {
            return Err(Status::invalid_argument("only /api/ paths are read"));
        }
        let (status, body) = self.0.read(request.path, request.query).await;
        Ok(Response::new(ssfd_wire::ssfd::v1::ReadAnswer {
            status: u32::from(status),
            body,
        }))
    }

    type TailStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<ssfd_wire::ssfd::v1::LogRecord, Status>> + Send>,
    >;

    async fn tail(
        &self,
        request: Request<ssfd_wire::ssfd::v1::ReadRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        use tokio_stream::StreamExt;
        authorize(self.0.as_ref(), &request)?;
        let records = self
            .0
            .tail(&request.into_inner().query)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(Box::pin(records.map(Ok))))
    }
}
