//! Issue 13: with `stream.shards` > 1 the retry state is sharded too. An endpoint's retry
//! jobs, parked backlog and circuit live under the hash tag of its home shard, CRC-32 of its
//! id mod N, so no single `{retry}` key takes every retry's writes; what an earlier shard
//! count left in another queue is still delivered, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);
/// Failing attempts open a circuit after 3; a retry waits 2 s, then long enough to stay put.
const BREAKER: &str = "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 3\n  breaker_probe: 60s\nretry:\n  schedule: [2s, 60s]\n  jitter: 0\n";

fn home(endpoint: &str, shards: u32) -> u32 {
    crc32fast::hash(endpoint.as_bytes()) % shards
}

fn zcard(r: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("ZCARD").arg(key).query(r).unwrap()
}

fn keys_matching(r: &mut redis::Connection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(pattern).query(r).unwrap()
}

fn events(tenant: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| envelope(&format!("evt_{i}"), "outbound.sent", tenant, json!({})))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_16_shards_each_endpoints_retries_backlog_and_circuit_live_in_its_home_shard() {
    let rx = Receiver::start(always(500)).await;
    let endpoints = ["ep_one", "ep_two", "ep_three", "ep_four"];
    let homes: Vec<u32> = endpoints.iter().map(|e| home(e, 16)).collect();
    let mut distinct = homes.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "the test's endpoints spread: {homes:?}"
    );
    let setup = endpoints.iter().fold(
        Setup::new("retry_shards")
            .with(&format!("{BREAKER}stream:\n  shards: 16\n  block: 200ms\n")),
        |s, ep| s.endpoint(ep, "t", &rx.url(&format!("/{ep}")), &["*"]),
    );
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.shard_stream(0), &events("t", 6));

    let prefix = &setup.prefix;
    for (ep, home) in endpoints.iter().zip(&homes) {
        let tag = format!("{prefix}retry:{{{home}}}");
        let circuit = wait_until(WAIT, || {
            let raw: Option<String> = redis::cmd("HGET")
                .arg(format!("{tag}:circuits"))
                .arg(*ep)
                .query(&mut r)
                .unwrap();
            raw.is_some()
        })
        .await;
        assert!(
            circuit,
            "{ep}'s circuit opened in {tag}; log:\n{}",
            w.log_text()
        );
        let waiting = wait_until(WAIT, || {
            zcard(&mut r, &format!("{tag}:park:{ep}")) + zcard(&mut r, &format!("{tag}:due")) > 0
        })
        .await;
        assert!(waiting, "{ep}'s deliveries wait in {tag}");
    }
    // Every delivery has a place: 6 events × 4 endpoints wait at their endpoints' homes.
    let placed = wait_until(WAIT, || {
        let mut n = 0;
        for (ep, home) in endpoints.iter().zip(&homes) {
            let tag = format!("{prefix}retry:{{{home}}}");
            let jobs: Vec<String> = redis::cmd("HKEYS")
                .arg(format!("{tag}:jobs"))
                .query(&mut r)
                .unwrap();
            n += jobs
                .iter()
                .filter(|id| id.ends_with(&format!(":{ep}")))
                .count();
        }
        n == 24
    })
    .await;
    assert!(placed, "24 jobs at their homes; log:\n{}", w.log_text());
    assert_eq!(
        keys_matching(&mut r, &format!("{prefix}{{retry}}*")),
        Vec::<String>::new(),
        "nothing in the unsharded retry queue"
    );
    let depth = w
        .metric_until("webhookd_retry_queue_depth", |d| d > 0.0)
        .await;
    assert!(depth > 0.0, "the depth gauge reads the shards");
}

/// Deliveries waiting in the unsharded `{retry}` queue (retries due later, and a backlog parked
/// behind an open circuit) when webhookd restarts with 4 shards: each is delivered exactly
/// once, and the old queue is left empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_shard_count_grows_what_waited_in_the_unsharded_queue_is_delivered_once() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        let status = if f.load(Ordering::SeqCst) { 500 } else { 200 };
        (status, vec![], Duration::ZERO)
    }))
    .await;
    let setup =
        Setup::new("retry_regrow")
            .with(BREAKER)
            .endpoint("ep_a", "t", &rx.url("/a"), &["*"]);
    let mut w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("t", 8));
    let prefix = setup.prefix.clone();
    let (due, parked) = (
        format!("{prefix}{{retry}}:due"),
        format!("{prefix}{{retry}}:park:ep_a"),
    );
    let both = wait_until(WAIT, || {
        zcard(&mut r, &due) > 0
            && zcard(&mut r, &parked) > 0
            && zcard(&mut r, &due) + zcard(&mut r, &parked) == 8
    })
    .await;
    assert!(
        both,
        "retries due ({}) and a parked backlog ({}) in the unsharded queue; log:\n{}",
        zcard(&mut r, &due),
        zcard(&mut r, &parked),
        w.log_text()
    );
    w.terminate(WAIT).await;
    let before = rx.count();
    failing.store(false, Ordering::SeqCst);

    let four = Setup {
        extra: format!("{BREAKER}stream:\n  shards: 4\n  block: 200ms\n"),
        ..setup.replica(&setup.consumer)
    };
    let w = Webhookd::start(&four).await;
    let delivered = |rx: &Receiver| by_webhook_id(&rx.received()[before..]);
    let all = wait_until(WAIT, || delivered(&rx).len() == 8).await;
    assert!(
        all,
        "{} of 8 delivered after the restart; log:\n{}",
        delivered(&rx).len(),
        w.log_text()
    );
    let empty = wait_until(WAIT, || {
        keys_matching(&mut r, &format!("{prefix}{{retry}}*")).is_empty()
    })
    .await;
    assert!(
        empty,
        "left in the old queue: {:?}",
        keys_matching(&mut r, &format!("{prefix}{{retry}}*"))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copies = delivered(&rx);
    assert!(
        copies.values().all(|&n| n == 1),
        "delivered twice: {copies:?}"
    );
    assert_eq!(copies.len(), 8);
    let home = format!("{prefix}retry:{{{}}}", home("ep_a", 4));
    assert_eq!(
        zcard(&mut r, &format!("{home}:due")),
        0,
        "nothing left at home"
    );
}
