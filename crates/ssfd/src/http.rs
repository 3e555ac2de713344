//! The HTTP endpoints that exist so far: `/healthcheck`, `/version` and `/metrics`
//! (the flushed metrics' exposition, then own telemetry, SPEC 6 and 10). The query API
//! and web UI come with the query crate.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ssfd_export::prometheus::Exposition;
use std::sync::{Arc, Mutex};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router(exposition: Arc<Mutex<Exposition>>) -> Router {
    Router::new()
        .route("/healthcheck", get(|| async { "ok" }))
        .route("/version", get(|| async { format!("ssfd {VERSION}\n") }))
        .route("/metrics", get(metrics))
        .with_state(exposition)
}

async fn metrics(State(exposition): State<Arc<Mutex<Exposition>>>) -> impl IntoResponse {
    let mut text = String::with_capacity(8192);
    if let Ok(mut exposition) = exposition.lock() {
        exposition.render(&mut text);
    }
    ssfd_telemetry::render(&mut text, VERSION);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
