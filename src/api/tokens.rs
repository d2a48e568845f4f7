//! Tenant tokens: created by an admin, shown once, kept only as a SHA-256 digest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::check_tenant;
use super::{ApiError, ApiPath, ApiState, Caller, ErrorBody};
use crate::clock::{now_ms, rfc3339};

/// What a token's digest maps to in `keys.tokens()`.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    tenant: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct NewToken {
    /// `whk_` + base64url of 32 random bytes. Shown only now: only its digest is stored.
    #[schema(example = "whk_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    pub token: String,
    pub tenant: String,
}

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_token))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tenant a token (given as its SHA-256 digest) belongs to, if it is one of ours.
pub async fn tenant_of(state: &ApiState, digest: &[u8; 32]) -> Result<Option<String>, ApiError> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(state.inner.keys.tokens())
        .arg(hex(digest))
        .query_async(&mut state.inner.conn.clone())
        .await?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<TokenRecord>(&r).ok())
        .map(|r| r.tenant))
}

/// Create a tenant token (admin only).
///
/// The token is shown once in this response; webhookd keeps only its SHA-256 digest.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tokens",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    responses(
        (status = 201, description = "The new token, shown only once", body = NewToken),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    caller.require_admin()?;
    check_tenant(&tenant)?;
    let raw: [u8; 32] = rand::random();
    let token = format!("whk_{}", URL_SAFE_NO_PAD.encode(raw));
    let record = TokenRecord {
        tenant: tenant.clone(),
        created_at: rfc3339(now_ms()),
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    redis::cmd("HSET")
        .arg(state.inner.keys.tokens())
        .arg(hex(&digest))
        .arg(serde_json::to_string(&record).expect("token records serialize"))
        .query_async::<()>(&mut state.inner.conn.clone())
        .await?;
    Ok((StatusCode::CREATED, Json(NewToken { token, tenant })))
}
