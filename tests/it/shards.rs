//! SPEC 1 and 8, `stream.shards`: the input stream as N streams `{prefix}events:{<i>}` on one
//! Redis, each read by every replica; producers put a tenant on shard CRC-32(tenant) mod N,
//! but an entry on any shard is delivered; invalid entries and dead letters stay on their
//! shard, and a dead letter's id names it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::api_common::*;
use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);
const SHARDS: &str = "stream:\n  shards: 16\n  block: 200ms\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_16_shards_every_producer_is_delivered_and_each_tenant_keeps_its_shard() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("shards16")
        .with(SHARDS)
        .endpoint("ep_a", "t_alpha", &rx.url("/a"), &["*"])
        .endpoint("ep_b", "acct_42", &rx.url("/b"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);

    // `webhookd publish`: CRC-32("t_alpha") = 1850826515, mod 16 = 3 (Python's zlib.crc32).
    let published = webhookd_ok(
        &w.config,
        &[
            "publish",
            "--tenant",
            "t_alpha",
            "--type",
            "outbound.sent",
            "--id",
            "evt_cli",
        ],
    );
    let id = published.trim().to_string();
    let on_3: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(setup.shard_stream(3))
        .arg(&id)
        .arg(&id)
        .query(&mut redis())
        .unwrap();
    assert_eq!(on_3.len(), 1, "the CLI put t_alpha's event on shard 3");

    // POST /v1/events: CRC-32("acct_42") = 270472311, mod 16 = 7.
    let (status, body) = api.publish_event("evt_api", "acct_42").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["shard"], 7, "{body}");
    assert_eq!(xlen(&setup.shard_stream(7)), 1);

    // A producer's plain XADD to a shard the rule would not pick, and an invalid entry.
    let mut r = redis();
    publish(
        &mut r,
        &setup.shard_stream(12),
        &[envelope("evt_xadd", "outbound.sent", "acct_42", json!({}))],
    );
    publish(&mut r, &setup.shard_stream(5), &["not json".to_string()]);

    let got = rx.wait_for(3, WAIT).await;
    let mut ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id")).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["evt_api", "evt_cli", "evt_xadd"],
        "log:\n{}",
        w.log_text()
    );
    let invalid = format!("{}events:{{5}}:invalid", setup.prefix);
    assert!(
        wait_until(WAIT, || xlen(&invalid) == 1).await,
        "set aside on its shard"
    );
    assert_eq!(xlen(&format!("{}events:invalid", setup.prefix)), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 3, "nothing delivered twice");
    for i in 0..16 {
        let stream = setup.shard_stream(i);
        assert_eq!(
            pending(&mut r, &stream),
            0,
            "{stream} has entries left unacknowledged"
        );
    }
}

/// `webhookd_stream_lag` is the sum over every shard: entries waiting on two shards both
/// count (one stream alone would show at most its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_sums_the_entries_waiting_on_every_shard() {
    let slow = Receiver::start(std::sync::Arc::new(|_, _| {
        (200, vec![], Duration::from_millis(150))
    }))
    .await;
    let setup = Setup::new("shards_lag")
        .with(SHARDS)
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  max_in_flight: 1\n  per_endpoint_in_flight: 1\n")
        .endpoint("ep", "t", &slow.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    for (shard, n) in [(2, 0), (9, 1)] {
        let events: Vec<String> = (0..10)
            .map(|i| envelope(&format!("lag{n}_{i}"), "outbound.sent", "t", json!({})))
            .collect();
        publish(&mut r, &setup.shard_stream(shard), &events);
    }
    let seen = w.metric_until("webhookd_stream_lag", |v| v > 10.0).await;
    assert!(
        seen > 10.0,
        "both shards' backlogs show in the lag: at most {seen}"
    );
    assert_eq!(slow.wait_for(20, WAIT).await.len(), 20);
    let last = w.metric_until("webhookd_stream_lag", |v| v == 0.0).await;
    assert_eq!(last, 0.0, "the lag falls to 0 once every entry is done");
}

/// `t_gone`'s one dead letter (of `evt_dead`, on shard 7) is listed with an id naming its
/// shard and replayed by that id: its endpoint gets a third attempt.
pub(crate) async fn replay_t_gones_letter(api: &Api, rx: &Receiver) {
    let (status, list) = api.get("/v1/tenants/t_gone/dlq").await;
    assert_eq!(status, 200, "{list}");
    let letters = list["data"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{list}");
    let id = letters[0]["id"].as_str().unwrap();
    assert!(id.starts_with("7:"), "{id}");
    assert_eq!(letters[0]["event_id"], "evt_dead");
    let (status, replayed) = api
        .post("/v1/tenants/t_gone/dlq/replay", json!({"ids": [id]}))
        .await;
    assert_eq!(
        (status, replayed),
        (200, json!({"replayed": 1, "endpoint_deleted": 0}))
    );
    assert_eq!(
        rx.wait_for(3, WAIT).await.len(),
        3,
        "replayed: a third attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_stays_on_its_tenants_shard_and_its_id_names_the_shard() {
    let rx = Receiver::start(always(500)).await;
    let setup = Setup::new("shards_dlq")
        .with(&format!("{SHARDS}retry:\n  schedule: [1s]\n  jitter: 0\n"))
        .endpoint("ep_gone", "t_gone", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    // CRC-32("t_gone") = 3102615095, mod 16 = 7.
    publish(
        &mut redis(),
        &setup.shard_stream(0),
        &[envelope("evt_dead", "outbound.sent", "t_gone", json!({}))],
    );
    let dlq7 = format!("{}dlq:{{7}}", setup.prefix);
    assert!(
        wait_until(WAIT, || xlen(&dlq7) == 1).await,
        "dead-lettered on shard 7"
    );
    assert_eq!(xlen(&format!("{}dlq", setup.prefix)), 0);
    replay_t_gones_letter(&api, &rx).await;
    // Purged by its id too, once it is dead again.
    assert!(wait_until(WAIT, || xlen(&dlq7) == 1).await);
    let (_, list) = api.get("/v1/tenants/t_gone/dlq").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = api.delete(&format!("/v1/tenants/t_gone/dlq/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(xlen(&dlq7), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_16_shards_with_nothing_missed_or_repeated() {
    const EVENTS: usize = 400;
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("shards_two")
        .with(SHARDS)
        .endpoint_per_tenant(8, &rx.url("/"));
    let one = Webhookd::start(&setup.replica("one")).await;
    let two = Webhookd::start(&setup.replica("two")).await;
    let mut r = redis();
    for chunk in 0..8 {
        let batch: Vec<(u32, String)> = (0..EVENTS / 8)
            .map(|i| {
                let n = chunk * (EVENTS / 8) + i;
                let tenant = format!("acct_{}", n % 8);
                (
                    (n % 16) as u32,
                    envelope(&format!("evt_{n}"), "outbound.sent", &tenant, json!({})),
                )
            })
            .collect();
        for (shard, env) in batch {
            publish(&mut r, &setup.shard_stream(shard), &[env]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = rx.wait_for(EVENTS, WAIT).await;
    assert_eq!(got.len(), EVENTS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = by_webhook_id(&rx.received());
    assert_eq!(seen.len(), EVENTS, "every event delivered");
    assert!(seen.values().all(|&n| n == 1), "none delivered twice");
    let consumed = |m: &str| metric(m, "webhookd_events_consumed_total");
    let (a, b) = (
        consumed(&one.metrics().await),
        consumed(&two.metrics().await),
    );
    assert_eq!(a + b, EVENTS as f64);
    assert!(a > 0.0 && b > 0.0, "both replicas read: {a} and {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_shard_count_changes_the_streams_written_before_are_still_read() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("shards_change").endpoint("ep", "t", &rx.url("/"), &["*"]);
    // One shard: the group exists on the unsharded stream; entries wait there while no
    // webhookd runs.
    drop(Webhookd::start(&setup).await);
    let mut r = redis();
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_before", "outbound.sent", "t", json!({}))],
    );
    // Four shards, then (with those entries waiting) back to two.
    let four = Setup {
        extra: "stream:\n  shards: 4\n  block: 200ms\n".into(),
        ..setup.replica(&setup.consumer)
    };
    let w = Webhookd::start(&four).await;
    assert_eq!(
        rx.wait_for(1, WAIT).await.len(),
        1,
        "the unsharded stream is read"
    );
    // Stopped with SIGKILL: only once its acknowledgement landed, or the next start would
    // rightly deliver the entry again (at least once) and this test could not tell.
    let acked = wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await;
    assert!(acked, "the delivered entry is acknowledged");
    drop(w);
    publish(
        &mut r,
        &setup.shard_stream(3),
        &[envelope("evt_on_3", "outbound.sent", "t", json!({}))],
    );
    let two = Setup {
        extra: "stream:\n  shards: 2\n  block: 200ms\n".into(),
        ..four.replica(&four.consumer)
    };
    let _w = Webhookd::start(&two).await;
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "shard 3 of 4 is read with 2 shards");
    assert_eq!(got[1].header("webhook-id"), "evt_on_3");
}

/// Entry ids are unique per stream only: two shards can hold entries with the same id. Their
/// deliveries must not be taken for one another (a retry of one must not replace the other's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_with_the_same_id_on_two_shards_are_both_delivered_through_retries() {
    let rx = Receiver::start(first_then_ok(2, 500)).await;
    let setup = Setup::new("shards_same_id")
        .with(&format!("{SHARDS}retry:\n  schedule: [1s]\n  jitter: 0\n"))
        .endpoint("ep", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    for (shard, id) in [(0, "evt_on_0"), (5, "evt_on_5")] {
        let _: String = redis::cmd("XADD")
            .arg(setup.shard_stream(shard))
            .arg("1704825600000-1")
            .arg("event")
            .arg(envelope(id, "outbound.sent", "t", json!({})))
            .query(&mut r)
            .unwrap();
    }
    let got = rx.wait_for(4, WAIT).await;
    let ok: Vec<&str> = got[got.len().min(2)..]
        .iter()
        .map(|g| g.header("webhook-id"))
        .collect();
    assert_eq!(got.len(), 4, "two failures, then each retried once: {ok:?}");
    let mut ok = ok;
    ok.sort();
    assert_eq!(ok, ["evt_on_0", "evt_on_5"]);
}
