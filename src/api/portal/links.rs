//! Minting portal links (SPEC 6): a tenant's (`POST /v1/tenants/{tenant}/portal-sessions`, by
//! an admin or the tenant's own token) and the operator view's (`POST /v1/portal-sessions`,
//! admin only). A link is made by a bearer token, never by a portal session: a session must
//! not outlive itself by minting the next one.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::session::{self, Grant};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{bearer, Caller, OptionalJsonBody, TenantScope};
use crate::api::state::ApiState;
use crate::api::token_store::{self, digest, hex};
use crate::support::clock::{now_ms, rfc3339};

/// A session lasts this long unless the request says otherwise, and at most `LONGEST`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const LONGEST: Duration = Duration::from_secs(7 * 86_400);

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRequest {
    /// How long the session lasts (and the link stays usable): a duration up to `7d`; default `1h`.
    #[schema(example = "2h")]
    ttl: Option<String>,
    /// A session that can look but change nothing, reveal no secret and send no test.
    #[serde(default)]
    read_only: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Link {
    /// Opens the portal once; absolute under `http.public_url` when it is set.
    #[schema(example = "https://hooks.example.com/portal/login?token=wpl_…")]
    url: String,
    /// RFC 3339: the link and the session it opens end then.
    expires_at: String,
}

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(tenant_link))
        .routes(routes!(operator_link))
}

/// A one-time link to a tenant's portal (an admin, or the tenant's own token).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/portal-sessions",
    tag = "portal",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    request_body(content = Option<LinkRequest>, description = "Optional: `ttl`, `read_only`"),
    responses(
        (status = 201, description = "The link, usable once", body = Link),
        (status = 400, description = "Malformed tenant or body", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "A portal session cannot mint links", body = ErrorBody),
        (status = 404, description = "Another tenant", body = ErrorBody),
        (status = 422, description = "Invalid ttl", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn tenant_link(
    State(state): State<ApiState>,
    headers: HeaderMap,
    scope: TenantScope,
    OptionalJsonBody(req): OptionalJsonBody<LinkRequest>,
) -> Result<(StatusCode, Json<Link>), ApiError> {
    mint(
        &state,
        &headers,
        Some(scope.tenant),
        req.unwrap_or_default(),
    )
    .await
}

/// A one-time link to the operator view of the portal (admin only).
#[utoipa::path(
    post,
    path = "/v1/portal-sessions",
    tag = "portal",
    request_body(content = Option<LinkRequest>, description = "Optional: `ttl`"),
    responses(
        (status = 201, description = "The link, usable once", body = Link),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid ttl", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn operator_link(
    State(state): State<ApiState>,
    headers: HeaderMap,
    caller: Caller,
    OptionalJsonBody(req): OptionalJsonBody<LinkRequest>,
) -> Result<(StatusCode, Json<Link>), ApiError> {
    caller.require_admin()?;
    let mut req = req.unwrap_or_default();
    // The operator view changes nothing.
    req.read_only = true;
    mint(&state, &headers, None, req).await
}

async fn mint(
    state: &ApiState,
    headers: &HeaderMap,
    tenant: Option<String>,
    req: LinkRequest,
) -> Result<(StatusCode, Json<Link>), ApiError> {
    // The caller's extractor took the token already; a portal session has none to give.
    let Some(token) = headers.get(header::AUTHORIZATION).and_then(bearer) else {
        return Err(ApiError::Forbidden(
            "portal links are minted with a bearer token, not from a portal session".into(),
        ));
    };
    let ttl = match req.ttl.as_deref() {
        None => DEFAULT_TTL,
        Some(t) => crate::api::ttl::parse(t, Some(LONGEST))?,
    };
    let minted_by = hex(&digest(token));
    let mut expires_at = now_ms() + ttl.as_millis() as i64;
    // A link ends no later than the tenant token that made it (an admin token has no record).
    let inner = &state.inner;
    if let Some(rec) = token_store::record(&inner.conn, &inner.keys, &minted_by).await? {
        expires_at = rec.expires_at.map_or(expires_at, |end| end.min(expires_at));
    }
    let grant = Grant {
        tenant,
        read_only: req.read_only,
        expires_at,
        minted_by: Some(minted_by),
    };
    let Some(token) = session::mint(&state.inner.conn, &state.inner.keys, &grant).await? else {
        return Err(ApiError::TooMany(format!(
            "this token has {} unused portal links; use or let some expire first",
            session::MAX_LINKS_PER_TOKEN
        )));
    };
    let base = state.inner.public_url.trim_end_matches('/');
    Ok((
        StatusCode::CREATED,
        Json(Link {
            url: format!("{base}/portal/login?token={token}"),
            expires_at: rfc3339(grant.expires_at),
        }),
    ))
}
