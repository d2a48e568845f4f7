//! `POST /v1/ingest/{provider}` end to end (SPEC 7): provider payloads become normalized
//! events that reach subscribed endpoints; duplicates are delivered once; bad payloads
//! publish nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api_common::*;
use crate::common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SPEC 2 type of each fixture item, in order, written out from the SPEC's table.
fn expected() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "sendpost",
            "sendpost_events.json",
            vec![
                "outbound.queued",
                "outbound.sent",
                "outbound.delivered",
                "outbound.deferred",
                "outbound.dropped",
                "outbound.bounced",
                "outbound.bounced",
                "outbound.opened",
                "outbound.clicked",
                "outbound.complaint",
                "outbound.unsubscribed",
            ],
        ),
        (
            "cloudmailin",
            "cloudmailin_kinds.json",
            vec![
                "outbound.queued",
                "outbound.sent",
                "outbound.deferred",
                "outbound.deferred",
                "outbound.delivered",
                "outbound.bounced",
                "outbound.bounced",
                "outbound.deferred",
                "outbound.failed",
                "outbound.dropped",
                "outbound.opened",
                "outbound.read",
                "outbound.clicked",
                "outbound.auto_reply",
                "outbound.bounce_reply",
                "outbound.dropped",
                "outbound.dropped",
                "outbound.spam",
                "outbound.bounced",
                "outbound.complaint",
                "outbound.queued",
            ],
        ),
        (
            "cloudmailin",
            "cloudmailin_batch.json",
            vec!["outbound.queued"],
        ),
        (
            "jetemail",
            "jetemail_examples.json",
            vec![
                "outbound.queued",
                "outbound.delivered",
                "outbound.bounced",
                "outbound.rejected",
                "outbound.deferred",
                "outbound.spam",
                "outbound.virus",
                "outbound.dropped",
                "outbound.opened",
                "outbound.clicked",
                "outbound.complaint",
                "inbound.received",
                "inbound.delivered",
                "inbound.spam",
                "inbound.blocked",
            ],
        ),
    ]
}

fn count_types<'a>(types: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in types {
        *m.entry(t.to_string()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_providers_payloads_reach_subscribers_with_normalized_types() {
    let all = Receiver::start(always(200)).await;
    let bounces = Receiver::start(always(200)).await;
    let setup = Setup::new("api_ingest");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    api.create_endpoint("acct_i", json!({"url": all.url("/all"), "filters": ["*"]}))
        .await;
    api.create_endpoint(
        "acct_i",
        json!({"url": bounces.url("/b"), "filters": ["outbound.bounced"]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut want = Vec::new();
    for (provider, file, types) in expected() {
        let mut payload = fixture(file);
        if provider == "jetemail" {
            // The seed's examples share ids; give each its own so none is (rightly) deduplicated.
            for (i, item) in payload.as_array_mut().unwrap().iter_mut().enumerate() {
                item["id"] = json!(format!("evt_je_{i}"));
            }
        }
        let (status, body) = api
            .post(&format!("/v1/ingest/{provider}?tenant=acct_i"), payload)
            .await;
        assert_eq!(status, 202, "{file}: {body}");
        assert_eq!(body["published"], types.len(), "{file}: {body}");
        assert_eq!(body["ids"].as_array().unwrap().len(), types.len());
        want.extend(types);
    }
    let got = all.wait_for(want.len(), WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_types: Vec<String> = all
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "every normalized event reaches `*` once"
    );
    assert_eq!(
        count_types(got_types.iter().map(String::as_str)),
        count_types(want.iter().copied())
    );
    for r in all.received() {
        let body = r.json();
        assert_eq!(
            body["service"],
            body["type"].as_str().unwrap().split('.').next().unwrap()
        );
        assert!(body["data"]["provider_event"] != Value::Null, "{body}");
    }

    let n_bounces = want.iter().filter(|t| **t == "outbound.bounced").count();
    assert_eq!(n_bounces, 6);
    let b = bounces.wait_for(n_bounces, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bounces.count(), n_bounces, "exactly the bounces");
    assert!(b.iter().all(|r| r.json()["type"] == "outbound.bounced"));
    let kinds: Vec<Value> = bounces
        .received()
        .iter()
        .map(|r| r.json()["data"]["bounce_type"].clone())
        .collect();
    assert!(
        kinds.iter().all(|k| k == "hard" || k == "soft"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_payload_ingested_twice_is_delivered_once() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("api_ingest_dup");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    api.create_endpoint("acct_i", json!({"url": rx.url("/d"), "filters": ["*"]}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let payload = fixture("sendpost_events.json");
    let n = payload.as_array().unwrap().len();
    let (status, first) = api
        .post("/v1/ingest/sendpost?tenant=acct_i", payload.clone())
        .await;
    assert_eq!(status, 202);
    rx.wait_for(n, WAIT).await;
    let (status, second) = api.post("/v1/ingest/sendpost?tenant=acct_i", payload).await;
    assert_eq!(status, 202);
    assert_eq!(first["ids"], second["ids"], "ids are stable");
    let last: Vec<String> = redis::cmd("XREVRANGE")
        .arg(setup.stream())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query::<Vec<(String, Vec<String>)>>(&mut redis())
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(wait_acked(&setup.stream(), &last[0], WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), n, "the second ingest delivered nothing again");
    assert!(by_webhook_id(&rx.received()).values().all(|c| *c == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingests_are_refused_and_publish_nothing() {
    let setup = Setup::new("api_ingest_bad");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let stream = setup.stream();
    // Ensure the stream exists so XLEN is meaningful.
    let (status, _) = api
        .post(
            "/v1/ingest/sendpost?tenant=acct_i",
            json!({"event": "CSSent", "messageId": "m0"}),
        )
        .await;
    assert_eq!(status, 202);
    let before = xlen(&stream);
    assert_eq!(before, 1);

    let good = json!({"event": "CSSent", "messageId": "m1"});
    let unknown = json!([good, {"event": "CSTeleported", "messageId": "m2"}]);
    let got = api.post("/v1/ingest/sendpost?tenant=acct_i", unknown).await;
    assert_error(&got, 422, "invalid");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CSTeleported"),
        "{}",
        got.1
    );
    let got = api
        .post(
            "/v1/ingest/cloudmailin?tenant=acct_i",
            json!({"kind": "teleport"}),
        )
        .await;
    assert_error(&got, 422, "invalid");
    assert!(got.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("teleport"));
    let got = api
        .post(
            "/v1/ingest/jetemail?tenant=acct_i",
            json!({"id": "e", "type": "outbound.teleported", "created_at": 1, "data": {}}),
        )
        .await;
    assert_error(&got, 422, "invalid");
    assert!(got.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outbound.teleported"));

    for body in ["{not json", "[1, 2]", "\"text\"", ""] {
        let got = api
            .raw(
                Method::POST,
                "/v1/ingest/sendpost?tenant=acct_i",
                Some(body.into()),
            )
            .await;
        assert_error(&got, 400, "malformed");
    }
    assert_error(
        &api.post(
            "/v1/ingest/sendpost?tenant=acct_i",
            json!({"messageId": "no event"}),
        )
        .await,
        400,
        "malformed",
    );
    assert_error(
        &api.post("/v1/ingest/sendpost", good.clone()).await,
        400,
        "malformed",
    );
    assert_error(
        &api.post("/v1/ingest/sendpost?tenant=bad%20t", good.clone())
            .await,
        400,
        "malformed",
    );
    assert_error(
        &api.post("/v1/ingest/mailchimp?tenant=acct_i", good.clone())
            .await,
        404,
        "not_found",
    );
    assert_eq!(xlen(&stream), before, "nothing was published");
}
