//! Subscription filters (SPEC 3): each event reaches exactly the endpoints whose filters
//! match it, in its own tenant, and a registry change is matched within a second.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

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
            let p = pending(&mut r, &setup.stream());
            let len: u64 = redis::cmd("XLEN")
                .arg(setup.stream())
                .query(&mut r)
                .unwrap();
            p == 0 && len == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1, "a deleted endpoint receives nothing");
}
