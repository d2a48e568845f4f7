//! Ed25519 signing (SPEC 4, `signing: "ed25519"`, Standard Webhooks `v1a`): every request to
//! such an endpoint verifies with `ed25519-dalek`, an implementation independent of the signer
//! (ring); a rotated key pair signs beside the old one for the overlap; the scheme is chosen at
//! create and never changes. What the API shows of the keys: `ed25519_secrets.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};

use crate::api_common::*;
use crate::common::*;

pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// An endpoint change reaches the dispatcher within 1 s (SPEC 6).
pub(crate) const VISIBLE: Duration = Duration::from_millis(1500);
pub(crate) const TENANT: &str = "acct_ed";

/// The key a `whpk_` public key holds, as the independent verifier takes it.
pub(crate) fn verifying_key(whpk: &str) -> VerifyingKey {
    let raw = B64
        .decode(whpk.strip_prefix("whpk_").expect("a whpk_ key"))
        .unwrap();
    VerifyingKey::from_bytes(&raw.try_into().expect("32 bytes")).unwrap()
}

/// The signatures of a request's `webhook-signature`, which must all be `v1a,` entries.
pub(crate) fn v1a_entries(r: &Received) -> Vec<Signature> {
    r.header("webhook-signature")
        .split(' ')
        .map(|entry| {
            let b64 = entry.strip_prefix("v1a,").unwrap_or_else(|| {
                panic!(
                    "not a v1a entry: {entry:?} in {}",
                    r.header("webhook-signature")
                )
            });
            Signature::from_slice(&B64.decode(b64).unwrap()).unwrap()
        })
        .collect()
}

/// Whether `sig` is `key`'s signature of the request's `{webhook-id}.{webhook-timestamp}.{body}`.
pub(crate) fn signed_by(r: &Received, key: &VerifyingKey, sig: &Signature) -> bool {
    let mut content = format!(
        "{}.{}.",
        r.header("webhook-id"),
        r.header("webhook-timestamp")
    )
    .into_bytes();
    content.extend_from_slice(&r.body);
    key.verify_strict(&content, sig).is_ok()
}

/// The private keys endpoint `id` keeps, newest first, opened with the test's encryption key:
/// what must never show anywhere else.
pub(crate) async fn private_keys(setup: &Setup, id: &str) -> Vec<SigningKey> {
    let (_, sealer) = setup.registry().await;
    stored_secrets(setup, id)
        .iter()
        .map(|sealed| {
            assert!(sealed.starts_with("v2:"), "sealed at rest: {sealed}");
            let kept = sealer.open(sealed, id).unwrap();
            let seed = B64.decode(kept.strip_prefix("whsk_").unwrap()).unwrap();
            SigningKey::from_bytes(&seed.try_into().unwrap())
        })
        .collect()
}

/// An ed25519 endpoint of the tenant at `url`, taking every event.
pub(crate) async fn ed25519_endpoint(api: &Api, url: &str) -> Value {
    let ep = api
        .create_endpoint(
            TENANT,
            json!({"url": url, "filters": ["*"], "signing": "ed25519"}),
        )
        .await;
    assert_eq!(ep["signing"], "ed25519", "{ep}");
    ep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_to_an_ed25519_endpoint_verifies_with_an_independent_implementation() {
    let rx = Receiver::start(always(200)).await;
    let (_setup, _w, api) = admin_api(Setup::new("ed_sign")).await;
    let ep = ed25519_endpoint(&api, &rx.url("/ed")).await;
    let key = verifying_key(ep["secret"].as_str().unwrap());
    let hmac = api
        .create_endpoint(TENANT, json!({"url": rx.url("/hmac"), "filters": ["*"]}))
        .await;
    tokio::time::sleep(VISIBLE).await;
    let ids: BTreeSet<String> = (0..6).map(|i| format!("evt_ed_{i}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let data = json!({"uid": format!("m-{n}"), "s": "é\"\\", "n": [n, 2.5, null]});
        let (status, body) = api
            .post(
                "/v1/events",
                json!({"id": id, "type": "outbound.bounced", "tenant": TENANT,
                       "created_at": 1704825600, "data": data}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let got = rx.wait_for(2 * ids.len(), WAIT).await;
    let (ed, other): (Vec<_>, Vec<_>) = got.into_iter().partition(|r| r.path == "/ed");
    let seen: BTreeSet<String> = ed.iter().map(|r| r.header("webhook-id").into()).collect();
    assert_eq!(seen, ids, "every event reached the ed25519 endpoint once");
    for r in &ed {
        let sigs = v1a_entries(r);
        assert_eq!(sigs.len(), 1, "one key, one entry");
        assert!(signed_by(r, &key, &sigs[0]), "{:?}", r.headers);
        let mut tampered = r.clone();
        tampered.body = r.body.slice(1..);
        assert!(!signed_by(&tampered, &key, &sigs[0]), "the check is real");
    }
    // The other endpoint of the same tenant keeps its own scheme.
    assert_eq!(other.len(), ids.len());
    for r in &other {
        assert!(r.header("webhook-signature").starts_with("v1,"));
        assert!(verify(r, hmac["secret"].as_str().unwrap()));
    }

    // The test send signs the same way.
    let path = ep_path(TENANT, &ep["id"]);
    let (status, sent) = api.post(&format!("{path}/test"), json!({})).await;
    assert_eq!((status, &sent["status"]), (200, &json!(200)), "{sent}");
    let test = rx
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id") == sent["event_id"]);
    let test = test.expect("the test event arrived");
    assert!(signed_by(&test, &key, &v1a_entries(&test)[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_pair_signs_beside_the_old_one_for_the_overlap() {
    let rx = Receiver::start(always(200)).await;
    let overlap = Duration::from_secs(8);
    let signing =
        format!("signing:\n  encryption_key: \"{ENCRYPTION_KEY}\"\n  rotation_overlap: 8s\n");
    let (_setup, _w, api) = admin_api(Setup::new("ed_rotate").with(&signing)).await;
    let ep = ed25519_endpoint(&api, &rx.url("/r")).await;
    let path = ep_path(TENANT, &ep["id"]);
    let old = ep["secret"].as_str().unwrap().to_string();

    assert_error(
        &api.post(&format!("{path}/secret/rotate"), json!({"secret": SECRET}))
            .await,
        422,
        "invalid",
    );
    let (status, rotated) = api.post(&format!("{path}/secret/rotate"), json!({})).await;
    let rotated_at = Instant::now();
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whpk_") && new != old, "{new}");
    assert_eq!(rotated.as_object().unwrap().len(), 1, "{rotated}");
    let (_, current) = api.get(&format!("{path}/secret")).await;
    assert_eq!(current, json!({"secret": new}));

    tokio::time::sleep(VISIBLE).await;
    api.publish_event("evt_overlap", TENANT).await;
    let got = rx.wait_for(1, WAIT).await;
    assert!(
        rotated_at.elapsed() < overlap,
        "delivered within the overlap"
    );
    let sigs = v1a_entries(&got[0]);
    assert_eq!(
        sigs.len(),
        2,
        "two entries during the overlap: {:?}",
        got[0].headers
    );
    let (new_key, old_key) = (verifying_key(&new), verifying_key(&old));
    assert!(
        signed_by(&got[0], &new_key, &sigs[0]),
        "the new key's entry first"
    );
    assert!(signed_by(&got[0], &old_key, &sigs[1]), "then the old key's");
    assert!(!signed_by(&got[0], &old_key, &sigs[0]) && !signed_by(&got[0], &new_key, &sigs[1]));

    // Once the overlap is over, the new key signs alone.
    tokio::time::sleep((overlap + Duration::from_secs(1)).saturating_sub(rotated_at.elapsed()))
        .await;
    api.publish_event("evt_after", TENANT).await;
    let got = rx.wait_for(2, WAIT).await;
    let after = got
        .iter()
        .find(|r| r.header("webhook-id") == "evt_after")
        .unwrap();
    let sigs = v1a_entries(after);
    assert_eq!(sigs.len(), 1, "{:?}", after.headers);
    assert!(signed_by(after, &new_key, &sigs[0]));
}

/// `signing` as the OpenAPI document describes `schema` (following a `$ref`).
fn signing_schema(doc: &Value, schema: &str) -> Value {
    let prop = &doc["components"]["schemas"][schema]["properties"]["signing"];
    let nested = ["oneOf", "allOf", "anyOf"]
        .into_iter()
        .filter_map(|k| prop[k].as_array())
        .flatten();
    let target = std::iter::once(prop)
        .chain(nested)
        .find_map(|p| p["$ref"].as_str())
        .map(|r| &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")]);
    target.unwrap_or(prop).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_is_chosen_at_create_and_cannot_change() {
    let setup =
        Setup::new("ed_scheme").endpoint("ep_static", TENANT, "http://127.0.0.1:9/s", &["*"]);
    let (_setup, _w, api) = admin_api(setup).await;
    let url = "http://127.0.0.1:9/hook";
    let hmac = api
        .create_endpoint(TENANT, json!({"url": url, "filters": ["*"]}))
        .await;
    assert_eq!(hmac["signing"], "hmac-sha256", "the default: {hmac}");
    assert!(hmac["secret"].as_str().unwrap().starts_with("whsec_"));
    let ed = ed25519_endpoint(&api, url).await;
    assert!(ed["secret"].as_str().unwrap().starts_with("whpk_"), "{ed}");
    let endpoints = format!("/v1/tenants/{TENANT}/endpoints");
    for (body, names) in [
        (
            json!({"url": url, "filters": ["*"], "signing": "ed25519", "secret": SECRET}),
            "`secret`",
        ),
        (
            json!({"url": url, "filters": ["*"], "signing": "rsa"}),
            "`signing`",
        ),
    ] {
        let refused = api.post(&endpoints, body).await;
        assert_error(&refused, 422, "invalid");
        assert!(refused.1.to_string().contains(names), "{}", refused.1);
    }

    let (ed_path, hmac_path) = (ep_path(TENANT, &ed["id"]), ep_path(TENANT, &hmac["id"]));
    for (path, other) in [(&ed_path, "hmac-sha256"), (&hmac_path, "ed25519")] {
        let refused = api
            .patch(path, json!({"signing": other, "description": "x"}))
            .await;
        assert_error(&refused, 422, "invalid");
        assert!(refused.1.to_string().contains("`signing`"), "{}", refused.1);
    }
    let (status, same) = api
        .patch(&ed_path, json!({"signing": "ed25519", "description": "x"}))
        .await;
    assert_eq!(
        (status, &same["signing"], &same["description"]),
        (200, &json!("ed25519"), &json!("x"))
    );
    assert_eq!(
        api.get(&hmac_path).await.1["description"],
        "",
        "the refused change left no trace"
    );
    let (_, list) = api.get(&endpoints).await;
    let schemes: BTreeSet<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["signing"].as_str().unwrap()))
        .collect();
    let ids = |v: &Value| v["id"].as_str().unwrap().to_string();
    let (ed_id, hmac_id) = (ids(&ed), ids(&hmac));
    assert_eq!(
        schemes,
        BTreeSet::from([
            (ed_id.as_str(), "ed25519"),
            (hmac_id.as_str(), "hmac-sha256"),
            ("ep_static", "hmac-sha256"),
        ]),
        "static endpoints from config.yaml sign with HMAC"
    );

    let (_, doc) = api.anonymous().get("/v1/openapi.json").await;
    for schema in ["EndpointOut", "CreateEndpoint", "PatchEndpoint"] {
        let signing = signing_schema(&doc, schema);
        assert_eq!(
            signing["enum"],
            json!(["hmac-sha256", "ed25519"]),
            "{schema}: {signing}"
        );
    }
}
