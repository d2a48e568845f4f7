//! `/v1/tenants/{tenant}/endpoints…`: register, read, change, remove; the secret, activity
//! and stats routes live beside this file.

mod activity;
mod checks;
mod secret;
mod shapes;
mod stats;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::checks::{
    check_fields, check_signing_kept, check_target, contended, load, new_key, refuse_static, shown,
};
use self::shapes::{
    CreateEndpoint, CreatedEndpoint, EndpointList, EndpointOut, PageQuery, PatchEndpoint,
};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{cursor, page_limit};
use crate::api::extract::{ApiPath, ApiQuery, JsonBody, TenantScope};
use crate::api::state::ApiState;
use crate::ids::EndpointId;
use crate::notice::{Notice, Reason};
use crate::registry::model::new_endpoint_id;
use crate::registry::{EndpointRecord, Updated};
use crate::support::clock::now_ms;

/// Endpoints one tenant may create through the API: each is held in every replica's index and
/// in Redis, so one tenant's count bounds what it takes from the others (a tenant made 3,010
/// with nothing to stop it). Ten thousand is issue 16's largest one-tenant fan-out.
const MAX_ENDPOINTS_PER_TENANT: u64 = 10_000;

const DISABLED_BY_REQUEST: &str = "disabled through the API";

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, patch_endpoint, delete_endpoint))
        .merge(secret::routes())
        .merge(activity::routes())
        .merge(stats::routes())
}

/// Register an endpoint.
///
/// The answer carries the signing secret (for `signing: "ed25519"`, the public key `whpk_…`);
/// it can be read again with `GET …/secret`.
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
    let signing = req.signing.unwrap_or_default();
    let kept = new_key(signing, req.secret)?;
    let now = now_ms();
    let disabled = req.disabled.unwrap_or(false);
    let id = new_endpoint_id();
    let rec = EndpointRecord {
        description: req.description.unwrap_or_default(),
        headers: req.headers.unwrap_or_default(),
        rate_limit: req.rate_limit,
        disabled,
        disabled_reason: disabled.then(|| DISABLED_BY_REQUEST.to_string()),
        metadata: req.metadata.unwrap_or_default(),
        signing,
        ordering_key: req.ordering_key,
        ..EndpointRecord::new(
            id.clone(),
            scope.tenant,
            req.url,
            req.filters,
            state.inner.sealer.seal(&kept, &id),
            now,
        )
    };
    check_fields(&state, &rec)?;
    check_target(&state, &rec.url).await?;
    let (held, _) = state.inner.store.count(&rec.tenant, None).await?;
    if held >= MAX_ENDPOINTS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "tenant `{}` has {held} endpoints, the most one may have ({MAX_ENDPOINTS_PER_TENANT}); delete one first",
            rec.tenant
        )));
    }
    let secret = shown(&rec, &kept)?;
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
    let after = cursor(q.cursor.as_deref(), |c| EndpointId::parse(c).is_ok())?;
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
    let first = load(&state, &scope.tenant, &id).await?;
    check_signing_kept(req.signing, &first)?;
    // config.yaml owns a static endpoint; the one change the API makes is enabling it again
    // after webhookd disabled it at run time (a 410, or failing for disable_after).
    if !req.only_enables() {
        refuse_static(&first)?;
    }
    // Judged before anything is written (the failure streak below included); judged again
    // on the newest record when it is written.
    let mut trial = first.clone();
    apply_patch(&req, &mut trial);
    check_fields(&state, &trial)?;
    if trial.url != first.url {
        check_target(&state, &trial.url).await?;
    }
    if first.disabled && req.disabled == Some(false) {
        // A fresh start: the failure streak that disabled it must not disable it again.
        state.inner.store.reset_failures(&first.id).await?;
    }
    // Applied to the newest record, so a change made meanwhile (an automatic disable, another
    // PATCH) is kept rather than overwritten.
    let mut toggled = None;
    let updated = state
        .inner
        .store
        .update(&first.id, |rec| {
            toggled = apply_patch(&req, rec);
            check_fields(&state, rec)?;
            Ok::<_, ApiError>(true)
        })
        .await?;
    match updated {
        Updated::Written(rec) => {
            let notice = match toggled {
                Some(true) => Some(Notice::disabled(
                    &rec.tenant,
                    &rec.id,
                    Reason::Tenant,
                    DISABLED_BY_REQUEST,
                    rec.updated_at,
                )),
                Some(false) => Some(Notice::enabled(&rec.tenant, &rec.id, rec.updated_at)),
                None => None,
            };
            if let Some(n) = notice {
                state.inner.notices.send(n);
            }
            Ok(Json(EndpointOut::from(&rec)))
        }
        Updated::Unchanged(rec) => Ok(Json(EndpointOut::from(&rec))),
        Updated::Missing => Err(ApiError::NotFound(format!("endpoint `{id}` not found"))),
        Updated::Contended => Err(contended(&id)),
    }
}

/// Applies a change; answers whether it disabled (true) or enabled (false) the endpoint.
fn apply_patch(req: &PatchEndpoint, rec: &mut EndpointRecord) -> Option<bool> {
    if let Some(url) = &req.url {
        rec.url = url.clone();
    }
    if let Some(filters) = &req.filters {
        rec.filters = filters.clone();
    }
    if let Some(d) = &req.description {
        rec.description = d.clone();
    }
    if let Some(h) = &req.headers {
        rec.headers = h.clone();
    }
    if let Some(r) = req.rate_limit {
        rec.rate_limit = r;
    }
    if let Some(m) = &req.metadata {
        rec.metadata = m.clone();
    }
    if let Some(k) = &req.ordering_key {
        rec.ordering_key = k.clone();
    }
    match req.disabled {
        Some(true) if !rec.disabled => {
            rec.disabled = true;
            rec.disabled_reason = Some(DISABLED_BY_REQUEST.into());
            Some(true)
        }
        Some(false) => {
            let was = rec.disabled;
            rec.disabled = false;
            rec.disabled_reason = None;
            was.then_some(false)
        }
        _ => None,
    }
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
