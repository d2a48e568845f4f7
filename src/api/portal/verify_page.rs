//! How a receiver verifies an endpoint's deliveries: the scheme in a few sentences, then a
//! small program per language, ready to run. The programs are the files under `snippets/`,
//! embedded in the binary; the integration tests run those same files against real
//! deliveries, so what the page shows is known to work.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::page::{document, esc, head, html, tenant_endpoint, SIGN_OUT};
use crate::api::state::ApiState;
use crate::secure::sign::Scheme;

/// One language's receiver: its heading, how to run it, and its source.
struct Snippet {
    /// The section's heading id is `{key}-h`.
    key: &'static str,
    language: &'static str,
    /// The oldest release it runs on.
    needs: &'static str,
    /// What it needs besides the language itself.
    install: &'static str,
    file: &'static str,
    run: &'static str,
    source: &'static str,
}

const NOTHING: &str = "nothing to install";

const HMAC_SNIPPETS: [Snippet; 3] = [
    Snippet {
        key: "python",
        language: "Python",
        needs: "Python 3.9",
        install: NOTHING,
        file: "verify.py",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 python3 verify.py",
        source: include_str!("snippets/verify.py"),
    },
    Snippet {
        key: "node",
        language: "Node.js",
        needs: "Node.js 18",
        install: NOTHING,
        file: "verify.js",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 node verify.js",
        source: include_str!("snippets/verify.js"),
    },
    Snippet {
        key: "go",
        language: "Go",
        needs: "Go 1.19",
        install: NOTHING,
        file: "verify.go",
        run: "WEBHOOK_SECRET=whsec_… PORT=8000 go run verify.go",
        source: include_str!("snippets/verify.go"),
    },
];

const ED25519_SNIPPETS: [Snippet; 3] = [
    Snippet {
        key: "python",
        language: "Python",
        needs: "Python 3.9",
        install:
            "and the <code>cryptography</code> package: <code>pip install cryptography</code>, \
                  or Debian's <code>python3-cryptography</code>",
        file: "verify_ed25519.py",
        run: "WEBHOOK_SECRET=whpk_… PORT=8000 python3 verify_ed25519.py",
        source: include_str!("snippets/verify_ed25519.py"),
    },
    Snippet {
        key: "node",
        language: "Node.js",
        needs: "Node.js 18",
        install: NOTHING,
        file: "verify_ed25519.js",
        run: "WEBHOOK_SECRET=whpk_… PORT=8000 node verify_ed25519.js",
        source: include_str!("snippets/verify_ed25519.js"),
    },
    Snippet {
        key: "go",
        language: "Go",
        needs: "Go 1.19",
        install: NOTHING,
        file: "verify_ed25519.go",
        run: "WEBHOOK_SECRET=whpk_… PORT=8000 go run verify_ed25519.go",
        source: include_str!("snippets/verify_ed25519.go"),
    },
];

/// The receivers that verify `scheme`.
fn snippets(scheme: Scheme) -> &'static [Snippet] {
    match scheme {
        Scheme::HmacSha256 => &HMAC_SNIPPETS,
        Scheme::Ed25519 => &ED25519_SNIPPETS,
    }
}

/// What a receiver checks under `scheme`, and where its secret comes from.
fn explanation(scheme: Scheme, read_only: bool) -> String {
    let secret = match (read_only, scheme) {
        (true, _) => {
            "This portal session is read-only, so it shows no secret: ask someone with full \
             access to the portal for it."
        }
        (false, Scheme::HmacSha256) => {
            "The endpoint's page reveals the secret (<code>whsec_…</code>); give it to your \
             receiver as <code>WEBHOOK_SECRET</code>."
        }
        (false, Scheme::Ed25519) => {
            "The endpoint's page reveals the public key (<code>whpk_…</code>); give it to your \
             receiver as <code>WEBHOOK_SECRET</code>. It is not a secret: it only verifies."
        }
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
        Scheme::Ed25519 => format!(
            "<p>Every delivery to this endpoint is signed the Standard Webhooks asymmetric way \
             (v1a): an Ed25519 signature made with a private key that only webhookd holds, which \
             your receiver checks with the endpoint's public key. The Standard Webhooks \
             reference libraries do not verify v1a yet; the programs below do, with their \
             language's Ed25519. Three headers carry what a receiver needs: \
             <code>webhook-id</code>, <code>webhook-timestamp</code> (Unix seconds) and \
             <code>webhook-signature</code>. The signature is the base64 Ed25519 signature of \
             <code>{{webhook-id}}.{{webhook-timestamp}}.{{body}}</code> over the raw body as \
             received; the public key is the base64-decoded part of <code>whpk_…</code>, 32 \
             bytes.</p>\
             <p><code>webhook-signature</code> holds space-separated \
             <code>v1a,&lt;signature&gt;</code> entries: after a rotation of the key pair there \
             are two for a while, the new key's first, and a delivery is authentic when any one \
             of them verifies. Refuse a timestamp more than 5 minutes away from your clock so a \
             captured delivery cannot be replayed.</p><p>{secret}</p>"
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
    let scheme = rec.signing;
    let mut body = format!(
        "<header><h1>Verifying deliveries to <code>{url}</code></h1>\
         <nav><a href=\"/portal/endpoints/{id}\">Back to the endpoint</a> {SIGN_OUT}</nav></header><main>{explained}\
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
             <p>Save it as <code>{file}</code> and run it ({needs} or later, {install}):</p>\
             <pre><code>{run}</code></pre>\
             <pre><code>{source}</code></pre></section>",
            key = s.key,
            language = s.language,
            needs = s.needs,
            install = s.install,
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
