//! The tenant's dead letters in the portal: listed by the script from the API, each with
//! replay and purge, and a replay of everything since a time.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::page::{document, esc, head, html, refused, signed_in, SIGN_OUT};
use crate::api::state::ApiState;

pub(super) async fn show(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    let Some(tenant) = session.grant.tenant.as_deref() else {
        return refused(
            StatusCode::NOT_FOUND,
            "The operator view has no dead-letter page.",
        );
    };
    let controls = if session.grant.read_only {
        ""
    } else {
        "<form id=\"replay-since\"><label for=\"since\">Replay every dead letter since</label> \
         <input id=\"since\" name=\"since\" type=\"datetime-local\" step=\"1\" required> \
         <button type=\"submit\">Replay</button></form>"
    };
    let body = format!(
        "<header><h1>Dead letters of {t}</h1><nav><a href=\"/portal/\">All endpoints</a> {SIGN_OUT}</nav></header><main>\
         <div id=\"tenant\" data-tenant=\"{t}\" data-writable=\"{w}\" hidden></div>\
         <p>Deliveries that ran out of attempts. Replaying one delivers it again with a fresh \
         schedule; purging removes it.</p>{controls}<p id=\"dlq-status\" role=\"status\"></p>\
         <table id=\"dlq\"><thead><tr><th scope=\"col\">Died</th><th scope=\"col\">Event</th>\
         <th scope=\"col\">Endpoint</th><th scope=\"col\">Last outcome</th><th scope=\"col\">Actions</th>\
         </tr></thead><tbody aria-live=\"polite\"><tr class=\"empty\"><td colspan=\"5\">Loading…</td></tr>\
         </tbody></table></main>",
        t = esc(tenant),
        w = !session.grant.read_only,
    );
    html(
        StatusCode::OK,
        document(&format!("Dead letters — {tenant}"), &head(&session), &body),
    )
}
