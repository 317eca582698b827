//! The HTTP listener: `/health` (200 while every pipeline runs, 503 otherwise, with each
//! pipeline's state as JSON) and `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::supervisor::Status;

#[derive(Clone)]
struct Shared {
    status: Status,
    metrics: PrometheusHandle,
}

/// The router of `/health` and `/metrics`.
pub fn router(status: Status, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { status, metrics })
}

async fn health(State(shared): State<Shared>) -> impl IntoResponse {
    let code = if shared.status.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "pipelines": shared.status.snapshot() });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    shared.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
