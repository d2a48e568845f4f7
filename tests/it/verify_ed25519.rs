//! SPEC 4 and 6a for ed25519 endpoints: the portal's Ed25519 receiver programs (Python,
//! Node.js, Go), run as real receivers from the very files the page embeds, verify real
//! deliveries through a key rotation and refuse tampered, replayed and foreign ones; the
//! portal shows an ed25519 endpoint its public key and those programs, and offers the scheme
//! when an endpoint is added (in a real browser). Real webhookd, Redis and interpreters.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use fantoccini::Locator;
use hyper::Method;
use serde_json::json;
use webhookd::support::clock::now_secs;

use crate::api_common::*;
use crate::browser::Browser;
use crate::common::*;
use crate::signing_ed25519::{private_keys, signed_by, v1a_entries, verifying_key};
use crate::verify_snippets::{
    delivered, html_escaped, page, rejected_then_rotated, session_cookie, snippet,
};
use crate::verify_snippets::{Lang, Program, GO, NODE, PYTHON, TENANT, VISIBLE};

const PY_ED25519: Lang = Lang {
    file: "verify_ed25519.py",
    ..PYTHON
};
const NODE_ED25519: Lang = Lang {
    file: "verify_ed25519.js",
    ..NODE
};
const GO_ED25519: Lang = Lang {
    file: "verify_ed25519.go",
    ..GO
};

/// A request carrying `body`, signed over `signed_body` by each of `keys` (`v1a,`) and, with
/// `hmac`, by the test's HMAC secret too (`v1,`); the program's answer.
async fn forged(
    port: u16,
    ts: i64,
    keys: &[&SigningKey],
    hmac: bool,
    signed_body: &str,
    body: &str,
) -> u16 {
    let id = "evt_forged";
    let content = format!("{id}.{ts}.{signed_body}");
    let mut entries: Vec<String> = keys
        .iter()
        .map(|k| format!("v1a,{}", B64.encode(k.sign(content.as_bytes()).to_bytes())))
        .collect();
    if hmac {
        let wh = standardwebhooks::Webhook::new(SECRET).unwrap();
        entries.push(wh.sign(id, ts, signed_body.as_bytes()).unwrap());
    }
    let headers = [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", entries.join(" ")),
    ];
    let url = format!("http://127.0.0.1:{port}/");
    http_request(Method::POST, &url, &headers, Some(body.to_string()))
        .await
        .0
}

/// The promise for one language, from a fresh ed25519 endpoint to a finished key rotation.
async fn verifies_deliveries_through_a_rotation_and_refuses_forgeries(lang: &Lang) {
    let name = format!("{}_ed25519", lang.fallback);
    let setup = Setup::new(&name).with("retry:\n  schedule: [200ms, 500ms, 1s]\n  jitter: 0\n");
    let (setup, _w, api) = admin_api(setup).await;
    let port = free_port();
    let ep = api
        .create_endpoint(
            TENANT,
            json!({"url": format!("http://127.0.0.1:{port}/"), "filters": ["*"], "signing": "ed25519"}),
        )
        .await;
    let old = ep["secret"].as_str().unwrap().to_string();
    let path = ep_path(TENANT, &ep["id"]);
    // The endpoint's own private key, to sign what webhookd would not send.
    let private = private_keys(&setup, ep["id"].as_str().unwrap())
        .await
        .remove(0);
    let scratch = tempfile::tempdir().unwrap();
    let program = Program::start(lang, &old, port, scratch.path()).await;
    tokio::time::sleep(VISIBLE).await;
    delivered(&api, &path, &program, "evt_first").await;

    let body = r#"{"id":"evt_forged","amount":1}"#;
    let tampered = r#"{"id":"evt_forged","amount":1000}"#;
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let now = now_secs();
    let (me, other) = (&[&private][..], &[&stranger][..]);
    let answer = |keys, hmac, ts, sent| forged(port, ts, keys, hmac, body, sent);
    assert_eq!(answer(me, false, now, body).await, 204, "the control");
    assert_eq!(
        answer(me, false, now, tampered).await,
        400,
        "a tampered body"
    );
    assert_eq!(
        answer(me, false, now - 600, body).await,
        400,
        "a replay 10 minutes old"
    );
    assert_eq!(
        answer(other, false, now, body).await,
        400,
        "another key's signature"
    );
    assert_eq!(
        answer(&[], true, now, body).await,
        400,
        "a v1, (HMAC) entry is no v1a one"
    );
    let both = &[&stranger, &private][..];
    assert_eq!(
        answer(both, true, now, body).await,
        204,
        "any v1a entry may verify"
    );
    rejected_then_rotated(&api, &path, program, 4, lang, port, scratch.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_ed25519_program_verifies_deliveries_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&PY_ED25519).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_ed25519_program_verifies_deliveries_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&NODE_ED25519).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_ed25519_program_verifies_deliveries_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&GO_ED25519).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_an_ed25519_endpoint_its_public_key_and_its_own_programs() {
    let (setup, _w, api) = admin_api(Setup::new("verify_ed_page")).await;
    let ed = api
        .create_endpoint(
            "t1",
            json!({"url": "http://127.0.0.1:9/e", "filters": ["*"], "signing": "ed25519"}),
        )
        .await;
    let hmac = api
        .create_endpoint(
            "t1",
            json!({"url": "http://127.0.0.1:9/h", "filters": ["*"]}),
        )
        .await;
    let (ed, hmac) = (ed["id"].as_str().unwrap(), hmac["id"].as_str().unwrap());
    let cookie = session_cookie(&setup, "/v1/tenants/t1/portal-sessions", json!({})).await;
    let shown_code = |file: &str| {
        let source = std::fs::read_to_string(snippet(file)).unwrap();
        format!("<pre><code>{}</code></pre>", html_escaped(&source))
    };

    let (status, shown) = page(&setup, &format!("/portal/endpoints/{ed}/verify"), &cookie).await;
    assert_eq!(status, 200, "{shown}");
    for (file, heading, run) in [
        ("verify_ed25519.py", "python-h", "python3 verify_ed25519.py"),
        ("verify_ed25519.js", "node-h", "node verify_ed25519.js"),
        ("verify_ed25519.go", "go-h", "go run verify_ed25519.go"),
    ] {
        assert!(
            shown.contains(&shown_code(file)),
            "{file}, whole and escaped: {shown}"
        );
        assert!(shown.contains(&format!("<h2 id=\"{heading}\">")), "{shown}");
        assert!(
            shown.contains(&format!("WEBHOOK_SECRET=whpk_… PORT=8000 {run}")),
            "{shown}"
        );
    }
    for said in [
        "<code>v1a,&lt;signature&gt;</code>",
        "reveals the public key",
        "python3-cryptography",
    ] {
        assert!(shown.contains(said), "{said}: {shown}");
    }
    assert!(
        !shown.contains(&shown_code("verify.py")),
        "not the HMAC programs"
    );
    let (_, other) = page(&setup, &format!("/portal/endpoints/{hmac}/verify"), &cookie).await;
    assert!(other.contains(&shown_code("verify.py")) && !other.contains("verify_ed25519"));

    let (_, ed_page) = page(&setup, &format!("/portal/endpoints/{ed}"), &cookie).await;
    assert!(
        ed_page.contains("<h2 id=\"secret-h\">Public key</h2>"),
        "{ed_page}"
    );
    assert!(
        ed_page.contains("(two <code>v1a,</code> signatures"),
        "{ed_page}"
    );
    assert!(
        !ed_page.contains("name=\"signing\""),
        "the scheme is not edited: {ed_page}"
    );
    let (_, hmac_page) = page(&setup, &format!("/portal/endpoints/{hmac}"), &cookie).await;
    assert!(
        hmac_page.contains("<h2 id=\"secret-h\">Signing secret</h2>"),
        "{hmac_page}"
    );
    assert!(
        hmac_page.contains("(two <code>v1,</code> signatures"),
        "{hmac_page}"
    );
    let (_, home) = page(&setup, "/portal/", &cookie).await;
    assert!(home.contains("<legend>Signing scheme</legend>"), "{home}");
}

/// Adding an endpoint with the Ed25519 scheme in the portal: its public key is shown once,
/// then revealed and rotated on its page, and a test event arrives signed by both key pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_endpoint_is_added_in_the_portal_and_its_public_key_revealed_and_rotated() {
    let rx = Receiver::start(always(200)).await;
    let (setup, _w, api) = admin_api(Setup::new("portal_ed25519")).await;
    let b = Browser::open_portal(&setup, "acct_42").await;
    let form = b.element(Locator::Id("add-endpoint")).await;
    let url = form.find(Locator::Id("add-url")).await.unwrap();
    url.send_keys(&rx.url("/p")).await.unwrap();
    for choice in [
        "input[name=filters][value='*']",
        "input[name=signing][value=ed25519]",
    ] {
        form.find(Locator::Css(choice))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let submit = form
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    submit.click().await.unwrap();
    let note = b.text_of("#add-done:not([hidden])").await;
    let (_, list) = api.get("/v1/tenants/acct_42/endpoints").await;
    assert_eq!(list["data"][0]["signing"], "ed25519", "{list}");
    let id = list["data"][0]["id"].as_str().unwrap();
    let secret = format!("/v1/tenants/acct_42/endpoints/{id}/secret");
    let first = api.get(&secret).await.1["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first.starts_with("whpk_") && note.contains(&first),
        "{note}"
    );
    assert!(note.contains("public key"), "{note}");

    let page = format!("{}/portal/endpoints/{id}", setup.api());
    b.client.goto(&page).await.unwrap();
    assert_eq!(b.text_of("#secret-h").await, "Public key");
    b.click(Locator::Id("reveal-secret")).await;
    assert_eq!(b.text_of("#secret:not([hidden])").await, first);
    b.click(Locator::Id("rotate-secret")).await;
    let status = b.text_of("#secret-status:not(:empty)").await;
    assert!(status.contains("new key pair"), "{status}");
    let second = b.text_of("#secret").await;
    assert!(second.starts_with("whpk_") && second != first, "{second}");

    b.click(Locator::Id("send-test")).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the test event arrived");
    let sigs = v1a_entries(&got[0]);
    assert_eq!(sigs.len(), 2, "{:?}", got[0].headers);
    assert!(
        signed_by(&got[0], &verifying_key(&second), &sigs[0]),
        "the new key pair's"
    );
    assert!(
        signed_by(&got[0], &verifying_key(&first), &sigs[1]),
        "and the old one's"
    );
}
