//! Core dispatch promises (SPEC 1–4): the right endpoints get each event, signed and shaped
//! as the SPEC says, and bad entries never stop good ones.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_exactly_the_matching_endpoints_of_their_own_tenant() {
    let all = Receiver::start(always(200)).await;
    let outbound = Receiver::start(always(200)).await;
    let bounced = Receiver::start(always(200)).await;
    let delivered = Receiver::start(always(200)).await;
    let other_tenant = Receiver::start(always(200)).await;
    let setup = Setup::new("match")
        .endpoint("ep_all", "acct_a", &all.url("/all"), &["*"])
        .endpoint("ep_out", "acct_a", &outbound.url("/out"), &["outbound.*"])
        .endpoint(
            "ep_bnc",
            "acct_a",
            &bounced.url("/bnc"),
            &["outbound.bounced"],
        )
        .endpoint("ep_dlv", "acct_a", &delivered.url("/dlv"), &["*.delivered"])
        .endpoint("ep_b", "acct_b", &other_tenant.url("/b"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let events = [
        ("e1", "outbound.bounced"),
        ("e2", "outbound.delivered"),
        ("e3", "inbound.delivered"),
        ("e4", "inbound.received"),
    ];
    let env: Vec<String> = events
        .iter()
        .map(|(id, t)| envelope(id, t, "acct_a", json!({"to": "x@example.com"})))
        .collect();
    publish(&mut r, &setup.stream(), &env);
    all.wait_for(4, WAIT).await;
    // Give stragglers a moment to arrive if the index were wrong.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = |rc: &Receiver| {
        let mut v: Vec<String> = rc
            .received()
            .iter()
            .map(|r| r.header("webhook-id").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&all), ["e1", "e2", "e3", "e4"]);
    assert_eq!(ids(&outbound), ["e1", "e2"]);
    assert_eq!(ids(&bounced), ["e1"]);
    assert_eq!(ids(&delivered), ["e2", "e3"]);
    assert!(
        ids(&other_tenant).is_empty(),
        "another tenant's endpoint must never match"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_with_an_independent_standard_webhooks_library() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("sign").endpoint("ep1", "acct_42", &rx.url("/hook"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let data = json!({"uid": "msg-1", "to": "x@example.com", "bounce_type": "hard", "n": [1, 2.5, null], "s": "é\"\\"});
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_01J",
            "outbound.bounced",
            "acct_42",
            data.clone(),
        )],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert!(
        verify(req, SECRET),
        "signature must verify with standardwebhooks"
    );
    assert_eq!(req.header("webhook-id"), "evt_01J");
    assert_eq!(req.header("content-type"), "application/json");
    assert!(req.header("user-agent").starts_with("webhookd/"));
    assert!(req.header("webhook-signature").starts_with("v1,"));
    let ts: i64 = req.header("webhook-timestamp").parse().unwrap();
    assert!((ts - webhookd::clock::now_secs()).abs() < 60);
    assert_eq!(
        req.json(),
        json!({"id": "evt_01J", "service": "outbound", "type": "outbound.bounced",
               "created_at": 1704825600, "data": data})
    );
    assert!(
        !String::from_utf8_lossy(&req.body).contains("tenant"),
        "tenant is not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_are_set_aside_with_a_reason_and_never_stop_valid_ones() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("invalid")
        .with("stream:\n  block: 200ms\n  max_event_bytes: 1024\n")
        .endpoint("ep1", "t1", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let big = json!({"blob": "x".repeat(2000)});
    let bad = [
        "not json".to_string(),
        json!({"type": "a.b", "tenant": "t1", "created_at": 1, "data": {}}).to_string(),
        json!({"id": "x", "tenant": "t1", "created_at": 1, "data": {}}).to_string(),
        json!({"id": "x", "type": "a.b", "created_at": 1, "data": {}}).to_string(),
        json!({"id": "x", "type": "a.b", "tenant": "t1", "data": {}}).to_string(),
        json!({"id": "x", "type": "a.b", "tenant": "t1", "created_at": 1}).to_string(),
        json!({"id": "x", "type": "Outbound", "tenant": "t1", "created_at": 1, "data": {}})
            .to_string(),
        envelope("big", "outbound.sent", "t1", big),
    ];
    let mut stream = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        stream.push(b.clone());
        stream.push(envelope(
            &format!("ok{i}"),
            "outbound.sent",
            "t1",
            json!({}),
        ));
    }
    let entry_ids = publish(&mut r, &setup.stream(), &stream);
    // An entry without an `event` field at all.
    let _: String = redis::cmd("XADD")
        .arg(setup.stream())
        .arg("*")
        .arg("other")
        .arg("1")
        .query(&mut r)
        .unwrap();
    let got = rx.wait_for(bad.len(), WAIT).await;
    assert_eq!(
        got.len(),
        bad.len(),
        "every valid event after an invalid one is delivered"
    );
    let invalid_key = format!("{}:invalid", setup.stream());
    assert!(
        wait_until(WAIT, || {
            let n: usize = redis::cmd("XLEN").arg(&invalid_key).query(&mut r).unwrap();
            n == bad.len() + 1
        })
        .await
    );
    let set_aside: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&invalid_key)
        .arg("-")
        .arg("+")
        .query(&mut r)
        .unwrap();
    let reasons: Vec<&str> = set_aside
        .iter()
        .map(|(_, f)| f["reason"].as_str())
        .collect();
    for needle in [
        "invalid JSON",
        "`id`",
        "`type`",
        "`tenant`",
        "`created_at`",
        "`data`",
        "`type`",
        "over the limit",
        "no `event`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no reason mentions {needle}: {reasons:?}"
        );
    }
    // Each invalid entry keeps its original entry id and raw event.
    let first = &set_aside[0].1;
    assert_eq!(first["entry"], entry_ids[0]);
    assert_eq!(first["event"], "not json");
    // And everything was acknowledged.
    assert!(
        wait_until(WAIT, || {
            let p: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
                .arg(setup.stream())
                .arg("webhookd")
                .query(&mut r)
                .unwrap();
            p.0 == 0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_events_to_three_endpoints_all_arrive_and_a_duplicate_arrives_once() {
    let rxs = [
        Receiver::start(always(200)).await,
        Receiver::start(always(204)).await,
        Receiver::start(always(200)).await,
    ];
    let mut setup = Setup::new("fanout");
    for (i, rx) in rxs.iter().enumerate() {
        setup = setup.endpoint(&format!("ep{i}"), "bulk", &rx.url("/"), &["outbound.*"]);
    }
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let mut env: Vec<String> = (0..5000)
        .map(|i| {
            envelope(
                &format!("evt_{i}"),
                "outbound.delivered",
                "bulk",
                json!({"i": i}),
            )
        })
        .collect();
    // The producer retries its XADD of event 7: a new entry with a seen id.
    env.push(envelope(
        "evt_7",
        "outbound.delivered",
        "bulk",
        json!({"i": 7}),
    ));
    publish(&mut r, &setup.stream(), &env);
    for rx in &rxs {
        let got = rx.wait_for(5000, Duration::from_secs(120)).await;
        let ids = by_webhook_id(&got);
        assert_eq!(ids.len(), 5000, "every event arrives");
        assert_eq!(ids["evt_7"], 1, "a repeated event id arrives once");
        assert!(ids.values().all(|&n| n == 1), "no duplicates");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for rx in &rxs {
        assert_eq!(rx.count(), 5000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_reach_the_match_index_within_a_second() {
    use webhookd::registry::EndpointRecord;

    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("registry");
    let _w = Webhookd::start(&setup).await;
    let (store, sealer) = setup.registry().await;
    let rec = EndpointRecord::new(
        "ep_live".into(),
        "t".into(),
        rx.url("/live"),
        vec!["outbound.*".into()],
        sealer.seal(SECRET, "ep_live"),
        0,
    );
    store.put(&rec).await.unwrap();
    // Matching happens when the event is read: one published a second after the change
    // can only reach the endpoint if the index already knew it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut r = redis();
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("after_create", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "an endpoint stored a second ago receives events"
    );
    assert!(verify(&got[0], SECRET));

    store.delete("t", "ep_live").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("after_delete", "outbound.sent", "t", json!({}))],
    );
    // Bounded: wait until the consumer has acknowledged it, then check nothing arrived.
    assert!(
        wait_until(WAIT, || {
            let p: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
                .arg(setup.stream())
                .arg("webhookd")
                .query(&mut r)
                .unwrap();
            let len: u64 = redis::cmd("XLEN")
                .arg(setup.stream())
                .query(&mut r)
                .unwrap();
            p.0 == 0 && len == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1, "a deleted endpoint receives nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_rate_limit_spaces_its_deliveries_and_loses_none() {
    use webhookd::registry::EndpointRecord;

    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("ratelimit");
    let _w = Webhookd::start(&setup).await;
    let (store, sealer) = setup.registry().await;
    let rec = EndpointRecord {
        rate_limit: Some(4),
        ..EndpointRecord::new(
            "ep_paced".into(),
            "t".into(),
            rx.url("/paced"),
            vec!["*".into()],
            sealer.seal(SECRET, "ep_paced"),
            1,
        )
    };
    store.put(&rec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut r = redis();
    let env: Vec<String> = (0..8)
        .map(|i| envelope(&format!("rl{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut r, &setup.stream(), &env);
    let got = rx.wait_for(8, WAIT).await;
    assert_eq!(
        by_webhook_id(&got).len(),
        8,
        "every delivery arrives, paced or deferred"
    );
    let first = got.iter().map(|g| g.at).min().unwrap();
    let last = got.iter().map(|g| g.at).max().unwrap();
    // 4 per second, evenly spaced: 8 deliveries need at least 7 intervals of 250 ms.
    assert!(
        last - first >= Duration::from_millis(1700),
        "8 deliveries at 4/s came within {:?}",
        last - first
    );
}
