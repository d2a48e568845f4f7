//! How a receiver verifies an endpoint's deliveries: the scheme in a few sentences, then a
//! small program per language, ready to run. The programs are the files under `snippets/`,
//! embedded in the binary; the integration tests run those same files against real
//! deliveries, so what the page shows is known to work.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::page::{document, esc, head, html, tenant_endpoint};
use crate::api::state::ApiState;

/// How an endpoint's deliveries are signed (SPEC 4). Ed25519 (`v1a,`) gets its own variant,
/// explanation and programs once endpoints carry `signing`.
#[derive(Clone, Copy)]
enum Scheme {
    HmacSha256,
}

/// One language's receiver: its heading, how to run it, and its source.
struct Snippet {
    /// The section's heading id is `{key}-h`.
    key: &'static str,
    language: &'static str,
    /// The oldest release it runs on.
    needs: &'static str,
    file: &'static str,
    run: &'static str,
    source: &'static str,
}

const HMAC_SNIPPETS: [Snippet; 3] = [
    Snippet {
        key: "python",
        language: "Python",
        needs: "Python 3.9",
        file: "verify.py",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 python3 verify.py",
        source: include_str!("snippets/verify.py"),
    },
    Snippet {
        key: "node",
        language: "Node.js",
        needs: "Node.js 18",
        file: "verify.js",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 node verify.js",
        source: include_str!("snippets/verify.js"),
    },
    Snippet {
        key: "go",
        language: "Go",
        needs: "Go 1.19",
        file: "verify.go",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 go run verify.go",
        source: include_str!("snippets/verify.go"),
    },
];

/// The receivers that verify `scheme`.
fn snippets(scheme: Scheme) -> &'static [Snippet] {
    match scheme {
        Scheme::HmacSha256 => &HMAC_SNIPPETS,
    }
}

/// What a receiver checks under `scheme`, and where its secret comes from.
fn explanation(scheme: Scheme, read_only: bool) -> String {
    let secret = if read_only {
        "This portal session is read-only, so it shows no secret: ask someone with full access \
         to the portal for it."
    } else {
        "The endpoint's page reveals the secret (<code>whsec_…</code>); give it to your receiver \
         as <code>WEBHOOK_SECRET</code>."
    };
    match scheme {
        Scheme::HmacSha256 => format!(
            "<p>Every delivery is signed the Standard Webhooks way (v1), so any Standard \
             Webhooks library verifies it; the programs below do the same with nothing but their \
             language's standard library. Three headers carry what a receiver needs: \
             <code>webhook-id</code>, <code>webhook-timestamp</code> (Unix seconds) and \
             <code>webhook-signature</code>. The signature is the base64 HMAC-SHA256 of \
             <code>{{webhook-id}}.{{webhook-timestamp}}.{{body}}</code> over the raw body as \
             received, keyed with the base64-decoded part of the secret after \
             <code>whsec_</code>.</p>\
             <p><code>webhook-signature</code> holds space-separated \
             <code>v1,&lt;signature&gt;</code> entries: after a rotation of the secret there are \
             two for a while, one per secret, and a delivery is authentic when any one of them \
             matches. Compare in constant time, and refuse a timestamp more than 5 minutes away \
             from your clock so a captured delivery cannot be replayed.</p><p>{secret}</p>"
        ),
    }
}

pub(super) async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, rec) = match tenant_endpoint(&state, &headers, &id).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    // Every endpoint signs with HMAC-SHA256 until the record says otherwise.
    let scheme = Scheme::HmacSha256;
    let mut body = format!(
        "<header><h1>Verifying deliveries to <code>{url}</code></h1>\
         <a href=\"/portal/endpoints/{id}\">Back to the endpoint</a></header><main>{explained}\
         <p>Each program answers 204 to a verified delivery and 400 to anything else, and \
         prints a line for each.</p>",
        url = esc(&rec.url),
        id = esc(&rec.id),
        explained = explanation(scheme, session.grant.read_only),
    );
    for s in snippets(scheme) {
        let _ = write!(
            body,
            "<section aria-labelledby=\"{key}-h\"><h2 id=\"{key}-h\">{language}</h2>\
             <p>Save it as <code>{file}</code> and run it ({needs} or later, nothing to \
             install):</p><pre><code>{run}</code></pre>\
             <pre><code>{source}</code></pre></section>",
            key = s.key,
            language = s.language,
            needs = s.needs,
            file = s.file,
            run = esc(s.run),
            source = esc(s.source),
        );
    }
    body.push_str("</main>");
    html(
        StatusCode::OK,
        document(
            &format!("Verifying signatures — {}", rec.id),
            &head(&session),
            &body,
        ),
    )
}
