//! What happened at an endpoint: recent attempts, and a test delivery on demand.

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::checks::load;
use super::shapes::{AttemptList, AttemptOut, LimitQuery, TestOutcome, TestRequest};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::page_limit;
use crate::api::extract::{ApiPath, ApiQuery, OptionalJsonBody, TenantScope};
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

/// Send one signed test delivery now and report how it went.
///
/// Without a body it is a `webhookd.test` event; `{"type": …}` sends a made-up event of that
/// catalog type instead (one the endpoint's filters match), its `data` shaped like a real one
/// with `"test": true`. The id starts `evt_test_`. The request is signed like every delivery;
/// it is not retried and not logged as an attempt.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/endpoints/{id}/test",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    request_body(content = Option<TestRequest>, description = "Optional: the event type to send"),
    responses(
        (status = 200, description = "The outcome of the attempt (a failed attempt is still 200)", body = TestOutcome),
        (status = 400, description = "Malformed tenant or body", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 422, description = "Not a catalog type, or one the endpoint's filters do not match", body = ErrorBody),
        (status = 429, description = "The endpoint (or webhookd) has no free delivery slot now", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn test_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
    OptionalJsonBody(req): OptionalJsonBody<TestRequest>,
) -> Result<Json<TestOutcome>, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    let ep = Endpoint::from_record(&rec, &state.inner.sealer)
        .map_err(|e| ApiError::Internal(format!("endpoint `{}`: {e}", rec.id)))?;
    let event_type = match req.and_then(|r| r.event_type) {
        None => TEST_TYPE.to_string(),
        Some(t) => checked_type(&state, &ep, t)?,
    };
    let event_id = crate::event::new_id().replacen("evt_", "evt_test_", 1);
    let body = Bytes::from(test_event(&event_id, &event_type, now_ms()).to_string());
    // Through the same limits as every delivery: a test cannot overload an endpoint.
    let outcome = state
        .inner
        .dispatcher
        .test_send(&ep, &event_id, &body)
        .await
        .map_err(|busy| ApiError::TooMany(busy.to_string()))?;
    Ok(Json(TestOutcome {
        event_id,
        status: outcome.status,
        latency_ms: outcome.latency.as_millis() as u64,
        error: outcome.error,
        response: outcome.response,
    }))
}

/// The type a test sends when none is asked for.
const TEST_TYPE: &str = "webhookd.test";

/// A test may send any catalog type the endpoint would receive: another would be a delivery
/// it can never get for real.
fn checked_type(state: &ApiState, ep: &Endpoint, event_type: String) -> Result<String, ApiError> {
    if event_type == TEST_TYPE {
        return Ok(event_type);
    }
    let catalog = &state.inner.catalog;
    if !catalog.contains(&event_type) {
        let hint = catalog
            .suggest(&event_type)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(ApiError::Invalid(format!(
            "`type`: `{event_type}` is not in the event catalog (GET /v1/event-types){hint}"
        )));
    }
    if !ep.filters.iter().any(|p| p.matches(&event_type)) {
        let filters: Vec<&str> = ep.filters.iter().map(|p| p.as_str()).collect();
        return Err(ApiError::Invalid(format!(
            "`type`: the endpoint's filters ({}) do not match `{event_type}`",
            filters.join(", ")
        )));
    }
    Ok(event_type)
}

/// The delivered body of a test event: the shape a real event of that type has (SPEC 1), with
/// made-up message fields a receiver can route on and `"test": true`.
fn test_event(event_id: &str, event_type: &str, now_ms: i64) -> serde_json::Value {
    let service = event_type.split('.').next().unwrap_or(event_type);
    let mut data = serde_json::json!({"test": true});
    if service != "webhookd" {
        data = serde_json::json!({
            "test": true,
            "uid": format!("test-{}", &event_id[event_id.len().saturating_sub(8)..]),
            "message_id": "<test@webhookd.invalid>",
            "from": "sender@example.com",
            "to": "recipient@example.com",
            "subject": "A test event from webhookd",
        });
        let extra = match event_type {
            "outbound.bounced" => Some(("bounce_type", "hard")),
            "outbound.dropped" => Some(("reason", "suppressed")),
            "outbound.deferred" => Some(("reason", "rate_limited")),
            "outbound.clicked" => Some(("url", "https://example.com/")),
            _ => None,
        };
        if let Some((k, v)) = extra {
            data[k] = v.into();
        }
    }
    serde_json::json!({
        "id": event_id, "service": service, "type": event_type,
        "created_at": now_ms / 1000, "data": data
    })
}

#[cfg(test)]
mod tests {
    use super::test_event;

    #[test]
    fn a_test_event_has_the_delivered_shape_of_its_type() {
        let e = test_event("evt_test_01ABCDEFGH", "outbound.bounced", 1_704_825_600_123);
        assert_eq!(e["service"], "outbound");
        assert_eq!(e["type"], "outbound.bounced");
        assert_eq!(e["created_at"], 1_704_825_600);
        assert_eq!(e["data"]["bounce_type"], "hard");
        assert_eq!(e["data"]["test"], true);
        assert_eq!(e["data"]["uid"], "test-ABCDEFGH");
        let t = test_event("evt_test_x", "webhookd.test", 0);
        assert_eq!(t["service"], "webhookd");
        assert_eq!(t["data"], serde_json::json!({"test": true}));
    }
}
