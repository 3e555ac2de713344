//! The HTTP endpoints (SPEC 6): `/healthcheck`, `/version`, `/metrics` (the flushed
//! metrics' exposition, then own telemetry), the `/api/v1` query API over the stores,
//! the Jaeger-compatible read API under `/api`, and the web UI at `/`. Store reads run
//! on the blocking pool; answers are rendered by `ssfd-query`. At a proxy, every read
//! but trace by id asks every global at once and merges the answers
//! (`ssfd_query::fleet`); a global answers those asks with the same routes
//! ([`PeerReads`]).

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use ssfd_engine::slo::SloRegistry;
use ssfd_engine::span_metrics::SpanMetricsRegistry;
use ssfd_export::openmetrics;
use ssfd_export::prometheus::Exposition;
use ssfd_query::{api, jaeger};
use ssfd_store::Store;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Exported {
    exposition: Arc<Mutex<Exposition>>,
    span_metrics: Arc<SpanMetricsRegistry>,
    slos: Arc<SloRegistry>,
    store: Option<Arc<Store>>,
    /// On a proxy: trace queries go to the global that owns the trace, the other
    /// reads to every global.
    proxy: Option<Arc<ssfd_export::proxy::Proxy>>,
    /// How long a proxy waits for the globals (`query_timeout`).
    query_timeout: std::time::Duration,
    /// The memory reads that materialise a trace may hold at once.
    budget: Arc<QueryBudget>,
}

/// Queries are inside `memory_limit` (SPEC 7): a read that materialises a trace first
/// takes its estimated memory from this budget (a quarter of the limit), waiting up to
/// [`BUDGET_WAIT`]; one that does not get it in time, or comes under memory pressure,
/// is answered 503 with `Retry-After` (`ssfd_api_busy_total`). A read larger than the
/// whole budget runs alone.
pub struct QueryBudget {
    units: Arc<tokio::sync::Semaphore>,
    total: u32,
}

/// The budget's grain.
const BUDGET_UNIT: u64 = 64 << 10;
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl QueryBudget {
    /// A quarter of `memory_limit` (bytes; 0: no limit, no budget).
    pub fn new(memory_limit: u64) -> QueryBudget {
        let total = if memory_limit == 0 {
            u32::MAX >> 4
        } else {
            (memory_limit / 4 / BUDGET_UNIT).clamp(256, u64::from(u32::MAX >> 4)) as u32
        };
        QueryBudget {
            units: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Memory a trace answer of `spans` spans and `bytes` stored bytes takes while it
    /// is read, joined and rendered: its bytes copied and parsed, and at most
    /// 10,000 spans rendered.
    fn trace_estimate(spans: usize, bytes: u64) -> u64 {
        let rendered = spans.min(ssfd_query::MAX_SPANS_PER_RESPONSE) as u64;
        bytes * 3 + spans as u64 * 700 + rendered * 2048
    }

    /// The permit is owned, so it moves into the blocking work that holds the memory:
    /// a client that leaves does not free the budget while that work still runs.
    async fn admit(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
        let busy = |why: &str| {
            ssfd_telemetry::api_busy();
            let mut response = api_error(StatusCode::SERVICE_UNAVAILABLE, why.to_string());
            response.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            response
        };
        if ssfd_engine::memory::under_pressure() {
            return Err(busy("near memory_limit: retry in a moment"));
        }
        let units = (bytes / BUDGET_UNIT + 1).min(u64::from(self.total)) as u32;
        let units_left = Arc::clone(&self.units).acquire_many_owned(units);
        match tokio::time::timeout(BUDGET_WAIT, units_left).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy(
                "other queries hold the memory this one needs: retry in a moment",
            )),
        }
    }
}

/// A JSON answer rendered inside its budget.
fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `/version` (SPEC 6: the version and build): `ssfd 0.1.0 (release build, x86_64-linux)`.
pub fn version_line() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "ssfd {VERSION} ({profile} build, {}-{})",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// A proxy's reads: its router over the globals, and how long it waits for them.
pub struct Fleet {
    pub proxy: Option<Arc<ssfd_export::proxy::Proxy>>,
    pub query_timeout: std::time::Duration,
}

/// The web UI: one file, no build step.
const UI: &str = include_str!("ui/index.html");

pub fn router(
    exposition: Arc<Mutex<Exposition>>,
    span_metrics: Arc<SpanMetricsRegistry>,
    slos: Arc<SloRegistry>,
    store: Option<Arc<Store>>,
    fleet: Fleet,
    budget: Arc<QueryBudget>,
    bearer_token: Option<String>,
) -> Router {
    let router = routes(Exported {
        exposition,
        span_metrics,
        slos,
        store,
        proxy: fleet.proxy,
        query_timeout: fleet.query_timeout,
        budget,
    });
    match bearer_token {
        Some(token) => {
            let expected: Arc<str> = format!("Bearer {token}").into();
            router.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let expected = Arc::clone(&expected);
                    async move { authorize(&expected, request, next).await }
                },
            ))
        }
        None => router,
    }
}

/// With `http_bearer_token_file`, the API and `/metrics` want `Authorization: Bearer
/// <token>` (401 otherwise); `/healthcheck`, `/version` and the UI page stay open.
async fn authorize(
    expected: &str,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let open = matches!(path, "/" | "/healthcheck" | "/version");
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if open || given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = api_error(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs Authorization: Bearer <token>".into(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without an early exit, so the time taken does not tell where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn routes(exported: Exported) -> Router {
    let router = Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], UI) }),
        )
        .route("/healthcheck", get(|| async { "ok" }))
        .route(
            "/version",
            get(|| async { format!("{}\n", version_line()) }),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/traces/{trace_id}", get(jaeger_trace));
    let router = if exported.proxy.is_some() {
        // SPEC 6: at a proxy every other read asks every global
        router
            .route("/api/v1/logs/tail", get(fleet_tail))
            .route("/api/{*read}", get(fleet_read))
    } else {
        router
            .route("/api/v1/slos", get(slos_report))
            .route("/api/v1/traces", get(search_traces))
            .route("/api/v1/services", get(services))
            .route("/api/v1/services/{service}/operations", get(operations))
            .route("/api/v1/services/{service}/red", get(red))
            .route("/api/v1/logs", get(logs))
            .route("/api/v1/logs/volume", get(log_volume))
            .route("/api/v1/dependencies", get(dependencies))
            .route("/api/dependencies", get(jaeger_dependencies))
            .route("/api/v1/logs/tail", get(logs_tail))
            .route("/api/traces", get(jaeger_search))
            .route("/api/services", get(jaeger_services))
            .route("/api/services/{service}/operations", get(jaeger_operations))
    };
    router
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(exported)
}

/// What `ssfd.v1.Query` serves a proxy: the span store and log index, and every read
/// of this node's HTTP API (its routes, without the bearer token, which guards HTTP;
/// the gRPC port has its own TLS).
pub struct PeerReads {
    store: Arc<Store>,
    reads: Router,
    /// `Bearer <token>` when `http_bearer_token_file` is set: the gRPC reads want it too.
    authorization: Option<String>,
}

impl PeerReads {
    pub fn new(
        exposition: Arc<Mutex<Exposition>>,
        span_metrics: Arc<SpanMetricsRegistry>,
        slos: Arc<SloRegistry>,
        store: Arc<Store>,
        budget: Arc<QueryBudget>,
        bearer_token: Option<&str>,
    ) -> PeerReads {
        let reads = routes(Exported {
            exposition,
            span_metrics,
            slos,
            store: Some(Arc::clone(&store)),
            proxy: None,
            query_timeout: std::time::Duration::ZERO,
            budget,
        });
        PeerReads {
            store,
            reads,
            authorization: bearer_token.map(|token| format!("Bearer {token}")),
        }
    }
}

impl ssfd_ingest::grpc::TraceLookup for PeerReads {
    fn authorized(&self, given: Option<&str>) -> bool {
        match &self.authorization {
            None => true,
            Some(expected) => {
                given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
            }
        }
    }

    fn trace(&self, trace_id: ssfd_wire::ids::TraceId) -> Result<Vec<Vec<u8>>, String> {
        self.store.spans.trace(trace_id).map_err(|e| e.to_string())
    }

    fn trace_logs(
        &self,
        trace_id: ssfd_wire::ids::TraceId,
    ) -> Result<Vec<ssfd_engine::LogRecord>, String> {
        self.store.trace_logs(trace_id).map_err(|e| e.to_string())
    }

    fn read(&self, path: String, query: String) -> ssfd_ingest::grpc::ReadFuture {
        use tower::ServiceExt as _;
        let reads = self.reads.clone();
        Box::pin(async move {
            let uri = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            let Ok(request) = axum::http::Request::get(uri).body(axum::body::Body::empty()) else {
                return (400, br#"{"error":"not a path"}"#.to_vec());
            };
            let Ok(response) = reads.oneshot(request).await;
            let status = response.status().as_u16();
            match axum::body::to_bytes(response.into_body(), 256 << 20).await {
                Ok(body) => (status, body.to_vec()),
                Err(error) => (
                    500,
                    json!({ "error": error.to_string() })
                        .to_string()
                        .into_bytes(),
                ),
            }
        })
    }

    fn tail(&self, query: &str) -> Result<ssfd_ingest::grpc::LogStream, String> {
        use tokio_stream::StreamExt;
        let query = api::log_query(Some(query))?;
        let records = tokio_stream::wrappers::BroadcastStream::new(self.store.logs.subscribe());
        Ok(Box::pin(records.filter_map(move |record| match record {
            Ok(record) if query.matches(&record) => Some(record.to_wire()),
            _ => None,
        })))
    }
}

/// A read at a proxy (SPEC 6): asked of every global within `query_timeout`, the
/// answers merged; Jaeger's lookup by `traceID` asks each trace's owner.
async fn fleet_read(State(exported): State<Exported>, uri: axum::http::Uri) -> Response {
    let Some(proxy) = exported.proxy.clone() else {
        return api_error(StatusCode::NOT_FOUND, "no such endpoint".into());
    };
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    if path == "/api/traces" {
        match jaeger::trace_ids(Some(&query)) {
            Err(message) => {
                return jaeger_answer(StatusCode::BAD_REQUEST, jaeger::error(400, &message));
            }
            Ok(ids) if !ids.is_empty() => {
                return jaeger_by_ids(proxy, ids, exported.query_timeout).await;
            }
            Ok(_) => {}
        }
    }
    // one window for every global (each would read `now` for itself)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let query = ssfd_query::fleet::pin_times(&path, &query, now);
    let answers = proxy.read_all(&path, &query, exported.query_timeout).await;
    let (status, body) = ssfd_query::fleet::merge(&path, &query, answers);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if status == StatusCode::BAD_REQUEST {
        ssfd_telemetry::api_bad_request();
    }
    (status, axum::Json(body)).into_response()
}

/// Jaeger's `GET /api/traces?traceID=...` at a proxy: each trace from its owner.
async fn jaeger_by_ids(
    proxy: Arc<ssfd_export::proxy::Proxy>,
    ids: Vec<(ssfd_query::TraceId, String)>,
    query_timeout: std::time::Duration,
) -> Response {
    let deadline = std::time::Instant::now() + query_timeout;
    let lookups = tokio::task::spawn_blocking(move || {
        let (mut traces, mut errors) = (Vec::new(), Vec::new());
        for (id, asked) in ids {
            if std::time::Instant::now() >= deadline {
                let why = format!("no answer within query_timeout {query_timeout:?}");
                errors.push(json!({ "code": 504, "msg": why, "traceID": asked }));
                continue;
            }
            match proxy.fetch_trace(id) {
                Ok((spans, logs)) => match jaeger::trace(id, &spans, &logs) {
                    Some(trace) => traces.push(trace),
                    None => errors.push(jaeger::trace_not_found(&asked)),
                },
                Err(error) => errors.push(json!({ "code": 502, "msg": error, "traceID": asked })),
            }
        }
        jaeger::envelope_with_errors(Value::Array(traces), errors)
    });
    // one owner that hangs holds the answer no longer than query_timeout
    let grace = query_timeout + std::time::Duration::from_millis(500);
    match tokio::time::timeout(grace, lookups).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(error)) => jaeger_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            jaeger::error(500, &error.to_string()),
        ),
        Err(_) => jaeger_answer(
            StatusCode::GATEWAY_TIMEOUT,
            jaeger::error(
                504,
                &format!("no answer within query_timeout {query_timeout:?}"),
            ),
        ),
    }
}

/// `GET /api/v1/logs/tail` at a proxy: every global's new matching records, as they
/// come.
async fn fleet_tail(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    use tokio_stream::StreamExt;
    let Some(proxy) = exported.proxy.clone() else {
        return no_store();
    };
    // the filters are checked here, so a bad one is a 400 and not a silent stream
    if let Err(message) = api::log_query(raw.as_deref()) {
        return api_error(StatusCode::BAD_REQUEST, message);
    }
    let records =
        tokio_stream::wrappers::ReceiverStream::new(proxy.tail_all(raw.as_deref().unwrap_or("")));
    let events = records.map(|record| {
        let record = ssfd_engine::LogRecord::from_wire(record);
        Ok::<Event, std::convert::Infallible>(
            Event::default().data(api::log_json(&record).to_string()),
        )
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn api_error(status: StatusCode, message: String) -> Response {
    if status == StatusCode::BAD_REQUEST {
        ssfd_telemetry::api_bad_request();
    }
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn no_store() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "storage is off (storage.max_bytes: 0)".into(),
    )
}

/// Runs a store read on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ssfd_store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )),
        Err(error) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )),
    }
}

/// `GET /api/v1/services` (SPEC 6): every service that sent spans.
async fn services(State(exported): State<Exported>) -> Response {
    let services = exported
        .store
        .as_ref()
        .map(|store| store.spans.services())
        .unwrap_or_default();
    axum::Json(json!({ "services": services })).into_response()
}

/// `GET /api/v1/services/{service}/operations` (SPEC 6): its span names; 404 when the
/// service is unknown.
async fn operations(State(exported): State<Exported>, Path(service): Path<String>) -> Response {
    match exported
        .store
        .as_ref()
        .and_then(|store| store.spans.operations(&service))
    {
        Some(operations) => axum::Json(json!({ "operations": operations })).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            format!("service `{service}` has sent no span"),
        ),
    }
}

/// `GET /api/v1/services/{service}/red?start=&end=&step=` (SPEC 6): per operation,
/// rate, error share and duration quantiles per step, from this node's RED minutes;
/// 404 when the service has sent no span here.
async fn red(
    State(exported): State<Exported>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (start, end, step) = match api::red_window(raw.as_deref()) {
        Ok(window) => window,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let history = exported.span_metrics.red();
    if !history.knows(&service) {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("service `{service}` has sent no span"),
        );
    }
    let view = history.view(&service, start, end, step);
    axum::Json(api::red_json(&service, step, &view)).into_response()
}

fn bad_trace_id(bad: &ssfd_query::BadId) -> Response {
    api_error(StatusCode::BAD_REQUEST, format!("trace id: {bad}"))
}

/// `GET /api/v1/traces/{trace_id}` (SPEC 6): the joined tree, 400 for a bad id, 404
/// for an unknown one.
async fn trace(State(exported): State<Exported>, Path(trace_id): Path<String>) -> Response {
    let ids = match ssfd_query::trace_ids(&trace_id) {
        Ok(ids) => ids,
        Err(bad) => return bad_trace_id(&bad),
    };
    let not_found = || {
        api_error(
            StatusCode::NOT_FOUND,
            format!("trace {trace_id} is not stored"),
        )
    };
    if let Some(proxy) = exported.proxy.clone() {
        // SPEC 6: an id that reads as hex and as decimal is looked up as hex first
        let fetched = tokio::task::spawn_blocking(move || {
            for id in ids {
                let (spans, logs) = proxy.fetch_trace(id)?;
                if let Some(trace) = ssfd_query::trace_json(id, &spans, &logs) {
                    return Ok(Some(trace));
                }
            }
            Ok::<_, String>(None)
        })
        .await;
        return match fetched {
            Ok(Ok(Some(trace))) => axum::Json(trace).into_response(),
            Ok(Ok(None)) => not_found(),
            Ok(Err(error)) => api_error(StatusCode::BAD_GATEWAY, error),
            Err(error) => api_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        };
    }
    let Some(store) = exported.store.clone() else {
        return no_store();
    };
    let estimate = ids
        .iter()
        .map(|id| {
            let (spans, bytes) = store.spans.trace_size(*id);
            QueryBudget::trace_estimate(spans, bytes)
        })
        .max()
        .unwrap_or(0);
    let permit = match exported.budget.admit(estimate).await {
        Ok(permit) => permit,
        Err(busy) => return busy,
    };
    let joined = blocking(move || {
        let _permit = permit;
        for id in ids {
            let spans = store.spans.trace(id)?;
            let records = store.trace_logs(id)?;
            if let Some(trace) = ssfd_query::trace_json(id, &spans, &records) {
                return Ok(Some(serde_json::to_vec(&trace).unwrap_or_default()));
            }
        }
        Ok(None)
    })
    .await;
    match joined {
        Ok(Some(trace)) => json_bytes(trace),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `GET /api/v1/traces?...` (SPEC 6): newest-first trace search.
async fn search_traces(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    let query = match api::trace_query(raw.as_deref()) {
        Ok(query) => query,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(json!({ "traces": [] })).into_response();
    };
    match blocking(move || store.spans.search(&query)).await {
        Ok(found) => {
            let traces: Vec<Value> = found.iter().map(api::summary_json).collect();
            axum::Json(json!({ "traces": traces })).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /api/v1/dependencies?start=&end=` (SPEC 6): the service map of this node's
/// stored traces (the last hour by default).
async fn dependencies(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    let (start, end) = match api::dependency_window(raw.as_deref()) {
        Ok(window) => window,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(api::dependencies_json(&[])).into_response();
    };
    match blocking(move || store.spans.dependencies(start, end)).await {
        Ok(edges) => axum::Json(api::dependencies_json(&edges)).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/dependencies?endTs=&lookback=` (Jaeger): the same map, Jaeger's format.
async fn jaeger_dependencies(
    State(exported): State<Exported>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (start, end) = match jaeger::dependency_window(raw.as_deref()) {
        Ok(window) => window,
        Err(message) => {
            return jaeger_answer(StatusCode::BAD_REQUEST, jaeger::error(400, &message));
        }
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(jaeger::dependencies(&[])).into_response();
    };
    match blocking(move || store.spans.dependencies(start, end)).await {
        Ok(edges) => axum::Json(jaeger::dependencies(&edges)).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/v1/logs?...` (SPEC 6): newest-first log search.
async fn logs(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    let query = match api::log_query(raw.as_deref()) {
        Ok(query) => query,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(json!({ "logs": [] })).into_response();
    };
    match blocking(move || store.logs.search(&query)).await {
        Ok(found) => {
            let logs: Vec<Value> = found.iter().map(api::log_json).collect();
            axum::Json(json!({ "logs": logs })).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /api/v1/logs/volume?...&buckets=` (the log view's histogram): every match
/// counted per severity and bucket over the window.
async fn log_volume(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    let (query, first, step, buckets) = match api::log_volume_query(raw.as_deref()) {
        Ok(parsed) => parsed,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(api::log_volume_json(first, step, &[], buckets)).into_response();
    };
    match blocking(move || store.logs.volume(&query, first, step, buckets)).await {
        Ok(counts) => {
            axum::Json(api::log_volume_json(first, step, &counts, buckets)).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /api/v1/logs/tail?...` (SPEC 6): server-sent events, one per new matching
/// record, no backlog. A subscriber that falls behind skips what it missed.
async fn logs_tail(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    use tokio_stream::StreamExt;
    let query = match api::log_query(raw.as_deref()) {
        Ok(query) => query,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    let Some(store) = exported.store.clone() else {
        return no_store();
    };
    let records = tokio_stream::wrappers::BroadcastStream::new(store.logs.subscribe());
    let events = records.filter_map(move |record| match record {
        Ok(record) if query.matches(&record) => Some(Ok::<Event, std::convert::Infallible>(
            Event::default().data(api::log_json(&record).to_string()),
        )),
        _ => None,
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn jaeger_answer(status: StatusCode, body: Value) -> Response {
    if status == StatusCode::BAD_REQUEST {
        ssfd_telemetry::api_bad_request();
    }
    (status, axum::Json(body)).into_response()
}

/// `GET /api/traces/{id}` (Jaeger).
async fn jaeger_trace(State(exported): State<Exported>, Path(trace_id): Path<String>) -> Response {
    let Ok(id) = ssfd_query::parse_jaeger_id(&trace_id) else {
        return jaeger_answer(
            StatusCode::BAD_REQUEST,
            jaeger::error(400, &format!("trace id `{trace_id}` is not hex")),
        );
    };
    if let Some(proxy) = exported.proxy.clone() {
        // the owning global's spans and records, as `/api/v1/traces/{id}` at a proxy
        return match tokio::task::spawn_blocking(move || proxy.fetch_trace(id)).await {
            Ok(Ok((spans, logs))) => match jaeger::trace(id, &spans, &logs) {
                Some(trace) => axum::Json(jaeger::envelope(json!([trace]))).into_response(),
                None => jaeger_answer(StatusCode::NOT_FOUND, jaeger::error(404, "trace not found")),
            },
            Ok(Err(error)) => jaeger_answer(StatusCode::BAD_GATEWAY, jaeger::error(502, &error)),
            Err(error) => jaeger_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                jaeger::error(500, &error.to_string()),
            ),
        };
    }
    let Some(store) = exported.store.clone() else {
        return jaeger_answer(StatusCode::NOT_FOUND, jaeger::error(404, "trace not found"));
    };
    let (spans, bytes) = store.spans.trace_size(id);
    let permit = match exported
        .budget
        .admit(QueryBudget::trace_estimate(spans, bytes))
        .await
    {
        Ok(permit) => permit,
        Err(busy) => return busy,
    };
    match blocking(move || {
        let _permit = permit;
        let trace = jaeger::trace(id, &store.spans.trace(id)?, &store.trace_logs(id)?);
        Ok(trace
            .map(|trace| serde_json::to_vec(&jaeger::envelope(json!([trace]))).unwrap_or_default()))
    })
    .await
    {
        Ok(Some(trace)) => json_bytes(trace),
        Ok(None) => jaeger_answer(StatusCode::NOT_FOUND, jaeger::error(404, "trace not found")),
        Err(response) => response,
    }
}

/// `GET /api/traces?...` (Jaeger): the matching traces, whole; with `traceID`
/// parameters, those traces (one not found is an entry in `errors`), as Jaeger does.
async fn jaeger_search(State(exported): State<Exported>, RawQuery(raw): RawQuery) -> Response {
    let ids = match jaeger::trace_ids(raw.as_deref()) {
        Ok(ids) => ids,
        Err(message) => {
            return jaeger_answer(StatusCode::BAD_REQUEST, jaeger::error(400, &message));
        }
    };
    if !ids.is_empty() {
        let store = exported.store.clone();
        let found = blocking(move || {
            let (mut traces, mut errors) = (Vec::new(), Vec::new());
            for (id, asked) in ids {
                let trace = match &store {
                    Some(store) => {
                        jaeger::trace(id, &store.spans.trace(id)?, &store.trace_logs(id)?)
                    }
                    None => None,
                };
                match trace {
                    Some(trace) => traces.push(trace),
                    None => errors.push(jaeger::trace_not_found(&asked)),
                }
            }
            Ok(jaeger::envelope_with_errors(Value::Array(traces), errors))
        })
        .await;
        return match found {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(response) => response,
        };
    }
    let query = match jaeger::search_query(raw.as_deref()) {
        Ok(query) => query,
        Err(message) => {
            return jaeger_answer(StatusCode::BAD_REQUEST, jaeger::error(400, &message));
        }
    };
    let Some(store) = exported.store.clone() else {
        return axum::Json(jaeger::envelope(json!([]))).into_response();
    };
    let found = blocking(move || {
        let mut traces = Vec::new();
        for summary in store.spans.search(&query)? {
            let id = summary.trace_id;
            if let Some(trace) = jaeger::trace(id, &store.spans.trace(id)?, &store.trace_logs(id)?)
            {
                traces.push(trace);
            }
        }
        Ok(traces)
    })
    .await;
    match found {
        Ok(traces) => axum::Json(jaeger::envelope(Value::Array(traces))).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/services` (Jaeger).
async fn jaeger_services(State(exported): State<Exported>) -> Response {
    let services = exported
        .store
        .as_ref()
        .map(|store| store.spans.services())
        .unwrap_or_default();
    axum::Json(jaeger::envelope(json!(services))).into_response()
}

/// `GET /api/services/{service}/operations` (Jaeger): an unknown service has none.
async fn jaeger_operations(
    State(exported): State<Exported>,
    Path(service): Path<String>,
) -> Response {
    let operations = exported
        .store
        .as_ref()
        .and_then(|store| store.spans.operations(&service))
        .unwrap_or_default();
    axum::Json(jaeger::envelope(json!(operations))).into_response()
}

/// `GET /api/v1/slos` (SPEC 6): each SLO over the 6 h window with its burn rates.
async fn slos_report(State(exported): State<Exported>) -> impl IntoResponse {
    let slos: Vec<Value> = exported
        .slos
        .report()
        .into_iter()
        .map(|report| {
            let burn: serde_json::Map<String, Value> = report
                .burn_rate
                .iter()
                .map(|(window, burn)| (window.to_string(), (*burn).into()))
                .collect();
            json!({
                "name": report.name,
                "objective": report.objective,
                "good": report.good,
                "total": report.total,
                "ratio": report.ratio,
                "burn_rate": burn,
            })
        })
        .collect();
    axum::Json(json!({ "slos": slos }))
}

async fn metrics(State(exported): State<Exported>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let open = openmetrics::wants_openmetrics(accept);
    let mut text = String::with_capacity(8192);
    if let Ok(mut exposition) = exported.exposition.lock() {
        exposition.render(&mut text);
    }
    ssfd_telemetry::render(&mut text, VERSION);
    let mut body = String::with_capacity(text.len() + 4096);
    if open {
        openmetrics::to_openmetrics(&text, &mut body);
    } else {
        body = text;
    }
    openmetrics::render_span_metrics(&exported.span_metrics.snapshot(), open, &mut body);
    openmetrics::render_service_graph(&exported.span_metrics.graph().snapshot(), open, &mut body);
    if open {
        body.push_str("# EOF\n");
        return (
            [(header::CONTENT_TYPE, openmetrics::OPENMETRICS_CONTENT_TYPE)],
            body,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
