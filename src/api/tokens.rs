//! Tenant tokens: created by an admin, shown once, kept only as a SHA-256 digest; listed,
//! revoked and optionally expiring.
//!
//! Redis: `tokens` maps digest → record (what every request looks up, so a revocation or an
//! expiry takes effect on every replica at once); `tokens:tenant:<t>` maps the tenant's token
//! ids → digests (listing and revoking stay within one tenant); `tokens:used` holds when each
//! token was last used, written at most once a minute per token and replica.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{check_tenant, OptionalJsonBody};
use super::extract::{ApiPath, Caller};
use super::state::ApiState;
use super::token_store::{digest, hex, TokenRecord};
use crate::support::clock::{now_ms, rfc3339};

#[derive(Serialize, ToSchema)]
pub(super) struct NewToken {
    #[schema(example = "tok_9f2c4e1a7b3d5e60")]
    pub(super) id: String,
    /// `whk_` + base64url of 32 random bytes. Shown only now: only its digest is stored.
    #[schema(example = "whk_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    pub(super) token: String,
    pub(super) tenant: String,
    /// RFC 3339; null: it never expires.
    pub(super) expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    /// How long the token is valid, e.g. `30d`; absent: no expiry.
    #[schema(example = "30d")]
    pub(super) ttl: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TokenOut {
    pub(super) id: String,
    pub(super) created_at: String,
    pub(super) last_used_at: Option<String>,
    pub(super) expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TokenList {
    pub(super) data: Vec<TokenOut>,
    /// Always null: a tenant's tokens come in one page.
    pub(super) next_cursor: Option<String>,
}

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

/// Create a tenant token (admin only).
///
/// The token is shown once in this response; webhookd keeps only its SHA-256 digest.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tokens",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    request_body(content = Option<TokenRequest>, description = "Optional: `ttl`"),
    responses(
        (status = 201, description = "The new token, shown only once", body = NewToken),
        (status = 400, description = "Malformed tenant or body", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Invalid ttl", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    OptionalJsonBody(req): OptionalJsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    caller.require_admin()?;
    check_tenant(&tenant)?;
    let now = now_ms();
    let expires_at = match req.unwrap_or_default().ttl {
        None => None,
        Some(ttl) => Some(super::ttl::expiry(&ttl, now)?),
    };
    let raw: [u8; 32] = rand::random();
    let token = format!("whk_{}", URL_SAFE_NO_PAD.encode(raw));
    let digest = hex(&digest(&token));
    let id = format!("tok_{}", hex(&rand::random::<[u8; 8]>()));
    let record = TokenRecord {
        tenant: tenant.clone(),
        created_at: rfc3339(now),
        id: Some(id.clone()),
        expires_at,
    };
    let keys = &state.inner.keys;
    // The tenant's index first: a token is never usable without being listed (and revocable).
    redis::pipe()
        .hset(keys.tenant_tokens(&tenant), &id, &digest)
        .ignore()
        .hset(
            keys.tokens(),
            &digest,
            serde_json::to_string(&record).expect("token records serialize"),
        )
        .ignore()
        .query_async::<()>(&mut state.inner.conn.clone())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            id,
            token,
            tenant,
            expires_at: expires_at.map(rfc3339),
        }),
    ))
}

/// A tenant's tokens (admin only): ids and times, never the tokens themselves.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tokens",
    params(("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$")),
    responses(
        (status = 200, description = "The tenant's tokens, oldest first", body = TokenList),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TokenList>, ApiError> {
    caller.require_admin()?;
    check_tenant(&tenant)?;
    let keys = &state.inner.keys;
    let index: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.tenant_tokens(&tenant))
        .query_async(&mut state.inner.conn.clone())
        .await?;
    let digests: Vec<&String> = index.values().collect();
    let (records, used): (Vec<Option<String>>, Vec<Option<i64>>) = if digests.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(keys.tokens()).arg(&digests);
        pipe.cmd("HMGET").arg(keys.tokens_used()).arg(&digests);
        pipe.query_async(&mut state.inner.conn.clone()).await?
    };
    let now = now_ms();
    let mut data: Vec<(String, TokenOut)> = digests
        .iter()
        .zip(records)
        .zip(used)
        .filter_map(|((digest, raw), used)| {
            let rec: TokenRecord = serde_json::from_str(&raw?).ok()?;
            (rec.tenant == tenant && !rec.expired(now)).then(|| {
                (
                    rec.created_at.clone(),
                    TokenOut {
                        id: rec.id(digest),
                        created_at: rec.created_at.clone(),
                        last_used_at: used.map(rfc3339),
                        expires_at: rec.expires_at.map(rfc3339),
                    },
                )
            })
        })
        .collect();
    data.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(Json(TokenList {
        data: data.into_iter().map(|(_, t)| t).collect(),
        next_cursor: None,
    }))
}

/// Revoke a tenant token (admin only): refused from then on, by every replica.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/tokens/{id}",
    tag = "tokens",
    params(
        ("tenant" = String, Path, description = "Tenant id", pattern = r"^[A-Za-z0-9_.\-]{1,64}$"),
        ("id" = String, Path, description = "Token id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed tenant", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such token for this tenant", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    check_tenant(&tenant)?;
    let keys = &state.inner.keys;
    let digest: Option<String> = redis::cmd("HGET")
        .arg(keys.tenant_tokens(&tenant))
        .arg(&id)
        .query_async(&mut state.inner.conn.clone())
        .await?;
    let Some(digest) = digest else {
        return Err(ApiError::NotFound(format!("token `{id}` not found")));
    };
    // The record first: from this write on, the token is refused everywhere.
    redis::pipe()
        .hdel(keys.tokens(), &digest)
        .ignore()
        .hdel(keys.tokens_used(), &digest)
        .ignore()
        .hdel(keys.tenant_tokens(&tenant), &id)
        .ignore()
        .query_async::<()>(&mut state.inner.conn.clone())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
