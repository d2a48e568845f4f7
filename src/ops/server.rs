//! The HTTP listeners: health, metrics, and the management API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::ops::gauges::Gauges;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// How long a scrape waits for its Redis-backed gauges; past it, the last values are served.
const SCRAPE_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct OpsState {
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: Arc<Metrics>,
    /// Gauges read from Redis at each scrape (none in tools without a Redis).
    pub(crate) gauges: Option<Arc<Gauges>>,
}

pub(crate) fn health_routes(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

pub(crate) fn metrics_routes(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let body = json!({
        "ready": s.health.ready(),
        "redis": s.health.redis_up(),
        "consumer": s.health.consumer_running(),
        "permissions_missing": s.health.denied(),
    });
    let code = if s.health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<OpsState>) -> Response {
    if let Some(g) = &s.gauges {
        let _ = tokio::time::timeout(SCRAPE_REFRESH, g.refresh(&s.metrics)).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
