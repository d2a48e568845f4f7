//! The portal's HTML, rendered here so the first paint needs no script; `portal.js` adds what
//! is interactive by calling the JSON API. Everything is embedded: nothing is fetched from
//! anywhere else.

use std::fmt::Write;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::session::{Session, CSRF_HEADER};
use crate::api::state::ApiState;
use crate::deliver::breaker::State as Circuit;

const CSS: &str = include_str!("assets/portal.css");
const JS: &str = include_str!("assets/portal.js");
/// Endpoints rendered into the page; past them the page says how to see the rest.
const SHOWN: usize = 250;

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
         <title>{}</title><link rel=\"stylesheet\" href=\"/portal/assets/portal.css\">{head_extra}</head>\
         <body>{body}</body></html>\n",
        esc(title)
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
        Some(id) => super::session::find(&inner.conn, &inner.keys, &id).await,
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

/// What every signed-in page's `<head>` carries: its CSRF token and its script.
pub(super) fn head(session: &Session) -> String {
    format!(
        "<meta name=\"csrf-token\" content=\"{}\"><meta name=\"csrf-header\" content=\"{CSRF_HEADER}\">\
         <script src=\"/portal/assets/portal.js\" defer></script>",
        esc(&session.csrf)
    )
}

/// The session's first page: its tenant's endpoints, or the operator view.
pub(super) async fn home(state: &ApiState, session: &Session) -> Response {
    let grant = &session.grant;
    let head = head(session);
    let mut body = String::new();
    let who = match &grant.tenant {
        Some(t) => format!("Webhooks of {}", esc(t)),
        None => "Operator view".to_string(),
    };
    let badge = if grant.read_only || grant.tenant.is_none() {
        " <span class=\"badge\">read-only</span>"
    } else {
        ""
    };
    let _ = write!(
        body,
        "<header><h1>{who}{badge}</h1><nav>{dlq}<button type=\"button\" id=\"logout\">Sign out</button></nav></header><main>",
        dlq = if grant.tenant.is_some() { "<a href=\"/portal/dlq\">Dead letters</a> " } else { "" }
    );
    match &grant.tenant {
        Some(tenant) => {
            let _ = write!(
                body,
                "<div id=\"tenant\" data-tenant=\"{}\" hidden></div>",
                esc(tenant)
            );
            match endpoints(state, tenant, !grant.read_only).await {
                Ok(section) => body.push_str(&section),
                Err(e) => {
                    tracing::warn!(error = %e, "listing endpoints for the portal failed");
                    body.push_str("<p role=\"alert\">The endpoints cannot be read right now.</p>");
                }
            }
            if !grant.read_only {
                body.push_str(&add_form(state));
                let _ = write!(
                    body,
                    "<template id=\"row-actions\">{}</template>",
                    actions("", false)
                );
            }
        }
        None => body.push_str(&operator(state)),
    }
    body.push_str("</main>");
    let title = match &grant.tenant {
        Some(t) => format!("Webhooks — {t}"),
        None => "Webhooks — operator view".into(),
    };
    html(StatusCode::OK, document(&title, &head, &body))
}

/// The tenant's endpoints with their health at a glance.
/// With `writable`, each row has its actions: disable or enable, and delete (confirmed in
/// place). Endpoints from `config.yaml` are changed there, not here.
async fn endpoints(state: &ApiState, tenant: &str, writable: bool) -> redis::RedisResult<String> {
    let page = state.inner.store.list(tenant, SHOWN, None).await?;
    let breaker = state.inner.dispatcher.breaker();
    let mut s = String::from(
        "<section aria-labelledby=\"endpoints-h\"><h2 id=\"endpoints-h\">Endpoints</h2>",
    );
    let _ = write!(
        s,
        "<table id=\"endpoints\"><thead><tr><th scope=\"col\">Endpoint</th>\
         <th scope=\"col\">Events</th><th scope=\"col\">Health</th>{}</tr></thead><tbody>",
        if writable {
            "<th scope=\"col\">Actions</th>"
        } else {
            ""
        }
    );
    if page.records.is_empty() {
        s.push_str("<tr class=\"empty\"><td colspan=\"4\">No endpoints yet.</td></tr>");
    }
    for rec in &page.records {
        let health = if rec.disabled {
            "<span class=\"bad\">disabled</span>"
        } else {
            match breaker.state(&rec.id) {
                Circuit::Closed => "<span class=\"ok\">healthy</span>",
                Circuit::Open => "<span class=\"bad\">failing (circuit open)</span>",
                Circuit::HalfOpen => "<span class=\"warn\">recovering (probing)</span>",
            }
        };
        let actions = match (writable, rec.from_config) {
            (false, _) => String::new(),
            (true, true) => "<td><small>set in config.yaml</small></td>".to_string(),
            (true, false) => actions(&rec.id, rec.disabled),
        };
        let _ = write!(
            s,
            "<tr data-id=\"{id}\"><td><a href=\"/portal/endpoints/{id}\"><code>{url}</code></a><br><small>{id}{desc}</small></td>\
             <td>{filters}</td><td class=\"health\">{health}</td>{actions}</tr>",
            id = esc(&rec.id),
            url = esc(&rec.url),
            desc = if rec.description.is_empty() {
                String::new()
            } else {
                format!(" — {}", esc(&rec.description))
            },
            filters = esc(&rec.filters.join(", ")),
        );
    }
    s.push_str("</tbody></table>");
    if page.next_cursor.is_some() {
        let _ = write!(s, "<p>The first {SHOWN} endpoints are shown.</p>");
    }
    s.push_str("</section>");
    Ok(s)
}

/// A row's buttons; each names its endpoint for screen readers.
fn actions(id: &str, disabled: bool) -> String {
    let id = esc(id);
    let (verb, to) = if disabled {
        ("Enable", "false")
    } else {
        ("Disable", "true")
    };
    format!(
        "<td class=\"actions\"><button type=\"button\" data-action=\"toggle\" data-disabled=\"{to}\" \
         aria-label=\"{verb} {id}\">{verb}</button> <button type=\"button\" data-action=\"delete\" \
         aria-label=\"Delete {id}\">Delete</button></td>"
    )
}

/// The form that adds an endpoint: its URL, and the event types it wants, picked from the
/// catalog (or all). The API validates it; its errors are shown next to the field.
fn add_form(state: &ApiState) -> String {
    let mut s = String::from(
        "<section aria-labelledby=\"add-h\"><h2 id=\"add-h\">Add an endpoint</h2>\
         <form id=\"add-endpoint\" novalidate>\
         <p><label for=\"add-url\">URL</label><br>\
         <input id=\"add-url\" name=\"url\" type=\"url\" required placeholder=\"https://example.com/webhooks\" \
         aria-describedby=\"add-url-error\" size=\"40\">\
         <span id=\"add-url-error\" class=\"field-error\" role=\"alert\"></span></p>\
         <p><label for=\"add-description\">Description (optional)</label><br>\
         <input id=\"add-description\" name=\"description\" type=\"text\" size=\"40\"></p>\
         <fieldset aria-describedby=\"add-filters-error\"><legend>Events to receive</legend>\
         <label><input type=\"checkbox\" name=\"filters\" value=\"*\"> every event</label>",
    );
    for t in state.inner.catalog.types() {
        let _ = write!(
            s,
            "<label title=\"{desc}\"><input type=\"checkbox\" name=\"filters\" value=\"{ty}\"> {ty}</label>",
            ty = esc(&t.event_type),
            desc = esc(&t.description)
        );
    }
    s.push_str(
        "<span id=\"add-filters-error\" class=\"field-error\" role=\"alert\"></span></fieldset>\
         <p><button type=\"submit\">Add endpoint</button> \
         <span id=\"add-error\" class=\"field-error\" role=\"alert\"></span></p></form>\
         <div id=\"new-secret\" role=\"status\" hidden></div></section>",
    );
    s
}

/// The operator view: what needs attention across tenants.
fn operator(state: &ApiState) -> String {
    let live = state.inner.dispatcher.live().snapshot();
    let mut open: Vec<(String, String)> = state
        .inner
        .dispatcher
        .breaker()
        .not_closed()
        .into_iter()
        .map(|(id, _)| {
            let tenant = live
                .endpoint(&id)
                .map_or("?".to_string(), |e| e.tenant.to_string());
            (tenant, id.to_string())
        })
        .collect();
    open.sort();
    let mut s = format!(
        "<section aria-labelledby=\"circuits-h\"><h2 id=\"circuits-h\">Open circuits</h2><p>{} endpoints, {} with an open circuit.</p>",
        live.len(),
        open.len()
    );
    if !open.is_empty() {
        s.push_str("<ul id=\"open-circuits\">");
        for (tenant, id) in open {
            let _ = write!(s, "<li>{} — <code>{}</code></li>", esc(&tenant), esc(&id));
        }
        s.push_str("</ul>");
    }
    s.push_str("</section>");
    s
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
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
