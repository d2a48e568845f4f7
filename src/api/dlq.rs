//! `/v1/tenants/{tenant}/dlq…`: dead letters listed, replayed and purged — always within
//! the caller's tenant.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{cursor, page_limit};
use super::extract::{ApiPath, ApiQuery, JsonBody, TenantScope};
use super::state::ApiState;
use crate::retry::dlq::{not_a_letter_id, DeadLetter, Replayed, Selector};
use crate::support::clock::parse_rfc3339;

/// Ids one replay may name.
const MAX_REPLAY_IDS: usize = 1000;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay))
        .routes(routes!(purge_one))
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeadLetterList {
    pub(super) data: Vec<DeadLetter>,
    pub(super) next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DlqQuery {
    /// Only this endpoint's dead letters.
    pub(super) endpoint: Option<String>,
    /// 1 to 250; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub(super) limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^([0-9]{1,20}(-[0-9]{1,20})?)?$")]
    pub(super) cursor: Option<String>,
}

/// Exactly one of `ids`, `endpoint` or `since`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// Dead-letter ids (1 to 1000).
    #[schema(min_items = 1, max_items = 1000)]
    pub(super) ids: Option<Vec<String>>,
    /// Every dead letter of this endpoint.
    pub(super) endpoint: Option<String>,
    /// Every dead letter with `dead_at` at or after this RFC 3339 time.
    #[schema(format = DateTime)]
    pub(super) since: Option<String>,
}

/// List dead letters, oldest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/dlq",
    tag = "dlq",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"), DlqQuery),
    responses(
        (status = 200, description = "One page", body = DeadLetterList),
        (status = 400, description = "Bad limit, cursor or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Another tenant's path", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn list_dead_letters(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiQuery(q): ApiQuery<DlqQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let dlq = &state.inner.dlq;
    let after = cursor(q.cursor.as_deref(), |c| dlq.misnamed(&[c]).is_none())?;
    let endpoint = q.endpoint.as_deref().filter(|e| !e.is_empty());
    let page = state
        .inner
        .dlq
        .list(Some(&scope.tenant), endpoint, after, limit)
        .await?;
    Ok(Json(DeadLetterList {
        data: page.letters,
        next_cursor: page.next_cursor,
    }))
}

/// Replay dead letters: each goes back to the retry queue with a fresh schedule.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/dlq/replay",
    tag = "dlq",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "How many were replayed, and how many were left because their endpoint was deleted", body = Replayed),
        (status = 400, description = "Malformed JSON or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Another tenant's path", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Not exactly one selector, a bad `since`, or an id that names no dead letter", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn replay(
    State(state): State<ApiState>,
    scope: TenantScope,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> Result<Json<Replayed>, ApiError> {
    let selector = match (req.ids, req.endpoint, req.since) {
        (Some(ids), None, None) => {
            if ids.is_empty() || ids.len() > MAX_REPLAY_IDS {
                return Err(ApiError::Invalid(format!(
                    "`ids` must list 1 to {MAX_REPLAY_IDS} ids"
                )));
            }
            if let Some(bad) = state.inner.dlq.misnamed(&ids) {
                return Err(ApiError::Invalid(not_a_letter_id(bad)));
            }
            Selector::Ids(ids)
        }
        (None, Some(endpoint), None) => Selector::Endpoint(endpoint),
        // Before 1970 means everything: stream ids start at 0.
        (None, None, Some(since)) => {
            Selector::Since(parse_rfc3339(&since).map(|ms| ms.max(0)).ok_or_else(|| {
                ApiError::Invalid(
                    "`since` must be an RFC 3339 time, e.g. 2024-01-09T18:40:00Z".into(),
                )
            })?)
        }
        _ => {
            return Err(ApiError::Invalid(
                "give exactly one of `ids`, `endpoint` or `since`".into(),
            ))
        }
    };
    let replayed = state
        .inner
        .dlq
        .replay(
            Some(&scope.tenant),
            &selector,
            &state.inner.retry,
            &state.inner.store,
        )
        .await?;
    Ok(Json(replayed))
}

/// Purge one dead letter.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/dlq/{id}",
    tag = "dlq",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Dead-letter id"),
    ),
    responses(
        (status = 204, description = "Purged"),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such dead letter for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn purge_one(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("dead letter `{id}` not found"));
    if state
        .inner
        .dlq
        .misnamed(std::slice::from_ref(&id))
        .is_some()
    {
        return Err(not_found());
    }
    let n = state
        .inner
        .dlq
        .purge(Some(&scope.tenant), &Selector::Ids(vec![id.clone()]))
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
