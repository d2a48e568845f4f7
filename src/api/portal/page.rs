//! The portal's HTML, rendered here so the first paint needs no script; `portal.js` adds what
//! is interactive by calling the JSON API. Everything is embedded: nothing is fetched from
//! anywhere else.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::session::{Session, CSRF_HEADER};
use crate::api::state::ApiState;
use crate::registry::EndpointRecord;

/// The sign-out button every page's header carries (portal.js ends the session with it).
pub(super) const SIGN_OUT: &str = "<button type=\"button\" id=\"logout\">Sign out</button>";

const CSS: &str = include_str!("assets/portal.css");
const JS: &str = include_str!("assets/portal.js");

/// The assets' version, in their URLs: a browser keeps them a day, and a new build's pages ask
/// for the new ones at once.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(CSS).chain_update(JS).finalize();
    crate::support::hex::encode(&digest[..6])
});

/// What a page says to a browser without a live session.
const SIGNED_OUT: &str =
    "You are not signed in to the portal, or your session ended. Open a new portal link.";
/// What a page says when Redis does not answer.
pub(super) const UNAVAILABLE: &str = "The portal cannot open right now. Try again in a moment.";

/// Headers every portal page carries: never cached (it holds a CSRF token), never framed,
/// never sending its address on, scripts and styles only from itself.
pub(super) fn no_store(h: &mut HeaderMap) {
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

pub(super) fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, Html(body)).into_response();
    no_store(resp.headers_mut());
    resp
}

/// Text made safe inside HTML elements and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The document around a page's body.
pub(super) fn document(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/portal/assets/portal.css?v={v}\">{head_extra}</head>\
         <body>{body}</body></html>\n",
        esc(title),
        v = *VERSION
    )
}

/// A page that explains why the portal did not open.
pub(super) fn refused(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<main class=\"narrow\"><h1>Webhooks portal</h1><p role=\"alert\">{}</p></main>",
        esc(message)
    );
    html(status, document("Webhooks portal", "", &body))
}

/// The live session a page request's cookie names, or the page that says why there is none.
pub(super) async fn signed_in(state: &ApiState, headers: &HeaderMap) -> Result<Session, Response> {
    let inner = &state.inner;
    let found = match super::session::cookie(headers) {
        Some(id) => super::session::find(inner, &id).await,
        None => Ok(None),
    };
    match found {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(refused(StatusCode::UNAUTHORIZED, SIGNED_OUT)),
        Err(e) => {
            tracing::warn!(error = %e, "reading a portal session failed");
            Err(refused(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE))
        }
    }
}

/// The session and the endpoint `id` of its tenant, or the page that says why not: another
/// tenant's endpoint is "not found", as in the API; the operator view has no endpoint pages.
pub(super) async fn tenant_endpoint(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Session, EndpointRecord), Response> {
    let session = signed_in(state, headers).await?;
    let Some(tenant) = session.grant.tenant.as_deref() else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "The operator view has no endpoint pages.",
        ));
    };
    match state.inner.store.get(id).await {
        Ok(Some(rec)) if rec.tenant == tenant => Ok((session, rec)),
        Ok(_) => Err(refused(StatusCode::NOT_FOUND, "There is no such endpoint.")),
        Err(e) => {
            tracing::warn!(error = %e, "reading an endpoint for the portal failed");
            Err(refused(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE))
        }
    }
}

/// What every signed-in page's `<head>` carries: its CSRF token and its script.
pub(super) fn head(session: &Session) -> String {
    format!(
        "<meta name=\"csrf-token\" content=\"{}\"><meta name=\"csrf-header\" content=\"{CSRF_HEADER}\">\
         <script src=\"/portal/assets/portal.js?v={v}\" defer></script>",
        esc(&session.csrf),
        v = *VERSION
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub(super) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub(super) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
