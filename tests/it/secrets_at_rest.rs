//! Endpoint secrets at rest (SPEC 8, `signing`): sealed once a key exists, bound to their
//! endpoint, and readable through a rotation of the encryption key.

use std::time::Duration;

use crate::api_common::*;
use crate::common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const KEY_2: &str = "c2Vjb25kLWtleS1mb3Itd2ViaG9va2QtdGVzdHMhISE=";

/// Starts webhookd on `setup` (its own prefix) with `signing` as given, registers one endpoint
/// for `rx`, and answers (the endpoint id, its secret).
async fn endpoint_under(setup: &Setup, rx: &Receiver) -> (String, String) {
    let _w = Webhookd::start(setup).await;
    let ep = Api::admin(setup)
        .create_endpoint("acct_s", json!({"url": rx.url("/s"), "filters": ["*"]}))
        .await;
    (
        ep["id"].as_str().unwrap().to_string(),
        ep["secret"].as_str().unwrap().to_string(),
    )
}

fn with_signing(setup: &Setup, signing: &str) -> Setup {
    let mut s = Setup::new("sealed_restart").with(signing);
    s.prefix = setup.prefix.clone();
    s
}

async fn delivered_and_verified(setup: &Setup, rx: &Receiver, id: &str, secret: &str) -> bool {
    let before = rx.count();
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope(id, "outbound.sent", "acct_s", json!({}))],
    );
    let got = rx.wait_for(before + 1, WAIT).await;
    got.iter()
        .any(|g| g.header("webhook-id") == id && verify(g, secret))
}

/// A secret stored in the clear (no key configured yet) is sealed as soon as a key is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stored_in_the_clear_are_sealed_once_a_key_is_set() {
    let rx = Receiver::start(always(200)).await;
    let plain = Setup::new("sealed_later").with("signing:\n  encryption_key: \"\"\n");
    let (id, secret) = endpoint_under(&plain, &rx).await;
    assert!(stored_secrets(&plain, &id)[0].starts_with("plain:"));
    let keyed = with_signing(
        &plain,
        &format!("signing:\n  encryption_key: \"{ENCRYPTION_KEY}\"\n"),
    );
    let _w = Webhookd::start(&keyed).await;
    let sealed = wait_until(WAIT, || {
        stored_secrets(&keyed, &id)
            .iter()
            .all(|s| !s.starts_with("plain:") && !s.contains(&secret))
    })
    .await;
    assert!(
        sealed,
        "still in the clear: {:?}",
        stored_secrets(&keyed, &id)
    );
    assert!(delivered_and_verified(&keyed, &rx, "evt_sealed_later", &secret).await);
}

/// The encryption key can be rotated: with the old key under `previous_encryption_keys`,
/// secrets still open, and are sealed again under the new key, so the old one can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_key_can_be_rotated() {
    let rx = Receiver::start(always(200)).await;
    let first = Setup::new("key_rotation");
    let (id, secret) = endpoint_under(&first, &rx).await;
    let before = stored_secrets(&first, &id);
    let rotated = with_signing(
        &first,
        &format!(
            "signing:\n  encryption_key: \"{KEY_2}\"\n  previous_encryption_keys: [\"{ENCRYPTION_KEY}\"]\n"
        ),
    );
    {
        let _w = Webhookd::start(&rotated).await;
        assert!(delivered_and_verified(&rotated, &rx, "evt_rotating", &secret).await);
        let resealed = wait_until(WAIT, || stored_secrets(&rotated, &id) != before).await;
        assert!(resealed, "not sealed again under the new key");
    }
    let only_new = with_signing(
        &first,
        &format!("signing:\n  encryption_key: \"{KEY_2}\"\n"),
    );
    let _w = Webhookd::start(&only_new).await;
    assert!(delivered_and_verified(&only_new, &rx, "evt_rotated", &secret).await);
}

/// A sealed secret is bound to its endpoint: copied into another endpoint's record, it does not
/// open, so that endpoint never signs with another endpoint's secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_secret_copied_to_another_endpoint_does_not_open() {
    let rx_a = Receiver::start(always(200)).await;
    let rx_b = Receiver::start(always(200)).await;
    let setup = Setup::new("sealed_bound");
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let a = api
        .create_endpoint(
            "acct_s",
            json!({"url": rx_a.url("/a"), "filters": ["outbound.sent"]}),
        )
        .await;
    let b = api
        .create_endpoint(
            "acct_s",
            json!({"url": rx_b.url("/b"), "filters": ["outbound.bounced"]}),
        )
        .await;
    let (a_id, a_secret) = (a["id"].as_str().unwrap(), a["secret"].as_str().unwrap());
    let b_id = b["id"].as_str().unwrap();
    // Someone with write access to Redis (but not the key) moves A's sealed secret into B.
    let key = format!("{}{{endpoints}}:all", setup.prefix);
    let mut r = redis();
    let raw_a: String = redis::cmd("HGET")
        .arg(&key)
        .arg(a_id)
        .query(&mut r)
        .unwrap();
    let raw_b: String = redis::cmd("HGET")
        .arg(&key)
        .arg(b_id)
        .query(&mut r)
        .unwrap();
    let rec_a: serde_json::Value = serde_json::from_str(&raw_a).unwrap();
    let mut rec_b: serde_json::Value = serde_json::from_str(&raw_b).unwrap();
    rec_b["secrets"] = rec_a["secrets"].clone();
    rec_b["updated_at"] = json!(rec_b["updated_at"].as_i64().unwrap() + 1);
    let _: () = redis::pipe()
        .hset(&key, b_id, rec_b.to_string())
        .cmd("XADD")
        .arg(format!("{}{{endpoints}}:log", setup.prefix))
        .arg("*")
        .arg("id")
        .arg(b_id)
        .query(&mut r)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_swapped",
            "outbound.bounced",
            "acct_s",
            json!({}),
        )],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let signed_with_a = rx_b.received().iter().any(|g| verify(g, a_secret));
    assert!(
        !signed_with_a,
        "endpoint B signed with endpoint A's secret; log:\n{}",
        w.log_text()
    );
    // Nor is its delivery lost: B is quarantined here, and the delivery waits parked.
    let m = w.metrics().await;
    assert_eq!(metric(&m, "webhookd_endpoints_quarantined"), 1.0, "{m}");
    let parked: u64 = redis::cmd("ZCARD")
        .arg(format!("{}{{retry}}:park:{b_id}", setup.prefix))
        .query(&mut r)
        .unwrap();
    assert_eq!(
        parked, 1,
        "the delivery to the quarantined endpoint must wait, not vanish"
    );
}
