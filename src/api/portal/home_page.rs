//! The portal's first page: the session's tenant's endpoints with their health at a glance,
//! their actions and the form that adds one; or, for an admin's session, the operator view.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::Response;

use super::form::endpoint_form;
use super::page::{document, esc, head, html, SIGN_OUT};
use super::session::Session;
use crate::api::state::ApiState;
use crate::deliver::breaker::State as Circuit;

/// Endpoints on one page; past them a link leads to the next page.
const SHOWN: usize = 250;

/// The session's first page: its tenant's endpoints, or the operator view.
/// `after`: the last endpoint id of the previous page (none: the first page).
pub(super) async fn show(state: &ApiState, session: &Session, after: Option<&str>) -> Response {
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
        "<header><h1>{who}{badge}</h1><nav>{dlq}{SIGN_OUT}</nav></header><main>",
        dlq = if grant.tenant.is_some() {
            "<a href=\"/portal/dlq\">Dead letters</a> "
        } else {
            ""
        }
    );
    match &grant.tenant {
        Some(tenant) => {
            let _ = write!(
                body,
                "<div id=\"tenant\" data-tenant=\"{}\" hidden></div>",
                esc(tenant)
            );
            match endpoints(state, tenant, !grant.read_only, after).await {
                Ok(section) => body.push_str(&section),
                Err(e) => {
                    tracing::warn!(error = %e, "listing endpoints for the portal failed");
                    body.push_str("<p role=\"alert\">The endpoints cannot be read right now.</p>");
                }
            }
            if !grant.read_only {
                body.push_str(&endpoint_form(&state.inner.catalog, "add", None));
                let _ = write!(
                    body,
                    "<template id=\"row-actions\">{}</template>",
                    actions("", false)
                );
            }
        }
        None => body.push_str(&super::operator_page::view(state).await),
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
async fn endpoints(
    state: &ApiState,
    tenant: &str,
    writable: bool,
    after: Option<&str>,
) -> redis::RedisResult<String> {
    let store = &state.inner.store;
    let (page, counted) =
        tokio::join!(store.list(tenant, SHOWN, after), store.count(tenant, after));
    let page = page?;
    // Only the "of N" line needs the count; a Redis user without ZLEXCOUNT still gets the page.
    let (total, before) = counted.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "counting a tenant's endpoints failed");
        (0, 0)
    });
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
                Circuit::Closed if breaker.failing(&rec.id) => {
                    "<span class=\"warn\">failing (retrying)</span>"
                }
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
    pages(
        &mut s,
        total,
        before,
        page.records.len(),
        after.is_some(),
        page.next_cursor.as_deref(),
    );
    s.push_str("</section>");
    Ok(s)
}

/// Where this page is among the tenant's endpoints, with links to the first and next pages
/// when there are more than one page holds.
fn pages(s: &mut String, total: u64, before: u64, shown: usize, paged: bool, next: Option<&str>) {
    if !paged && next.is_none() {
        return;
    }
    s.push_str("<nav aria-label=\"Pages of endpoints\" id=\"endpoint-pages\"><p>");
    if shown == 0 && total > 0 {
        // An `after` past the last id (a stale or hand-made link): say so, not "253–252".
        let _ = write!(s, "No endpoints after this point; {total} in all.");
    } else if total > 0 {
        let _ = write!(
            s,
            "Endpoints {}–{} of {total}.",
            before + 1,
            before + shown as u64
        );
    }
    if paged {
        s.push_str(" <a href=\"/portal/\">First page</a>");
    }
    if let Some(last) = next {
        let _ = write!(
            s,
            " <a href=\"/portal/?after={}\" rel=\"next\">Next {SHOWN}</a>",
            esc(&urlencoding(last))
        );
    }
    s.push_str("</p></nav>");
}

/// An endpoint id in a query string (ids are `[A-Za-z0-9_.-]`, but a config.yaml id may not be).
fn urlencoding(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_page_past_the_last_endpoint_says_so() {
        let mut s = String::new();
        super::pages(&mut s, 252, 252, 0, true, None);
        assert!(
            s.contains("No endpoints after this point; 252 in all."),
            "{s}"
        );
        let mut s = String::new();
        super::pages(&mut s, 252, 250, 2, true, None);
        assert!(s.contains("Endpoints 251–252 of 252."), "{s}");
    }
}
