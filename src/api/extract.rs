//! Extractors: who calls, which tenant they act on, and request parts parsed into our
//! errors (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::limit::{BODIES_PER_TOKEN, BODY_TIMEOUT};
use super::portal::session;
use super::state::ApiState;
use super::token_store;
use crate::ids::TenantId;
use crate::support::hex;

/// Who is calling: an operator (admin token from config) or one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    Admin,
    Tenant(String),
}

impl Caller {
    pub(super) fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden(
                "this route needs an admin token".into(),
            )),
        }
    }

    /// Whether this caller may act on `tenant`'s resources.
    pub(super) fn owns(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(t) => t == tenant,
        }
    }

    /// Publishing for another tenant is refused outright (403), not hidden.
    pub(super) fn may_publish_for(&self, tenant: &str) -> Result<(), ApiError> {
        if self.owns(tenant) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token may not publish for tenant `{tenant}`"
            )))
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let Some(auth) = parts.headers.get(header::AUTHORIZATION) else {
            // The portal's pages call the API with their session cookie instead.
            return match session::cookie(&parts.headers) {
                Some(id) => portal_caller(parts, state, &id).await,
                None => Err(ApiError::Unauthorized),
            };
        };
        let token = bearer(auth).ok_or(ApiError::Unauthorized)?;
        // Digests first, so the comparison takes the same time whatever the lengths.
        let given = token_store::digest(token);
        let admin =
            (state.inner.admin_digests.iter()).fold(0u8, |hit, d| hit | given.ct_eq(d).unwrap_u8());
        parts.extensions.insert(BodyKey(given));
        if admin == 1 {
            return Ok(Caller::Admin);
        }
        let Some(tenant) = token_store::tenant_of(
            &state.inner.conn,
            &state.inner.keys,
            &state.inner.token_use,
            &given,
        )
        .await?
        else {
            return Err(ApiError::Unauthorized);
        };
        // Publishing is exempt (SPEC 6): producers are throttled by the stream, not here.
        let path = parts.uri.path();
        if !(path == "/v1/events" || path.starts_with("/v1/ingest/")) {
            if let Err(wait) = state.inner.rate_limit.check(&given) {
                return Err(ApiError::RateLimited(wait));
            }
        }
        Ok(Caller::Tenant(tenant))
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(super) fn bearer(auth: &HeaderValue) -> Option<&str> {
    Some(auth)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// Who a portal session's API call acts as. Reads are allowed (but no secret for a read-only
/// or operator session); a change needs the session's CSRF token and a session that may
/// change things.
async fn portal_caller(parts: &mut Parts, state: &ApiState, id: &str) -> Result<Caller, ApiError> {
    let inner = &state.inner;
    let Some(session) = session::find(inner, id).await? else {
        return Err(ApiError::Unauthorized);
    };
    // A session counts against the token that minted its link: sessions are as many as the
    // links a token mints, and 60 of them held 480 request bodies of 1 MiB.
    let key = session
        .grant
        .minted_by
        .as_deref()
        .and_then(hex::decode)
        .unwrap_or_else(|| token_store::digest(id));
    if let Err(wait) = inner.rate_limit.check(&key) {
        return Err(ApiError::RateLimited(wait));
    }
    parts.extensions.insert(BodyKey(key));
    let grant = &session.grant;
    let looks_only = grant.read_only || grant.tenant.is_none();
    if matches!(parts.method, Method::GET | Method::HEAD) {
        if looks_only && parts.uri.path().ends_with("/secret") {
            return Err(ApiError::Forbidden(
                "a read-only portal session reveals no secret".into(),
            ));
        }
    } else {
        session::csrf_checked(&parts.headers, &session)?;
        if looks_only {
            return Err(ApiError::Forbidden(
                "this portal session is read-only".into(),
            ));
        }
    }
    Ok(match &grant.tenant {
        Some(t) => Caller::Tenant(t.clone()),
        None => Caller::Admin,
    })
}

/// A caller acting on `/v1/tenants/{tenant}/…`: the tenant is well-formed (else 400) and the
/// caller's own (else 404, as if absent).
#[derive(Debug)]
pub(super) struct TenantScope {
    pub(super) tenant: String,
}

impl FromRequestParts<ApiState> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Malformed(e.body_text()))?;
        let tenant = params
            .iter()
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| ApiError::Internal("route has no {tenant}".into()))?;
        check_tenant(&tenant)?;
        if !caller.owns(&tenant) {
            return Err(ApiError::NotFound("not found".into()));
        }
        Ok(TenantScope { tenant })
    }
}

pub(super) fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    TenantId::parse(tenant)
        .map(drop)
        .map_err(|e| ApiError::Malformed(format!("tenant {e}")))
}

/// `axum::extract::Path` with our 400.
pub(super) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::Malformed(e.body_text()))
    }
}

/// `axum::extract::Query` with our 400.
pub(super) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::Malformed(e.body_text()))
    }
}

/// Whose body a request carries (the digest of its token or portal session), set by `Caller`:
/// only a caller known by then may send one (`limit::BodyReads`).
#[derive(Clone, Copy)]
struct BodyKey([u8; 32]);

/// The request body as bytes, within `http.max_body_bytes` (else our JSON 413, at once when
/// its `Content-Length` says so), within `limit::BODY_TIMEOUT`, and at most
/// `limit::BODIES_PER_TOKEN` of one token's at once.
pub(super) struct RawBody(pub Bytes);

impl FromRequest<ApiState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let max = state.inner.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(ApiError::TooLarge(max));
        }
        let key = req.extensions().get::<BodyKey>().copied();
        let _reading = match key {
            Some(BodyKey(k)) => Some(state.inner.body_reads.take(k).ok_or_else(|| {
                ApiError::TooMany(format!(
                    "this token is already sending {BODIES_PER_TOKEN} request bodies; \
                     send the next when one is done"
                ))
            })?),
            None => None,
        };
        let read = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state)).await;
        let Ok(read) = read else {
            return Err(ApiError::Malformed(format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            )));
        };
        read.map(RawBody).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(max)
            } else {
                ApiError::Malformed(e.body_text())
            }
        })
    }
}

/// A JSON body: bad syntax is 400, a wrong or unknown field 422 naming it.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body that may be left out entirely (or be `null`).
pub(super) struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<ApiState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        parse_json::<Option<T>>(&bytes).map(OptionalJsonBody)
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    // Syntax before shape: a truncated body that happens to start with an unknown field is
    // malformed (400), not invalid (422).
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(if bytes.iter().all(u8::is_ascii_whitespace) {
            ApiError::Malformed("the request body must be a JSON object".into())
        } else {
            ApiError::Malformed(format!("invalid JSON: {e}"))
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => {
                let text = inner.to_string();
                // The position says nothing a field name does not say better.
                let text = text
                    .rfind(" at line ")
                    .map_or(text.as_str(), |i| &text[..i]);
                if path == "." || text.starts_with("unknown field") {
                    ApiError::Invalid(text.to_string())
                } else {
                    ApiError::Invalid(format!("`{path}`: {text}"))
                }
            }
            Category::Eof if bytes.iter().all(u8::is_ascii_whitespace) => {
                ApiError::Malformed("the request body must be a JSON object".into())
            }
            _ => ApiError::Malformed(format!("invalid JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::Malformed(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// Lists answer at most this many items per page, 50 unless `limit` says otherwise.
pub(super) const DEFAULT_LIMIT: usize = 50;
pub(super) const MAX_LIMIT: usize = 250;

/// `limit` of a list: 1 to 250 (else 400), default 50.
pub(super) fn page_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::Malformed(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// A list's `cursor`: the `next_cursor` of the previous page (empty means none).
/// A list's `cursor` (none when absent or empty), if `valid` says it could be one this API
/// handed out (else 400: a garbled cursor was taken for the first page).
pub(super) fn cursor(
    raw: Option<&str>,
    valid: impl Fn(&str) -> bool,
) -> Result<Option<&str>, ApiError> {
    match raw.filter(|c| !c.is_empty()) {
        Some(c) if !valid(c) => Err(ApiError::Malformed(
            "cursor must be a `next_cursor` this API handed out".into(),
        )),
        c => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_is_400_and_shape_is_422() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert!(matches!(parse_json::<T>(b"{"), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<T>(b""), Err(ApiError::Malformed(_))));
        assert!(matches!(
            parse_json::<T>(b"{\"a\":1} x"),
            Err(ApiError::Malformed(_))
        ));
        let Err(ApiError::Invalid(m)) = parse_json::<T>(b"{\"a\":1,\"zz\":2}") else {
            panic!("unknown field must be 422")
        };
        assert!(m.contains("zz"), "{m}");
        let Err(ApiError::Invalid(m)) = parse_json::<T>(b"{\"a\":\"x\"}") else {
            panic!("wrong type must be 422")
        };
        assert!(m.contains("`a`"), "{m}");
        assert!(parse_json::<T>(b" {\"a\": 7} ").is_ok());
        assert!(
            matches!(parse_json::<T>(b"{\"oops\": "), Err(ApiError::Malformed(_))),
            "syntax is judged before shape"
        );
    }

    #[test]
    fn limits_and_cursors() {
        assert_eq!(page_limit(None).unwrap(), 50);
        assert_eq!(page_limit(Some("250")).unwrap(), 250);
        for bad in ["0", "251", "-1", "x", ""] {
            assert!(page_limit(Some(bad)).is_err(), "{bad}");
        }
        let d = token_store::digest("wpl_x");
        assert_eq!(hex::decode(&token_store::hex(&d)), Some(d));
        let any = |_: &str| true;
        assert_eq!(cursor(Some("ep_1"), any).unwrap(), Some("ep_1"));
        assert_eq!(cursor(Some(""), any).unwrap(), None);
        assert!(cursor(Some("-1"), |c| c.starts_with("ep_")).is_err());
    }
}
