//! How an endpoint is doing: its circuit, what is in flight, and its last 24 hours.

use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::checks::load;
use super::shapes::{EndpointStats, HourStats};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, TenantScope};
use crate::api::state::ApiState;
use crate::deliver::breaker;
use crate::deliver::stats;
use crate::support::clock::now_ms;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(endpoint_stats))
}

/// An endpoint's health: its circuit, deliveries in flight, and its last 24 hours.
///
/// `in_flight` counts every replica. Each hour (oldest first, the last the current one) has
/// its successful (2xx) and failed attempts and their median and 99th-percentile latency.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/endpoints/{id}/stats",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 200, description = "The endpoint's health", body = EndpointStats),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn endpoint_stats(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<Json<EndpointStats>, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    let (conn, keys, now) = (&state.inner.conn, &state.inner.keys, now_ms());
    let (circuit, in_flight, hours) = tokio::try_join!(
        breaker::state(conn, state.inner.retry.shards(), &rec.id),
        stats::in_flight(conn, keys, &rec.id, now),
        stats::last_day(conn, keys, &rec.id, now),
    )?;
    Ok(Json(EndpointStats {
        circuit: circuit.into(),
        in_flight,
        hours: hours.into_iter().map(HourStats::from).collect(),
    }))
}
