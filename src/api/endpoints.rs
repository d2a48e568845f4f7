//! `/v1/tenants/{tenant}/endpoints…`: register, read, change, remove, rotate, inspect, test.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{cursor, page_limit, OptionalJsonBody};
use super::{ApiError, ApiPath, ApiQuery, ApiState, ErrorBody, JsonBody, TenantScope};
use crate::attempt_log;
use crate::clock::{now_ms, rfc3339};
use crate::deliver::attempt::{self, AttemptSpec};
use crate::deliver::sign::{decode_secret, generate_secret};
use crate::registry::model::{
    check_filters, check_url, literal_ip, new_endpoint_id, parse_headers, MAX_DESCRIPTION,
};
use crate::registry::{Endpoint, EndpointRecord, StoredSecret};

/// How long registration waits for DNS before accepting a name it could not resolve (the
/// connect-time guard still applies to whatever it resolves to later).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_METADATA: usize = 50;
const MAX_RATE_LIMIT: u32 = 1_000_000;
const MAX_METADATA_KEY: usize = 128;
const MAX_METADATA_VALUE: usize = 1024;
/// Secrets kept signing at once: the current one and up to this many still overlapping.
const MAX_OVERLAPPING_SECRETS: usize = 9;
const DISABLED_BY_REQUEST: &str = "disabled through the API";

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, patch_endpoint, delete_endpoint))
        .routes(routes!(get_secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_attempts))
        .routes(routes!(test_endpoint))
}

// ---- shapes -------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://` (or `http://` when delivery.allow_http), no user-info, at most 2048 characters;
    /// must not point at a loopback, private, link-local, CGNAT, multicast or unspecified address.
    #[schema(example = "https://example.com/webhooks")]
    pub url: String,
    /// Event-type patterns (SPEC 3); each must match at least one catalog type.
    #[schema(example = json!(["outbound.*"]), min_items = 1, max_items = 64)]
    pub filters: Vec<String>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Extra request headers; the signing and transport headers cannot be overridden.
    pub headers: Option<BTreeMap<String, String>>,
    /// `whsec_` + base64 of 24–64 bytes; generated when left out.
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")]
    pub secret: Option<String>,
    /// Deliveries per second, or null for no limit.
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_limit: Option<u32>,
    pub disabled: Option<bool>,
    /// At most 50 string values.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A partial update: fields left out (or null) stay as they are, except `rate_limit`, where
/// null removes the limit. `disabled: false` re-enables and clears `disabled_reason`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchEndpoint {
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 64)]
    pub filters: Option<Vec<String>>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    pub rate_limit: Option<Option<u32>>,
    pub disabled: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Tells a field given as null (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct EndpointOut {
    #[schema(example = "ep_018d0a1b2c3d4e5f6a7b8c9d")]
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub filters: Vec<String>,
    pub description: String,
    pub headers: BTreeMap<String, String>,
    pub rate_limit: Option<u32>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&EndpointRecord> for EndpointOut {
    fn from(r: &EndpointRecord) -> Self {
        EndpointOut {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            url: r.url.clone(),
            filters: r.filters.clone(),
            description: r.description.clone(),
            headers: r.headers.clone(),
            rate_limit: r.rate_limit,
            disabled: r.disabled,
            disabled_reason: r.disabled_reason.clone(),
            metadata: r.metadata.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// An endpoint as created: its fields plus its signing secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointOut>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Secret {
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (`whsec_` + base64 of 24–64 bytes); generated when left out.
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    #[schema(format = DateTime)]
    pub at: String,
    pub event_id: String,
    pub attempt: u32,
    /// HTTP status, or null when no response came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Up to 4 KiB of the response body.
    pub response: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub data: Vec<AttemptOut>,
    pub next_cursor: Option<String>,
}

/// What a test delivery came to.
#[derive(Serialize, ToSchema)]
pub struct TestOutcome {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 250; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page (opaque).
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1 to 250; default 50 (the log keeps the latest 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
}

// ---- validation ---------------------------------------------------------------------

/// Refuses (422) a hostname that resolves to any address the SSRF guard blocks. A name that
/// does not resolve now is accepted: the connect-time guard checks whatever it becomes.
async fn check_target(state: &ApiState, raw: &str) -> Result<(), ApiError> {
    let guard = &state.inner.dispatcher.guard;
    let uri = check_url(raw, state.inner.allow_http, guard).map_err(ApiError::Invalid)?;
    let host = uri.host().unwrap_or_default();
    if literal_ip(host).is_some() {
        return Ok(()); // check_url has judged the literal address.
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let resolved =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    if let Ok(Ok(addrs)) = resolved {
        for addr in addrs {
            if let Err(kind) = guard.check(addr.ip()) {
                return Err(ApiError::Invalid(format!(
                    "url host `{host}` resolves to {}, a {kind} address, which is not allowed",
                    addr.ip()
                )));
            }
        }
    }
    Ok(())
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    decode_secret(secret)
        .map(|_| ())
        .map_err(|e| ApiError::Invalid(format!("`secret`: {e}")))
}

/// Checks the fields every write must satisfy, whatever changed.
fn check_fields(state: &ApiState, rec: &EndpointRecord) -> Result<(), ApiError> {
    check_filters(&rec.filters, &state.inner.catalog)
        .map_err(|e| ApiError::Invalid(format!("`filters`: {e}")))?;
    parse_headers(&rec.headers).map_err(|e| ApiError::Invalid(format!("`headers`: {e}")))?;
    if rec.description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::Invalid(format!(
            "`description` is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    if rec.rate_limit.is_some_and(|r| r == 0 || r > MAX_RATE_LIMIT) {
        return Err(ApiError::Invalid(format!(
            "`rate_limit` must be an integer from 1 to {MAX_RATE_LIMIT} (per second) or null"
        )));
    }
    if rec.metadata.len() > MAX_METADATA {
        return Err(ApiError::Invalid(format!(
            "`metadata` has more than {MAX_METADATA} keys"
        )));
    }
    for (k, v) in &rec.metadata {
        if k.chars().count() > MAX_METADATA_KEY {
            return Err(ApiError::Invalid(format!(
                "`metadata` keys must be at most {MAX_METADATA_KEY} characters"
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE {
            return Err(ApiError::Invalid(format!(
                "`metadata.{k}` is longer than {MAX_METADATA_VALUE} characters"
            )));
        }
    }
    Ok(())
}

/// The tenant's endpoint `id`, or 404 (also when it belongs to another tenant).
async fn load(state: &ApiState, tenant: &str, id: &str) -> Result<EndpointRecord, ApiError> {
    match state.inner.store.get(id).await? {
        Some(rec) if rec.tenant == tenant => Ok(rec),
        _ => Err(ApiError::NotFound(format!("endpoint `{id}` not found"))),
    }
}

fn refuse_static(rec: &EndpointRecord) -> Result<(), ApiError> {
    if rec.from_config {
        return Err(ApiError::Conflict(format!(
            "endpoint `{}` is declared in config.yaml (endpoints:); change it there",
            rec.id
        )));
    }
    Ok(())
}

fn open_secret(state: &ApiState, rec: &EndpointRecord) -> Result<String, ApiError> {
    let current = rec
        .secrets
        .first()
        .ok_or_else(|| ApiError::Internal(format!("endpoint `{}` has no secret", rec.id)))?;
    state
        .inner
        .sealer
        .open(&current.sealed)
        .map_err(|e| ApiError::Internal(format!("endpoint `{}`: {e}", rec.id)))
}

// ---- handlers -----------------------------------------------------------------------

/// Register an endpoint.
///
/// The answer carries the signing secret; it can be read again with `GET …/secret`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/endpoints",
    tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created", body = CreatedEndpoint),
        (status = 400, description = "Malformed JSON or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Another tenant's path", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn create_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    JsonBody(req): JsonBody<CreateEndpoint>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let secret = match req.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(),
    };
    let now = now_ms();
    let disabled = req.disabled.unwrap_or(false);
    let rec = EndpointRecord {
        id: new_endpoint_id(),
        tenant: scope.tenant,
        url: req.url,
        filters: req.filters,
        description: req.description.unwrap_or_default(),
        headers: req.headers.unwrap_or_default(),
        rate_limit: req.rate_limit,
        disabled,
        disabled_reason: disabled.then(|| DISABLED_BY_REQUEST.to_string()),
        metadata: req.metadata.unwrap_or_default(),
        created_at: now,
        updated_at: now,
        secrets: vec![StoredSecret {
            sealed: state.inner.sealer.seal(&secret),
            expires_at: None,
        }],
        from_config: false,
    };
    check_fields(&state, &rec)?;
    check_target(&state, &rec.url).await?;
    state.inner.store.put(&rec).await?;
    let endpoint = EndpointOut::from(&rec);
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint { endpoint, secret }),
    ))
}

/// List a tenant's endpoints, in id (creation) order.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/endpoints",
    tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"), PageQuery),
    responses(
        (status = 200, description = "One page", body = EndpointList),
        (status = 400, description = "Bad limit, cursor or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Another tenant's path", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn list_endpoints(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<EndpointList>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let after = cursor(q.cursor.as_deref());
    let page = state.inner.store.list(&scope.tenant, limit, after).await?;
    Ok(Json(EndpointList {
        data: page.records.iter().map(EndpointOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read an endpoint.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/endpoints/{id}",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 200, description = "The endpoint", body = EndpointOut),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn get_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    Ok(Json(EndpointOut::from(&rec)))
}

/// Change an endpoint (partial update).
#[utoipa::path(
    patch,
    path = "/v1/tenants/{tenant}/endpoints/{id}",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    request_body = PatchEndpoint,
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointOut),
        (status = 400, description = "Malformed JSON or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 409, description = "A static endpoint from config.yaml", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn patch_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
    JsonBody(req): JsonBody<PatchEndpoint>,
) -> Result<Json<EndpointOut>, ApiError> {
    let mut rec = load(&state, &scope.tenant, &id).await?;
    refuse_static(&rec)?;
    let url_changed = req.url.as_ref().is_some_and(|u| *u != rec.url);
    let re_enabled = rec.disabled && req.disabled == Some(false);
    if let Some(url) = req.url {
        rec.url = url;
    }
    if let Some(filters) = req.filters {
        rec.filters = filters;
    }
    if let Some(d) = req.description {
        rec.description = d;
    }
    if let Some(h) = req.headers {
        rec.headers = h;
    }
    if let Some(r) = req.rate_limit {
        rec.rate_limit = r;
    }
    if let Some(m) = req.metadata {
        rec.metadata = m;
    }
    match req.disabled {
        Some(true) if !rec.disabled => {
            rec.disabled = true;
            rec.disabled_reason = Some(DISABLED_BY_REQUEST.into());
        }
        Some(false) => {
            rec.disabled = false;
            rec.disabled_reason = None;
        }
        _ => {}
    }
    check_fields(&state, &rec)?;
    if url_changed {
        check_target(&state, &rec.url).await?;
    }
    rec.updated_at = now_ms().max(rec.updated_at + 1);
    if re_enabled {
        // A fresh start: the failure streak that disabled it must not disable it again.
        redis::cmd("HDEL")
            .arg(state.inner.keys.failing_since())
            .arg(&rec.id)
            .query_async::<()>(&mut state.inner.conn.clone())
            .await?;
    }
    state.inner.store.put(&rec).await?;
    Ok(Json(EndpointOut::from(&rec)))
}

/// Remove an endpoint; its pending retries are dropped.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/endpoints/{id}",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 409, description = "A static endpoint from config.yaml", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn delete_endpoint(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    refuse_static(&rec)?;
    state.inner.store.delete(&rec.tenant, &rec.id).await?;
    redis::cmd("DEL")
        .arg(state.inner.keys.attempts(&rec.id))
        .query_async::<()>(&mut state.inner.conn.clone())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read an endpoint's current signing secret.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/endpoints/{id}/secret",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 200, description = "The current secret", body = Secret),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn get_secret(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
) -> Result<Json<Secret>, ApiError> {
    let rec = load(&state, &scope.tenant, &id).await?;
    Ok(Json(Secret {
        secret: open_secret(&state, &rec)?,
    }))
}

/// Rotate the signing secret.
///
/// The previous secret keeps signing alongside the new one (two `v1,` entries in
/// `webhook-signature`) for `signing.rotation_overlap`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/endpoints/{id}/secret/rotate",
    tag = "endpoints",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Endpoint id"),
    ),
    request_body(content = Option<RotateSecret>, description = "Optional: the new secret"),
    responses(
        (status = 200, description = "The new current secret", body = Secret),
        (status = 400, description = "Malformed JSON or tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 409, description = "A static endpoint from config.yaml", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Invalid secret", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn rotate_secret(
    State(state): State<ApiState>,
    scope: TenantScope,
    ApiPath((_, id)): ApiPath<(String, String)>,
    OptionalJsonBody(req): OptionalJsonBody<RotateSecret>,
) -> Result<Json<Secret>, ApiError> {
    let mut rec = load(&state, &scope.tenant, &id).await?;
    refuse_static(&rec)?;
    let secret = match req.and_then(|r| r.secret) {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(),
    };
    let now = now_ms();
    let overlap_end = now + state.inner.rotation_overlap_ms;
    let mut secrets = vec![StoredSecret {
        sealed: state.inner.sealer.seal(&secret),
        expires_at: None,
    }];
    secrets.extend(
        rec.secrets
            .iter()
            .map(|s| StoredSecret {
                sealed: s.sealed.clone(),
                expires_at: Some(s.expires_at.map_or(overlap_end, |e| e.min(overlap_end))),
            })
            .filter(|s| s.expires_at.is_some_and(|e| e > now))
            .take(MAX_OVERLAPPING_SECRETS),
    );
    rec.secrets = secrets;
    rec.updated_at = now.max(rec.updated_at + 1);
    state.inner.store.put(&rec).await?;
    Ok(Json(Secret { secret }))
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
    let d = &state.inner.dispatcher;
    let outcome = attempt::send(
        &d.client,
        &d.guard,
        AttemptSpec {
            endpoint: &ep,
            msg_id: &event_id,
            body: &body,
            timeout: d.cfg.timeout,
            now_ms: now,
        },
    )
    .await;
    Ok(Json(TestOutcome {
        status: outcome.status,
        latency_ms: outcome.latency.as_millis() as u64,
        error: outcome.error,
        response: outcome.response,
    }))
}
