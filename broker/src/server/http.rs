//! The HTTP listener: `/health` (the process is up), `/ready` (serving requests), `/metrics`
//! (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::BrokerContext;

pub(crate) fn router(ctx: Arc<BrokerContext>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(ctx)
}

async fn ready(State(ctx): State<Arc<BrokerContext>>) -> impl IntoResponse {
    if ctx.ready.load(Ordering::Acquire) && !ctx.shutdown.is_cancelled() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(ctx): State<Arc<BrokerContext>>) -> impl IntoResponse {
    for topic in ctx.registry.topics().values() {
        for p in &topic.partitions {
            let labels = [
                ("topic", topic.name.clone()),
                ("partition", p.id().to_string()),
            ];
            metrics::gauge!("brook_log_end_offset", &labels).set(p.log().end_offset().0 as f64);
            metrics::gauge!("brook_log_start_offset", &labels).set(p.log().start_offset().0 as f64);
            metrics::gauge!("brook_log_size_bytes", &labels).set(p.log().size_bytes() as f64);
        }
    }
    ctx.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}
