//! The HTTP endpoints that exist so far: `/healthcheck`, `/version` and `/metrics`
//! (the flushed metrics' exposition, then own telemetry, SPEC 6 and 10). The query API
//! and web UI come with the query crate.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ssfd_engine::slo::SloRegistry;
use ssfd_engine::span_metrics::SpanMetricsRegistry;
use ssfd_export::openmetrics;
use ssfd_export::prometheus::Exposition;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Exported {
    exposition: Arc<Mutex<Exposition>>,
    span_metrics: Arc<SpanMetricsRegistry>,
    slos: Arc<SloRegistry>,
    store: Option<Arc<ssfd_store::SpanStore>>,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router(
    exposition: Arc<Mutex<Exposition>>,
    span_metrics: Arc<SpanMetricsRegistry>,
    slos: Arc<SloRegistry>,
    store: Option<Arc<ssfd_store::SpanStore>>,
) -> Router {
    Router::new()
        .route("/healthcheck", get(|| async { "ok" }))
        .route("/version", get(|| async { format!("ssfd {VERSION}\n") }))
        .route("/metrics", get(metrics))
        .route("/api/v1/slos", get(slos_report))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{service}/operations", get(operations))
        .with_state(Exported {
            exposition,
            span_metrics,
            slos,
            store,
        })
}

fn api_error(status: axum::http::StatusCode, message: String) -> axum::response::Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `GET /api/v1/services` (SPEC 6): every service that sent spans.
async fn services(State(exported): State<Exported>) -> axum::response::Response {
    let services = exported
        .store
        .as_ref()
        .map(|store| store.services())
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "services": services })).into_response()
}

/// `GET /api/v1/services/{service}/operations` (SPEC 6): its span names; 404 when the
/// service is unknown.
async fn operations(
    State(exported): State<Exported>,
    axum::extract::Path(service): axum::extract::Path<String>,
) -> axum::response::Response {
    match exported
        .store
        .as_ref()
        .and_then(|store| store.operations(&service))
    {
        Some(operations) => {
            axum::Json(serde_json::json!({ "operations": operations })).into_response()
        }
        None => api_error(
            axum::http::StatusCode::NOT_FOUND,
            format!("service `{service}` has sent no span"),
        ),
    }
}

/// `GET /api/v1/traces/{trace_id}` (SPEC 6): the joined tree, 400 for a bad id, 404
/// for an unknown one.
async fn trace(
    State(exported): State<Exported>,
    axum::extract::Path(trace_id): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let Ok(id) = ssfd_query::parse_id(&trace_id) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("trace id `{trace_id}` is not a decimal id, 16 or 32 hex digits"),
        );
    };
    let Some(store) = exported.store.clone() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "span storage is off (storage.max_bytes: 0)".into(),
        );
    };
    let spans = match tokio::task::spawn_blocking(move || store.trace(id)).await {
        Ok(Ok(spans)) => spans,
        Ok(Err(error)) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(error) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    match ssfd_query::trace_json(id, &spans) {
        Some(trace) => axum::Json(trace).into_response(),
        None => api_error(StatusCode::NOT_FOUND, format!("trace {id} is not stored")),
    }
}

/// `GET /api/v1/slos` (SPEC 6): each SLO over the 6 h window with its burn rates.
async fn slos_report(State(exported): State<Exported>) -> impl IntoResponse {
    let slos: Vec<serde_json::Value> = exported
        .slos
        .report()
        .into_iter()
        .map(|report| {
            let burn: serde_json::Map<String, serde_json::Value> = report
                .burn_rate
                .iter()
                .map(|(window, burn)| (window.to_string(), (*burn).into()))
                .collect();
            serde_json::json!({
                "name": report.name,
                "objective": report.objective,
                "good": report.good,
                "total": report.total,
                "ratio": report.ratio,
                "burn_rate": burn,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "slos": slos }))
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
    if open {
        body.push_str("# EOF\n");
        return (
            [(header::CONTENT_TYPE, openmetrics::OPENMETRICS_CONTENT_TYPE)],
            body,
        );
    }
    let text = body;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
