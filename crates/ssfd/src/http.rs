//! The HTTP endpoints that exist so far: `/healthcheck`, `/version` and `/metrics`
//! (own telemetry, SPEC 10). The query API and web UI come with the query crate.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router() -> Router {
    Router::new()
        .route("/healthcheck", get(|| async { "ok" }))
        .route("/version", get(|| async { format!("ssfd {VERSION}\n") }))
        .route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    let mut text = String::with_capacity(8192);
    ssfd_telemetry::render(&mut text, VERSION);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
