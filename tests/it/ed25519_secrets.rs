//! The private key of an ed25519 endpoint (SPEC 4, 6): the public key is the only key material
//! the API ever shows for it (create, get, list, `GET …/secret`, rotate, test), and the private
//! key is never in the log, even at debug level, nor in clear in Redis.

use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::api_common::*;
use crate::api_security::dump_redis;
use crate::common::*;
use crate::signing_ed25519::{ed25519_endpoint, private_keys, verifying_key};
use crate::signing_ed25519::{TENANT, VISIBLE, WAIT};

/// Every string anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

/// Asserts `answer` has only the documented fields, and nothing in it is, holds or decodes to
/// any of the private keys.
fn shows_no_private_key(what: &str, answer: &Value, fields: &[&str], keys: &[SigningKey]) {
    let object = answer
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    for field in object.keys() {
        assert!(
            fields.contains(&field.as_str()),
            "{what}: undocumented `{field}` in {answer}"
        );
    }
    let mut found = Vec::new();
    strings(answer, &mut found);
    for s in &found {
        let bare = s.split_once('_').map_or(s.as_str(), |(_, b)| b);
        let decoded = B64.decode(bare).unwrap_or_default();
        for key in keys {
            let seed = key.to_bytes();
            assert!(
                !decoded.windows(seed.len()).any(|w| w == seed)
                    && !needles(key).iter().any(|n| s.contains(n)),
                "{what} shows a private key"
            );
        }
    }
}

/// The private key's seed as text in the forms it could take.
fn needles(key: &SigningKey) -> Vec<String> {
    let seed = key.to_bytes();
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        B64.encode(seed),
        STANDARD_NO_PAD.encode(seed),
        URL_SAFE_NO_PAD.encode(seed),
        hex.clone(),
        hex.to_uppercase(),
        B64.encode(key.to_keypair_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_public_key_is_shown_and_the_private_key_is_never_logged_or_stored_in_clear() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("ed_secrets");
    let w = Webhookd::start_with_env(&setup, &[("RUST_LOG", "debug")]).await;
    let admin = Api::admin(&setup);
    let tenant = admin.as_token(&admin.new_token(TENANT).await);
    let created = ed25519_endpoint(&tenant, &rx.url("/k")).await;
    let path = ep_path(TENANT, &created["id"]);
    let id = created["id"].as_str().unwrap();
    let first = private_keys(&setup, id).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        verifying_key(created["secret"].as_str().unwrap()),
        first[0].verifying_key(),
        "the public key shown is the kept key's"
    );
    let (_, rotated) = tenant
        .post(&format!("{path}/secret/rotate"), json!({}))
        .await;
    tokio::time::sleep(VISIBLE).await;
    let (status, _) = tenant.publish_event("evt_k", TENANT).await;
    assert_eq!(status, 202);
    let (_, tested) = tenant.post(&format!("{path}/test"), json!({})).await;
    assert_eq!(
        rx.wait_for(2, WAIT).await.len(),
        2,
        "the delivery and the test arrived"
    );
    let keys = private_keys(&setup, id).await;
    assert_eq!(
        keys.len(),
        2,
        "the new key pair and the old one, overlapping"
    );
    assert_eq!(
        verifying_key(rotated["secret"].as_str().unwrap()),
        keys[0].verifying_key()
    );
    assert_eq!(keys[1].to_bytes(), first[0].to_bytes());

    // The documented shapes (SPEC 6); `ordering_key` may come with another feature.
    let endpoint = [
        "id",
        "tenant",
        "url",
        "filters",
        "description",
        "headers",
        "rate_limit",
        "disabled",
        "disabled_reason",
        "metadata",
        "created_at",
        "updated_at",
        "signing",
        "ordering_key",
    ];
    let created_fields: Vec<&str> = endpoint.iter().copied().chain(["secret"]).collect();
    let (_, got) = tenant.get(&path).await;
    let (_, list) = tenant.get(&format!("/v1/tenants/{TENANT}/endpoints")).await;
    let (_, shown) = tenant.get(&format!("{path}/secret")).await;
    assert_eq!(shown, rotated, "GET …/secret shows the current public key");
    let answers = [
        ("create", &created, &created_fields[..]),
        ("get", &got, &endpoint[..]),
        ("list", &list["data"][0], &endpoint[..]),
        ("GET secret", &shown, &["secret"][..]),
        ("rotate", &rotated, &["secret"][..]),
        (
            "test",
            &tested,
            &["event_id", "status", "latency_ms", "error", "response"][..],
        ),
    ];
    for (what, answer, fields) in answers {
        shows_no_private_key(what, answer, fields, &keys);
    }
    assert_eq!(list.as_object().unwrap().len(), 2, "{list}");

    let log = w.log_text();
    assert!(
        log.contains("DEBUG") || log.contains("\"debug\""),
        "debug logging is on"
    );
    let values = dump_redis(&setup.prefix);
    for key in &keys {
        for n in needles(key) {
            assert!(!log.contains(&n), "the log shows a private key");
            for (k, v) in &values {
                assert!(
                    !v.contains(&n) && !k.contains(&n),
                    "{k} holds a private key in clear"
                );
            }
        }
    }
    assert!(!log.contains("whsk_"), "no private key in any form");
    assert!(values.iter().all(|(_, v)| !v.contains("whsk_")));
}
