//! The tenant portal (SPEC 6a): web pages served by webhookd itself, every asset embedded in
//! the binary. A one-time link (`links`) is exchanged at `/portal/login` for a session cookie
//! (`session`); the pages then call the same JSON API as any client, authenticated by that
//! cookie, so every rule the API enforces holds in the portal too. Changes carry the session's
//! CSRF token in a header; a read-only or operator session changes nothing and reveals no
//! secret.

mod dlq_page;
mod endpoint_page;
mod form;
mod home_page;
mod operator_page;
pub(crate) mod links;
mod page;
mod plot;
pub(crate) mod session;
mod verify_page;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::error::ApiError;
use super::state::ApiState;
use crate::support::clock::now_ms;
use session::{cookie, csrf_checked, COOKIE};

/// `/portal/…`: the login exchange, the pages and their assets.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(home))
        .route("/portal/login", get(login))
        .route("/portal/endpoints/{id}", get(endpoint_page::show))
        .route("/portal/endpoints/{id}/verify", get(verify_page::show))
        .route("/portal/dlq", get(dlq_page::show))
        .route("/portal/logout", post(logout))
        .route("/portal/assets/portal.css", get(page::css))
        .route("/portal/assets/portal.js", get(page::js))
        .layer(tower_http::compression::CompressionLayer::new())
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// Exchanges a link's token for a session cookie, then sends the browser on to the portal so
/// the token leaves the address bar (and no later request's `Referer` carries it).
async fn login(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let inner = &state.inner;
    // A mangled address (the token twice, say) gets the page too, not axum's plain text.
    let token = query.ok().and_then(|Query(q)| q.token);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return page::refused(
            StatusCode::BAD_REQUEST,
            "This address has no portal link in it.",
        );
    };
    // A HEAD (a link checker's, a chat preview's) must not use up the one-time link.
    if method == Method::HEAD {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        page::no_store(resp.headers_mut());
        return resp;
    }
    let (id, session) = match session::exchange(inner, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return page::refused(
                StatusCode::GONE,
                "This portal link has expired or was already used. Ask for a new one where you found it.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "exchanging a portal link failed");
            return page::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The portal cannot open right now. Try the link again in a moment.",
            );
        }
    };
    let max_age = ((session.grant.expires_at - now_ms()) / 1000).max(1);
    let secure = if behind_https(&state, &headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    let mut resp = Redirect::to("/portal/").into_response();
    let h = resp.headers_mut();
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of safe characters"),
    );
    page::no_store(h);
    resp
}

/// Whether the browser reached us over https: `http.public_url` says so, or the proxy in
/// front does (`X-Forwarded-Proto`).
fn behind_https(state: &ApiState, headers: &HeaderMap) -> bool {
    state.inner.public_url.starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

#[derive(Deserialize)]
struct HomeQuery {
    after: Option<String>,
}

/// The portal's page for the session's tenant (or the operator view).
async fn home(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HomeQuery>,
) -> Response {
    match page::signed_in(&state, &headers).await {
        Ok(session) => home_page::show(&state, &session, q.after.as_deref()).await,
        Err(refusal) => refusal,
    }
}

/// Ends the session (with its CSRF token, like every change) and clears the cookie.
async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let id = cookie(&headers).ok_or(ApiError::Unauthorized)?;
    let session = session::find(inner, &id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    csrf_checked(&headers, &session)?;
    session::end(&inner.conn, &inner.keys, &id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("webhookd_portal=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}
