//! SPEC 1 and 8, `redis.mode: cluster`: webhookd on a real 6-node Redis Cluster (3 primaries,
//! 3 replicas, started by scripts/test.sh) with 16 shards spread over the slots. Every way of
//! publishing is delivered, two replicas share the work, retries and dead letters work, and a
//! replica killed with SIGKILL loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::api_common::*;
use crate::common::*;

const WAIT: Duration = Duration::from_secs(40);

/// The cluster scripts/test.sh started.
fn cluster_urls() -> String {
    std::env::var("WEBHOOKD_TEST_CLUSTER_URLS").expect(
        "WEBHOOKD_TEST_CLUSTER_URLS is not set: run the tests with scripts/test.sh, which \
         starts a 6-node Redis Cluster",
    )
}

fn cluster() -> redis::cluster::ClusterConnection {
    let urls: Vec<String> = cluster_urls().split(',').map(String::from).collect();
    redis::cluster::ClusterClient::new(urls)
        .unwrap()
        .get_connection()
        .unwrap()
}

/// A setup on the cluster with 16 shards; `extra` adds YAML to the `stream` section.
fn on_cluster(name: &str, extra_stream: &str) -> Setup {
    Setup::new(name)
        .redis(&format!("  mode: cluster\n  url: \"{}\"\n", cluster_urls()))
        .with(&format!(
            "stream:\n  shards: 16\n  block: 200ms\n  claim_idle: 2s\n{extra_stream}"
        ))
}

/// XADDs one envelope through the cluster (its sync connection takes no pipelines).
fn xadd(conn: &mut redis::cluster::ClusterConnection, stream: &str, envelope: String) {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("event")
        .arg(envelope)
        .query(conn)
        .unwrap();
}

fn xlen_on(conn: &mut redis::cluster::ClusterConnection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_with_16_shards_every_producer_is_delivered_once_by_two_replicas() {
    let rx = Receiver::start(always(200)).await;
    let setup = on_cluster("cl_all", "").endpoint_per_tenant(8, &rx.url("/"));
    let one = Webhookd::start(&setup.replica("one")).await;
    let two = Webhookd::start(&setup.replica("two")).await;
    let mut c = cluster();

    // `webhookd publish`, POST /v1/events, `webhookd ingest`, and plain XADDs to every shard.
    webhookd_ok(
        &one.config,
        &[
            "publish",
            "--tenant",
            "acct_1",
            "--type",
            "outbound.sent",
            "--id",
            "evt_cli",
        ],
    );
    let api = Api {
        base: format!("http://127.0.0.1:{}", one.port),
        token: Some(ADMIN_TOKEN.to_string()),
    };
    let (status, body) = api.publish_event("evt_api", "acct_2").await;
    assert_eq!(status, 202, "{body}");
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/providers/sendpost_events.json"
    );
    let ingested = webhookd_ok(
        &one.config,
        &[
            "ingest",
            "--provider",
            "sendpost",
            "--tenant",
            "acct_3",
            seed,
        ],
    );
    let printed: serde_json::Value = serde_json::from_str(&ingested).unwrap();
    let mut ingested_ids: Vec<String> = printed["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    ingested_ids.sort();
    ingested_ids.dedup();
    assert!(!ingested_ids.is_empty());
    const XADDS: usize = 320;
    for n in 0..XADDS {
        let tenant = format!("acct_{}", n % 8);
        let env = envelope(&format!("evt_{n}"), "outbound.sent", &tenant, json!({}));
        xadd(&mut c, &setup.shard_stream((n % 16) as u32), env);
    }
    let expected = XADDS + 2 + ingested_ids.len();
    let got = rx.wait_for(expected, WAIT).await;
    assert!(
        got.len() >= expected,
        "{} of {expected}; log:\n{}",
        got.len(),
        one.log_text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = by_webhook_id(&rx.received());
    for id in ["evt_cli", "evt_api", "evt_0", "evt_319"]
        .into_iter()
        .chain(ingested_ids.iter().map(String::as_str))
    {
        assert_eq!(seen.get(id), Some(&1), "{id} delivered once");
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "delivered twice: {repeated:?}");
    let consumed = |m: &str| metric(m, "webhookd_events_consumed_total");
    let (a, b) = (
        consumed(&one.metrics().await),
        consumed(&two.metrics().await),
    );
    assert!(a > 0.0 && b > 0.0, "both replicas read: {a} and {b}");
    for i in 0..16 {
        let key = setup.shard_stream(i);
        assert!(xlen_on(&mut c, &key) > 0, "{key} was written");
    }
}

/// Issue 16: at a steady rate a shard's reads and their duplicate checks are one call, under
/// the shard's hash tag (`read_checked.lua`; the pause on webhookd's timer, not Redis's, which
/// webhookd logs once): a repeated id is delivered once, and an invalid event does not keep
/// its id from a valid one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_steady_shard_is_read_and_checked_in_one_call() {
    let rx = Receiver::start(always(200)).await;
    let setup = on_cluster("cl_steady", "").endpoint("ep", "acct_0", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let ev = |id: &str| envelope(id, "outbound.sent", "acct_0", json!({}));
    let mut events: Vec<String> = (0..400).map(|i| ev(&format!("s{i}"))).collect();
    events[200] = ev("s10");
    events[250] = json!({"id": "shared", "type": "outbound.sent", "tenant": "acct_0", "data": {}})
        .to_string();
    events[300] = ev("shared");
    let stream = setup.shard_stream(0);
    tokio::task::spawn_blocking(move || {
        let mut c = cluster();
        let start = std::time::Instant::now();
        for (i, e) in events.into_iter().enumerate() {
            let due = start + Duration::from_millis(i as u64);
            if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(d);
            }
            xadd(&mut c, &stream, e);
        }
    })
    .await
    .unwrap();
    // s0..s399 less the three replaced, and "shared".
    let got = rx.wait_for(398, WAIT).await;
    assert_eq!(got.len(), 398, "log:\n{}", w.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = by_webhook_id(&rx.received());
    assert_eq!(seen.len(), 398);
    assert!(seen.values().all(|&n| n == 1), "an id twice: {seen:?}");
    assert_eq!(seen.get("shared"), Some(&1));
    let log = w.log_text();
    assert!(
        log.contains("reads and their duplicate checks are one call")
            && log.contains(r#""pause_kept_by_redis":false"#),
        "the steady shard was read in checked reads; log:\n{log}"
    );
    // A checked read routed to the wrong node would fail (and the two-step check cover it).
    assert!(!log.contains("reading the stream failed"), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_retries_and_dead_letters_work_and_a_replay_delivers_again() {
    let rx = Receiver::start(first_then_ok(2, 500)).await;
    let setup = on_cluster("cl_retry", "")
        .with("retry:\n  schedule: [1s]\n  jitter: 0\n")
        .endpoint("ep_r", "t_gone", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut c = cluster();
    // CRC-32("t_gone") mod 16 = 7: its dead letters go to dlq:{7}.
    let env = envelope("evt_dead", "outbound.sent", "t_gone", json!({}));
    xadd(&mut c, &setup.shard_stream(0), env);
    let dlq7 = format!("{}dlq:{{7}}", setup.prefix);
    let dead = wait_until(WAIT, || xlen_on(&mut cluster(), &dlq7) == 1).await;
    assert!(dead, "dead-lettered on shard 7; log:\n{}", w.log_text());
    crate::shards::replay_t_gones_letter(&Api::admin(&setup), &rx).await;
    let log = w.log_text();
    assert!(
        !log.contains("CrossSlot") && !log.contains("CROSSSLOT"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_replica_killed_with_sigkill_loses_nothing() {
    const EVENTS: usize = 300;
    // Slow enough that the killed replica has deliveries in flight.
    let rx = Receiver::start(std::sync::Arc::new(|_, _| {
        (200, vec![], Duration::from_millis(20))
    }))
    .await;
    let setup = on_cluster("cl_kill", "").endpoint("ep", "t", &rx.url("/"), &["*"]);
    let mut one = Webhookd::start(&setup.replica("one")).await;
    let two = Webhookd::start(&setup.replica("two")).await;
    let mut c = cluster();
    for n in 0..EVENTS {
        let env = envelope(&format!("evt_{n}"), "outbound.sent", "t", json!({}));
        xadd(&mut c, &setup.shard_stream((n % 16) as u32), env);
    }
    rx.wait_for(EVENTS / 5, WAIT).await;
    one.signal("KILL");
    one.wait_exit(Duration::from_secs(5)).await;
    // Every event, counted once (a killed replica's deliveries may be repeated).
    let all = wait_until(WAIT, || by_webhook_id(&rx.received()).len() == EVENTS).await;
    let seen: HashMap<String, usize> = by_webhook_id(&rx.received());
    let missing: Vec<usize> = (0..EVENTS)
        .filter(|n| !seen.contains_key(&format!("evt_{n}")))
        .collect();
    assert!(
        all && missing.is_empty(),
        "lost after SIGKILL: {missing:?}; the other replica's log:\n{}",
        two.log_text()
    );
}

/// As an ACL user with only README.md's commands (plus `+cluster|slots` and `+asking`, which
/// its Redis Cluster paragraph adds), on every node: deliveries, a retry and the claim run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_webhookd_runs_as_the_acl_user_readme_documents() {
    use crate::redis_access::{readme_acl, PASSWORD};
    let rx = Receiver::start(first_then_ok(1, 500)).await;
    let base = on_cluster("cl_acl", "").with("retry:\n  schedule: [1s]\n  jitter: 0\n");
    let user = format!(
        "wh_{}",
        &base.prefix.replace(':', "_")[..12.min(base.prefix.len())]
    );
    let mut rules = readme_acl(&base.prefix);
    rules.extend(["+cluster|slots".to_string(), "+asking".to_string()]);
    for url in cluster_urls().split(',') {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg(&rules)
            .query(&mut c)
            .unwrap();
    }
    let setup = Setup {
        redis: Some(format!(
            "  mode: cluster\n  url: \"{}\"\n  username: {user}\n  password: {PASSWORD}\n",
            cluster_urls()
        )),
        ..base
    }
    .endpoint("ep", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut c = cluster();
    for i in 0..16 {
        let env = envelope(&format!("evt_{i}"), "outbound.sent", "t", json!({}));
        xadd(&mut c, &setup.shard_stream(i), env);
    }
    // Every event once, the first after a retry.
    let all = wait_until(WAIT, || by_webhook_id(&rx.received()).len() == 16).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = w.log_text().to_lowercase();
    assert!(all, "not every event arrived; log:\n{}", w.log_text());
    assert!(
        !log.contains("noperm") && !log.contains("can't run this command"),
        "a command the ACL does not allow:\n{}",
        w.log_text()
    );
}

/// The attempt log's connection sends a pipeline's slots at once on a cluster (issue 16): each
/// reply must still come back in its command's place, and each slot's commands in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_sent_to_every_slot_at_once_answers_in_order() {
    use webhookd::db::conn::unordered::Unordered;
    let urls: Vec<String> = cluster_urls().split(',').map(String::from).collect();
    let conn = webhookd::db::conn::connect_cluster(
        &urls,
        &webhookd::db::conn::Access::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let prefix = unique_prefix("at_once");
    let mut pipe = redis::pipe();
    for i in 0..200 {
        let key = format!("{prefix}k{i}");
        pipe.cmd("SET").arg(&key).arg(i).ignore();
        pipe.cmd("INCRBY").arg(&key).arg(1000);
        pipe.cmd("GET").arg(&key);
    }
    let got: Vec<(i64, String)> = {
        let raw: Vec<redis::Value> = pipe.query_async(&mut Unordered(conn)).await.unwrap();
        raw.chunks(2)
            .map(|p| {
                (
                    redis::from_redis_value(p[0].clone()).unwrap(),
                    redis::from_redis_value(p[1].clone()).unwrap(),
                )
            })
            .collect()
    };
    let want: Vec<(i64, String)> = (0..200)
        .map(|i| (1000 + i, (1000 + i).to_string()))
        .collect();
    assert_eq!(got, want);
}
