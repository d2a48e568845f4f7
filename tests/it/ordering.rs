//! SPEC 6 `ordering_key` (issue 15): deliveries to an endpoint whose key has the same value are
//! attempted one at a time in stream order, through retries and across replicas, and a stuck
//! key holds back only itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::api_common::*;
use crate::common::*;

const KEYS: usize = 20;

/// What a receiver answered: (event id, its key, the status).
type Answers = Arc<Mutex<Vec<(String, String, u16)>>>;

/// A receiver that fails the first attempt of about a third of the events (chosen by id) and
/// records each answer: (event id, its key, the status it answered).
fn flaky_once() -> (Behavior, Answers) {
    let log: Answers = Arc::default();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let l = log.clone();
    let behavior: Behavior = Arc::new(move |_, r| {
        let body = r.json();
        let id = body["id"].as_str().unwrap_or("").to_string();
        let key = body["data"]["uid"].as_str().unwrap_or("").to_string();
        let unlucky = id.bytes().map(u32::from).sum::<u32>() % 3 == 0;
        let first = seen.lock().unwrap().insert(id.clone());
        let status = if unlucky && first { 503 } else { 200 };
        l.lock().unwrap().push((id, key, status));
        (status, vec![], Duration::ZERO)
    });
    (behavior, log)
}

/// Per key, the events' first successful copies in arrival order are in stream order.
fn assert_in_order(log: &[(String, String, u16)], events: usize) {
    let mut first_ok: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut done = HashSet::new();
    for (id, key, status) in log {
        if *status == 200 && done.insert(id.clone()) {
            let n: usize = id.trim_start_matches("evt_o").parse().unwrap();
            first_ok.entry(key).or_default().push(n);
        }
    }
    assert_eq!(done.len(), events, "every event delivered");
    for (key, seq) in &first_ok {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order: {seq:?}"
        );
    }
    let failed_first = log.iter().filter(|(_, _, s)| *s == 503).count();
    assert!(
        failed_first > events / 5,
        "a third failed first: {failed_first}"
    );
}

/// What the key queues hold (for a failure's message): each queue's size and head, and the
/// heads released.
fn order_state(prefix: &str) -> String {
    let mut r = redis();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*order*"))
        .query(&mut r)
        .unwrap_or_default();
    let mut out = String::new();
    for n in names {
        let kind: String = redis::cmd("TYPE").arg(&n).query(&mut r).unwrap();
        let shown = match kind.as_str() {
            "zset" => {
                let head: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&n)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query(&mut r)
                    .unwrap();
                let n: u64 = redis::cmd("ZCARD").arg(&n).query(&mut r).unwrap();
                format!("{n} entries, head {head:?}")
            }
            _ => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(&n)
                    .query::<Vec<String>>(&mut r)
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!("{n}: {shown}\n"));
    }
    out
}

/// Waits (bounded) until each of the `n` events has had a 200.
async fn all_delivered(log: &Answers, n: usize, limit: Duration) -> bool {
    wait_until(limit, || {
        let got = log.lock().unwrap();
        let ok: HashSet<&str> = got
            .iter()
            .filter(|(_, _, s)| *s == 200)
            .map(|(id, _, _)| id.as_str())
            .collect();
        ok.len() == n
    })
    .await
}

async fn ordered_endpoint(api: &Api, url: &str) -> String {
    let ep = api
        .create_endpoint(
            "t",
            json!({"url": url, "filters": ["*"], "ordering_key": "data.uid"}),
        )
        .await;
    assert_eq!(ep["ordering_key"], "data.uid", "{ep}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ep["id"].as_str().unwrap().to_string()
}

fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            envelope(
                &format!("evt_o{i}"),
                "outbound.sent",
                "t",
                json!({"uid": format!("k{}", i % KEYS)}),
            )
        })
        .collect()
}

const CONFIG: &str = "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 0\nretry:\n  schedule: [100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s]\n  jitter: 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_with_the_same_key_arrive_in_stream_order_through_retries() {
    let (behavior, log) = flaky_once();
    let rx = Receiver::start(behavior).await;
    let setup = Setup::new("ordering").with(CONFIG);
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    ordered_endpoint(&api, &rx.url("/")).await;
    let n = 2000;
    publish(&mut redis(), &setup.stream(), &events(n));
    let all = all_delivered(&log, n, Duration::from_secs(120)).await;
    assert!(all, "{}\n{}", order_state(&setup.prefix), w.log_text());
    assert_in_order(&log.lock().unwrap(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_each_keys_order_when_one_is_killed() {
    let (behavior, log) = flaky_once();
    let rx = Receiver::start(behavior).await;
    let base = Setup::new("ordering_pair");
    let replica = |name: &str| Setup {
        extra: format!(
            "{CONFIG}stream:\n  consumer: {name}\n  block: 100ms\n  batch: 50\n  claim_idle: 2s\n"
        ),
        ..base.replica(name)
    };
    let (one, two) = (replica("r1"), replica("r2"));
    let mut w1 = Webhookd::start(&one).await;
    let w2 = Webhookd::start(&two).await;
    let api = Api::admin(&one);
    ordered_endpoint(&api, &rx.url("/")).await;
    let n = 2000;
    publish(&mut redis(), &base.stream(), &events(n));
    assert!(wait_until(Duration::from_secs(60), || log.lock().unwrap().len() >= 300).await);
    w1.signal("KILL");
    w1.wait_exit(Duration::from_secs(5)).await;
    let all = all_delivered(&log, n, Duration::from_secs(180)).await;
    assert!(all, "{}\n{}", order_state(&base.prefix), w2.log_text());
    assert_in_order(&log.lock().unwrap(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_key_holds_back_only_itself() {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let rx = Receiver::start(Arc::new(move |_, r| {
        let body = r.json();
        let key = body["data"]["uid"].as_str().unwrap_or("").to_string();
        g.lock()
            .unwrap()
            .push(body["id"].as_str().unwrap_or("").to_string());
        // The stuck key's handler never answers in time.
        let delay = if key == "stuck" {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        (200, vec![], delay)
    }))
    .await;
    let setup = Setup::new("ordering_stuck").with(
        "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 1s\n  breaker_failures: 0\nretry:\n  schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]\n  jitter: 0\n",
    );
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    ordered_endpoint(&api, &rx.url("/")).await;
    let mut env = vec![
        envelope("evt_stuck_1", "outbound.sent", "t", json!({"uid": "stuck"})),
        envelope("evt_stuck_2", "outbound.sent", "t", json!({"uid": "stuck"})),
    ];
    env.extend((0..200).map(|i| {
        envelope(
            &format!("evt_free{i}"),
            "outbound.sent",
            "t",
            json!({"uid": format!("free{}", i % 10)}),
        )
    }));
    publish(&mut redis(), &setup.stream(), &env);
    let free_done = wait_until(Duration::from_secs(20), || {
        let got = got.lock().unwrap();
        (0..200).all(|i| got.contains(&format!("evt_free{i}")))
    })
    .await;
    let got = got.lock().unwrap().clone();
    assert!(
        free_done,
        "the other keys flow: {} arrived\n{}",
        got.len(),
        w.log_text()
    );
    assert!(
        got.iter().any(|id| id == "evt_stuck_1"),
        "the stuck key's first event is being tried"
    );
    assert!(
        !got.iter().any(|id| id == "evt_stuck_2"),
        "its second waits for the first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_order_holds_across_a_redis_restart_with_persistence() {
    let (behavior, log) = flaky_once();
    let rx = Receiver::start(behavior).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let redis_server = OwnRedis::persistent(port, dir.path()).await;
    let url = redis_server.url();
    let setup = Setup::new("ordering_restart").with(CONFIG);
    let w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &url)]).await;
    let api = Api::admin(&setup);
    ordered_endpoint(&api, &rx.url("/")).await;
    let n = 1000;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    publish(&mut conn, &setup.stream(), &events(n));
    assert!(wait_until(Duration::from_secs(60), || log.lock().unwrap().len() >= 150).await);
    drop(redis_server); // kill -9: the append-only file has every write it answered
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _again = OwnRedis::persistent(port, dir.path()).await;
    let all = all_delivered(&log, n, Duration::from_secs(120)).await;
    assert!(all, "{}", w.log_text());
    assert_in_order(&log.lock().unwrap(), n);
}
