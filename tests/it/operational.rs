//! SPEC 2, operational webhooks (issue 15): webhookd tells a tenant about its endpoints — a
//! 410's disable, an automatic disable, the tenant's own disable and enable, a circuit opening
//! and closing, a dead letter — with exactly one `webhookd.*` event each, delivered signed to
//! the tenant's endpoints that subscribe to `webhookd.*`, never to a `*` subscriber, never to
//! another tenant; and a producer cannot publish one.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api_common::*;
use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// Operational events a receiver got, by (type, endpoint id) → how many and the last data.
fn notices(rx: &Receiver) -> HashMap<(String, String), (usize, Value)> {
    let mut out: HashMap<(String, String), (usize, Value)> = HashMap::new();
    for r in rx.received() {
        let body = r.json();
        let ty = body["type"].as_str().unwrap_or("").to_string();
        if !ty.starts_with("webhookd.") {
            continue;
        }
        let ep = body["data"]["endpoint_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let e = out.entry((ty, ep)).or_insert((0, Value::Null));
        e.0 += 1;
        e.1 = body["data"].clone();
    }
    out
}

fn key(ty: &str, ep: &str) -> (String, String) {
    (ty.to_string(), ep.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_to_an_endpoint_is_told_once_to_the_tenants_subscriber_and_no_one_else() {
    let ops = Receiver::start(always(200)).await;
    let star = Receiver::start(always(200)).await;
    let other = Receiver::start(always(200)).await;
    let gone = Receiver::start(always(410)).await;
    let dead = Receiver::start(always(500)).await;
    let flaky = Receiver::start(first_then_ok(4, 503)).await;
    let plain = Receiver::start(always(200)).await;
    let setup = Setup::new("operational")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 4\n  breaker_probe: 300ms\n")
        .with("retry:\n  schedule: [100ms, 2s]\n  jitter: 0\n")
        .endpoint("ep_ops", "acme", &ops.url("/"), &["webhookd.*"])
        .endpoint("ep_star", "acme", &star.url("/"), &["*"])
        .endpoint("ep_other_ops", "other", &other.url("/"), &["webhookd.*"])
        .endpoint("ep_gone", "acme", &gone.url("/"), &["outbound.sent"])
        .endpoint("ep_dead", "acme", &dead.url("/"), &["outbound.sent"])
        .endpoint("ep_flaky", "acme", &flaky.url("/"), &["outbound.delivered"]);
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);

    // A producer cannot speak for webhookd.
    let (status, err) = api
        .post(
            "/v1/events",
            json!({"id": "evt_forged", "type": "webhookd.endpoint.enabled", "tenant": "acme",
                   "created_at": 1, "data": {"endpoint_id": "ep_star"}}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let mut r = redis();
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_forged_xadd",
            "webhookd.endpoint.enabled",
            "acme",
            json!({"endpoint_id": "ep_star"}),
        )],
    );

    // 410 (disabled: gone, and its dead letter) and a delivery that dies after three attempts.
    assert_eq!(api.publish_event("evt_1", "acme").await.0, 202);
    // Four failures open ep_flaky's circuit; the probe's 200 closes it.
    for i in 0..4 {
        let (status, _) = api
            .post(
                "/v1/events",
                json!({"id": format!("evt_d{i}"), "type": "outbound.delivered", "tenant": "acme",
                       "created_at": 1, "data": {}}),
            )
            .await;
        assert_eq!(status, 202);
    }
    // The tenant disables and enables an endpoint of its own.
    let ep = api
        .create_endpoint(
            "acme",
            json!({"url": plain.url("/"), "filters": ["inbound.*"]}),
        )
        .await;
    let own = ep["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tenants/acme/endpoints/{own}");
    assert_eq!(api.patch(&path, json!({"disabled": true})).await.0, 200);
    assert_eq!(
        api.patch(&path, json!({"disabled": true})).await.0,
        200,
        "disabling again changes nothing"
    );
    assert_eq!(api.patch(&path, json!({"disabled": false})).await.0, 200);

    let want = [
        key("webhookd.endpoint.disabled", "ep_gone"),
        key("webhookd.delivery.dead_lettered", "ep_gone"),
        key("webhookd.delivery.dead_lettered", "ep_dead"),
        key("webhookd.endpoint.circuit_opened", "ep_flaky"),
        key("webhookd.endpoint.circuit_closed", "ep_flaky"),
        key("webhookd.endpoint.disabled", &own),
        key("webhookd.endpoint.enabled", &own),
    ];
    let all = wait_until(WAIT, || {
        let got = notices(&ops);
        want.iter().all(|k| got.contains_key(k))
    })
    .await;
    // A moment more for any repeat to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = notices(&ops);
    assert!(all, "{got:?}\n{}", w.log_text());
    for k in &want {
        assert_eq!(got[k].0, 1, "exactly one {k:?}: {got:?}");
    }
    assert_eq!(got.len(), want.len(), "nothing else: {got:?}");

    let data = |ty: &str, ep: &str| got[&key(ty, ep)].1.clone();
    let d = data("webhookd.endpoint.disabled", "ep_gone");
    assert_eq!(d["reason"], "gone", "{d}");
    assert!(d["message"].as_str().unwrap().contains("410"), "{d}");
    let d = data("webhookd.delivery.dead_lettered", "ep_dead");
    assert_eq!(
        (
            &d["event_id"],
            &d["event_type"],
            &d["attempts"],
            &d["last_status"]
        ),
        (
            &json!("evt_1"),
            &json!("outbound.sent"),
            &json!(3),
            &json!(500)
        ),
        "{d}"
    );
    let d = data("webhookd.delivery.dead_lettered", "ep_gone");
    assert_eq!(
        (&d["attempts"], &d["last_status"]),
        (&json!(1), &json!(410))
    );
    let d = data("webhookd.endpoint.circuit_opened", "ep_flaky");
    assert_eq!(d["failures"], 4, "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("503"), "{d}");
    assert!(data("webhookd.endpoint.circuit_closed", "ep_flaky")["open_for_s"].is_u64());
    assert_eq!(data("webhookd.endpoint.disabled", &own)["reason"], "tenant");

    for req in ops.received() {
        assert!(verify(&req, SECRET), "signed like any delivery");
        assert_eq!(req.json()["service"], "webhookd");
    }
    assert!(
        notices(&star).is_empty(),
        "`*` does not match webhookd.*: {:?}",
        notices(&star)
    );
    assert!(other.received().is_empty(), "no other tenant hears of it");
    let invalid: Vec<redis::streams::StreamId> = {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}:invalid", setup.stream()))
            .arg("-")
            .arg("+")
            .query(&mut r)
            .unwrap();
        reply.ids
    };
    assert_eq!(invalid.len(), 1, "the forged XADD is set aside");
    let reason: String = redis::from_redis_value(invalid[0].map["reason"].clone()).unwrap();
    assert!(reason.contains("reserved"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_disabled_for_failing_too_long_is_told_once() {
    let ops = Receiver::start(always(200)).await;
    let failing = Receiver::start(always(500)).await;
    let setup = Setup::new("operational_failing")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  disable_after: 1s\n  breaker_failures: 0\n")
        .with("retry:\n  schedule: [400ms, 400ms, 400ms, 400ms, 400ms]\n  jitter: 0\n")
        .endpoint("ep_ops", "acme", &ops.url("/"), &["webhookd.endpoint.*"])
        .endpoint("ep_failing", "acme", &failing.url("/"), &["outbound.*"]);
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    assert_eq!(api.publish_event("evt_f", "acme").await.0, 202);
    let k = key("webhookd.endpoint.disabled", "ep_failing");
    let told = wait_until(WAIT, || notices(&ops).contains_key(&k)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = notices(&ops);
    assert!(told, "{got:?}\n{}", w.log_text());
    assert_eq!(got[&k].0, 1, "{got:?}");
    assert_eq!(got[&k].1["reason"], "failing");
    assert!(
        !got.keys()
            .any(|(ty, _)| ty == "webhookd.delivery.dead_lettered"),
        "webhookd.endpoint.* asked for no dead letters: {got:?}"
    );
}

/// An endpoint disabled by the attempt log's last write before an exit is still told: that
/// write raises the notice once deliveries are over, and the notice writer was aborted right
/// after it instead of being let finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_raised_during_shutdown_is_still_told() {
    let ops = Receiver::start(always(200)).await;
    // The second attempt answers late enough for SIGTERM to land while it runs.
    let failing = Receiver::start(late(500, |n| {
        Duration::from_millis(if n == 0 { 0 } else { 500 })
    }))
    .await;
    let setup = Setup::new("operational_shutdown")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  disable_after: 1s\n  breaker_failures: 0\n")
        .with("retry:\n  schedule: []\n")
        .endpoint("ep_ops", "acme", &ops.url("/"), &["webhookd.endpoint.*"])
        .endpoint("ep_failing", "acme", &failing.url("/"), &["outbound.*"]);
    let mut w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    assert_eq!(api.publish_event("evt_first", "acme").await.0, 202);
    assert!(wait_until(WAIT, || failing.count() == 1).await);
    // The streak is older than `disable_after` when the second attempt fails.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(api.publish_event("evt_second", "acme").await.0, 202);
    assert!(wait_until(WAIT, || failing.count() == 2).await);
    w.terminate(Duration::from_secs(30)).await;
    let log = w.log_text();
    drop(w);
    let _again = Webhookd::start(&setup).await;
    let k = key("webhookd.endpoint.disabled", "ep_failing");
    let told = wait_until(WAIT, || notices(&ops).contains_key(&k)).await;
    assert!(told, "{:?}\nthe first run's log:\n{log}", notices(&ops));
}
