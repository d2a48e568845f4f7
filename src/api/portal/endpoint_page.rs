//! One endpoint's page in the portal: its last 24 hours, its signing secret or public key
//! (revealed on demand, rotated with the overlap explained), a test send and its recent
//! attempts. Another tenant's endpoint is "not found", as in the API.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::form::endpoint_form;
use super::page::{document, esc, head, html, tenant_endpoint, SIGN_OUT};
use super::session::Session;
use crate::api::state::ApiState;
use crate::event::catalog::Catalog;
use crate::event::filter::Pattern;
use crate::secure::sign::Scheme;

pub(super) async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let inner = &state.inner;
    let (session, rec) = match tenant_endpoint(&state, &headers, &id).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let tenant = rec.tenant.clone();
    let overlap = spoken(inner.rotation_overlap_ms);
    let mut body =
        format!(
        "<header><h1><code>{url}</code></h1><nav><a href=\"/portal/endpoints/{id}/verify\">How to verify signatures</a> \
         <a href=\"/portal/\">All endpoints</a> {SIGN_OUT}</nav></header><main>\
         <div id=\"tenant\" data-tenant=\"{tenant}\" data-endpoint=\"{id}\" hidden></div>\
         <p id=\"summary\">{id} — events: {filters} — signed with {signing}{ordering}{disabled}</p>",
        url = esc(&rec.url),
        tenant = esc(&tenant),
        id = esc(&rec.id),
        filters = esc(&rec.filters.join(", ")),
        signing = rec.signing,
        ordering = rec
            .ordering_key
            .as_deref()
            .map(|k| format!(" — ordered by {}", esc(k)))
            .unwrap_or_default(),
        disabled = if rec.disabled { " — <span class=\"bad\">disabled</span>" } else { "" },
    );
    match crate::deliver::stats::last_day(
        &inner.conn,
        &inner.keys,
        &rec.id,
        crate::support::clock::now_ms(),
    )
    .await
    {
        Ok(hours) => body.push_str(&super::plot::last_day(&hours)),
        Err(e) => {
            tracing::warn!(error = %e, "reading an endpoint's stats for the portal failed");
            body.push_str("<p role=\"alert\">The last 24 hours cannot be read right now.</p>");
        }
    }
    secret_section(&mut body, &session, &overlap, rec.signing);
    if !session.grant.read_only {
        test_section(&mut body, &inner.catalog, &rec.filters);
    }
    body.push_str(ATTEMPTS);
    match (session.grant.read_only, rec.from_config) {
        (true, _) => {}
        (false, true) => body.push_str(
            "<section aria-labelledby=\"edit-h\"><h2 id=\"edit-h\">Edit this endpoint</h2>\
             <p>This endpoint is declared in the operator's configuration and is changed there.</p></section>",
        ),
        (false, false) => body.push_str(&endpoint_form(&inner.catalog, "edit", Some(&rec))),
    }
    body.push_str("</main>");
    html(
        StatusCode::OK,
        document(&format!("Webhooks — {}", rec.id), &head(&session), &body),
    )
}

/// Recent attempts, filled and kept fresh by the script from the API (newest first).
const ATTEMPTS: &str = "<section aria-labelledby=\"attempts-h\"><h2 id=\"attempts-h\">Recent attempts</h2>\
    <p><label for=\"attempt-filter\">Show</label> <select id=\"attempt-filter\">\
    <option value=\"all\">all attempts</option><option value=\"ok\">succeeded</option>\
    <option value=\"failed\">failed</option></select></p>\
    <table id=\"attempts\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Event</th>\
    <th scope=\"col\">Outcome</th><th scope=\"col\">Latency</th><th scope=\"col\">Response</th></tr></thead>\
    <tbody aria-live=\"polite\"><tr class=\"empty\"><td colspan=\"5\">No attempts yet.</td></tr></tbody></table></section>";

/// The signing secret (an ed25519 endpoint's public key): reveal and rotate, unless the
/// session only looks.
fn secret_section(body: &mut String, session: &Session, overlap: &str, signing: Scheme) {
    let (heading, key, entry) = match signing {
        Scheme::HmacSha256 => ("Signing secret", "secret", "v1,"),
        Scheme::Ed25519 => ("Public key", "key pair", "v1a,"),
    };
    let _ = write!(
        body,
        "<section aria-labelledby=\"secret-h\" data-signing=\"{signing}\">\
         <h2 id=\"secret-h\">{heading}</h2>"
    );
    if signing == Scheme::Ed25519 {
        body.push_str(
            "<p>Deliveries are signed with Ed25519 (<code>v1a,</code> signatures): webhookd \
             keeps the private key and never shows it; your receiver verifies with this public \
             key (<code>whpk_…</code>), which cannot sign.</p>",
        );
    }
    if session.grant.read_only {
        body.push_str("<p>This portal session is read-only: it shows no secret.</p></section>");
        return;
    }
    let _ = write!(
        body,
        "<p><button type=\"button\" id=\"reveal-secret\">Reveal</button> \
         <code id=\"secret\" hidden></code></p>\
         <p><button type=\"button\" id=\"rotate-secret\">Rotate</button> \
         After a rotation the previous {key} keeps signing beside the new one for {overlap} \
         (two <code>{entry}</code> signatures in <code>webhook-signature</code>, the new one \
         first), so your receiver can switch to the new {shown} without missing a delivery.</p>\
         <p id=\"secret-status\" role=\"status\"></p></section>",
        shown = if signing == Scheme::Ed25519 {
            "public key"
        } else {
            "secret"
        },
    );
}

/// A test send of a chosen type: `webhookd.test`, or any catalog type the endpoint's filters
/// match, with made-up data (the API's test route).
fn test_section(body: &mut String, catalog: &Catalog, filters: &[String]) {
    let patterns: Vec<Pattern> = filters
        .iter()
        .filter_map(|f| Pattern::parse(f).ok())
        .collect();
    body.push_str(
        "<section aria-labelledby=\"test-h\"><h2 id=\"test-h\">Send a test event</h2>\
         <form id=\"test-form\"><p><label for=\"test-type\">Event type</label> \
         <select id=\"test-type\" name=\"type\"><option value=\"webhookd.test\">webhookd.test</option>",
    );
    for t in catalog.types() {
        if patterns.iter().any(|p| p.matches(&t.event_type)) {
            let _ = write!(
                body,
                "<option value=\"{0}\">{0}</option>",
                esc(&t.event_type)
            );
        }
    }
    body.push_str(
        "</select> <button type=\"submit\" id=\"send-test\">Send a test event</button></p>\
         <p>A signed delivery with made-up data and <code>\"test\": true</code>, sent once now \
         (not retried, not counted in the attempts).</p></form>\
         <p id=\"test-result\" role=\"status\"></p></section>",
    );
}

/// A duration as people say it: `24 hours`, `90 minutes`, `45 seconds`.
fn spoken(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_spoken() {
        assert_eq!(super::spoken(86_400_000), "24 hours");
        assert_eq!(super::spoken(5_400_000), "90 minutes");
        assert_eq!(super::spoken(45_000), "45 seconds");
    }
}
