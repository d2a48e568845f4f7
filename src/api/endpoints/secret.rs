//! An endpoint's signing secret (an ed25519 endpoint's public key): read it, rotate it (the
//! old one overlaps).

use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::checks::{contended, load, new_key, refuse_static, shown, shown_secret};
use super::shapes::{RotateSecret, Secret};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::OptionalJsonBody;
use crate::api::extract::{ApiPath, TenantScope};
use crate::api::state::ApiState;
use crate::registry::{StoredSecret, Updated};
use crate::support::clock::now_ms;

/// Secrets kept signing at once: the current one and up to this many still overlapping.
const MAX_OVERLAPPING_SECRETS: usize = 9;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(get_secret))
        .routes(routes!(rotate_secret))
}

/// Read an endpoint's current signing secret.
///
/// For an `ed25519` endpoint, its current public key `whpk_…`; the private key is never shown.
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
        secret: shown_secret(&state, &rec)?,
    }))
}

/// Rotate the signing secret.
///
/// The previous secret keeps signing alongside the new one (two `v1,` entries in
/// `webhook-signature`) for `signing.rotation_overlap`. An `ed25519` endpoint gets a new key
/// pair the same way (two `v1a,` entries, the new key's first) and answers its public key; it
/// takes no `secret`.
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
    let first = load(&state, &scope.tenant, &id).await?;
    refuse_static(&first)?;
    // `signing` never changes, so the first read's scheme is the newest record's too.
    let kept = new_key(first.signing, req.and_then(|r| r.secret))?;
    let secret = shown(&first, &kept)?;
    let sealed = state.inner.sealer.seal(&kept, &first.id);
    // Rotated on the newest record: two rotations at once both land (the later one's secret
    // current, the earlier one's overlapping), so every secret a caller was told signs.
    let updated = state
        .inner
        .store
        .update(&first.id, |rec| {
            let now = now_ms();
            let overlap_end = now + state.inner.rotation_overlap_ms;
            let mut secrets = vec![StoredSecret {
                sealed: sealed.clone(),
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
            Ok::<_, ApiError>(true)
        })
        .await?;
    match updated {
        Updated::Missing => return Err(ApiError::NotFound(format!("endpoint `{id}` not found"))),
        Updated::Contended => return Err(contended(&id)),
        Updated::Written(_) | Updated::Unchanged(_) => {}
    }
    Ok(Json(Secret { secret }))
}
