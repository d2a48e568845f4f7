//! What happened at an endpoint: recent attempts, and a test delivery on demand.

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::checks::load;
use super::shapes::{AttemptList, AttemptOut, LimitQuery, TestOutcome};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::page_limit;
use crate::api::extract::{ApiPath, ApiQuery, TenantScope};
use crate::api::state::ApiState;
use crate::deliver::attempt_log;
use crate::registry::Endpoint;
use crate::support::clock::{now_ms, rfc3339};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_attempts))
        .routes(routes!(test_endpoint))
}

/// Recent delivery attempts to an endpoint, newest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/endpoints/{id}/attempts",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
        LimitQuery,
    ),
    responses(
        (status = 200, description = "Recent attempts", body = AttemptList),
        (status = 400, description = "Bad limit or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn list_attempts(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<AttemptList>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let rec = load(&state, &scope.tenant, &id).await?;
    let recent = attempt_log::recent(&state.inner.conn, &state.inner.keys, &rec.id, limit).await?;
    Ok(Json(AttemptList {
        data: recent
            .into_iter()
            .map(|a| AttemptOut {
                at: rfc3339(a.at),
                event_id: a.event_id,
                attempt: a.attempt,
                status: a.status,
                latency_ms: a.latency_ms,
                error: a.error,
                response: a.response,
            })
            .collect(),
        next_cursor: None,
    }))
}

/// Send one signed test delivery now (`webhookd.test`) and report how it went.
///
/// The request is signed like every delivery; it is not retried and not logged as an attempt.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/endpoints/{id}/test",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 200, description = "The outcome of the attempt (a failed attempt is still 200)", body = TestOutcome),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 429, description = "The endpoint (or webhookd) has no free delivery slot now", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn test_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<Json<TestOutcome>, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    let ep = Endpoint::from_record(&rec, &state.inner.sealer)
        .map_err(|e| ApiError::Internal(format!("endpoint `{}`: {e}", rec.id)))?;
    let event_id = crate::event::new_id().replacen("evt_", "evt_test_", 1);
    let now = now_ms();
    let body = Bytes::from(
        serde_json::json!({
            "id": event_id, "service": "webhookd", "type": "webhookd.test",
            "created_at": now / 1000, "data": {}
        })
        .to_string(),
    );
    // Through the same limits as every delivery: a test cannot overload an endpoint.
    let outcome = state
        .inner
        .dispatcher
        .test_send(&ep, &event_id, &body)
        .await
        .map_err(|busy| ApiError::TooMany(busy.to_string()))?;
    Ok(Json(TestOutcome {
        status: outcome.status,
        latency_ms: outcome.latency.as_millis() as u64,
        error: outcome.error,
        response: outcome.response,
    }))
}
