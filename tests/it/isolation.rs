//! A broken customer never slows anyone else (SPEC 5): hanging endpoints, the circuit breaker,
//! and work that stays claimed by the replica doing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// Static endpoints `ep_<tenant>_<i>` for `n` paths of one receiver.
fn many(setup: Setup, tenant: &str, n: usize, rx: &Receiver) -> Setup {
    (0..n).fold(setup, |s, i| {
        s.endpoint(
            &format!("ep_{tenant}_{i}"),
            tenant,
            &rx.url(&format!("/{i}")),
            &["*"],
        )
    })
}

/// A receiver answering 200 after `on_ms` while its switch (answered beside it) is on, and
/// after `off_ms` while it is off.
async fn switched(on_ms: u64, off_ms: u64, on: bool) -> (Receiver, Arc<AtomicBool>) {
    let switch = Arc::new(AtomicBool::new(on));
    let s = switch.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        let delay = if s.load(Ordering::SeqCst) {
            on_ms
        } else {
            off_ms
        };
        (200, vec![], Duration::from_millis(delay))
    }))
    .await;
    (rx, switch)
}

/// The last 20 lines of webhookd's log, newest first, for an assertion's message.
fn log_tail(w: &Webhookd) -> String {
    w.log_text()
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .join("\n")
}

fn events(prefix: &str, tenant: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| envelope(&format!("{prefix}{i}"), "outbound.sent", tenant, json!({})))
        .collect()
}

fn circuit(r: &mut redis::Connection, setup: &Setup, endpoint: &str) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(format!("{}{{retry}}:circuits", setup.prefix))
        .arg(endpoint)
        .query(r)
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

/// A healthy tenant's events all arrive while another tenant's 128 endpoints hang past the
/// timeout. Before isolation, the hanging endpoints held every in-flight permit (128 × 8 =
/// 1,024) for the whole timeout, so nothing else was sent for 30 s at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_tenant_gets_every_event_while_another_tenants_128_endpoints_hang() {
    let hang = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_secs(120)))).await;
    let healthy = Receiver::start(always(200)).await;
    let setup = Setup::new("iso_hang")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 30s\n");
    let setup = many(setup, "bad", 128, &hang)
        .endpoint("ep_good_a", "good", &healthy.url("/a"), &["*"])
        .endpoint("ep_good_b", "good", &healthy.url("/b"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("bad", "bad", 50));
    // Let the hanging endpoints take what they will.
    let taken = wait_until(Duration::from_secs(20), || hang.count() >= 128).await;
    assert!(
        taken,
        "only {} requests reached the hanging endpoints",
        hang.count()
    );
    publish(&mut r, &setup.stream(), &events("good", "good", 200));
    let got = healthy.wait_for(400, Duration::from_secs(20)).await;
    let ids = by_webhook_id(&got);
    // Which (path, id) came more than once, and when each copy arrived: a repeat seen once
    // in CI is to be explained from this.
    let mut repeats: Vec<String> = Vec::new();
    for (i, g) in got.iter().enumerate() {
        let same = got
            .iter()
            .filter(|o| o.path == g.path && o.header("webhook-id") == g.header("webhook-id"))
            .count();
        if same > 1 {
            repeats.push(format!(
                "#{i} {} {} timestamp {} at +{:?}",
                g.path,
                g.header("webhook-id"),
                g.header("webhook-timestamp"),
                g.at.duration_since(got[0].at)
            ));
        }
    }
    assert_eq!(
        got.len(),
        400,
        "the healthy tenant got {} of 400 deliveries within 20 s (the hanging ones time out after 30 s); repeats: {repeats:?}; log:\n{}",
        got.len(),
        log_tail(&w)
    );
    assert_eq!(ids.len(), 200);
    assert!(ids.values().all(|&n| n == 2), "one delivery per endpoint");
}

/// A hanging tenant's backlog is parked, not lost: once its endpoints answer quickly again,
/// every delivery arrives exactly once per endpoint, and nothing is dead-lettered for waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tenants_backlog_is_delivered_in_full_once_it_recovers() {
    let (rx, slow) = switched(3_000, 5, true).await;
    let setup = Setup::new("iso_recover")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 10s\n");
    let setup = many(setup, "slowpoke", 32, &rx);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("rec", "slowpoke", 20));
    let parked_key = format!("{}{{retry}}:parked", setup.prefix);
    let parked = wait_until(Duration::from_secs(20), || {
        let n: u64 = redis::cmd("ZCARD").arg(&parked_key).query(&mut r).unwrap();
        n >= 32
    })
    .await;
    assert!(parked, "the slow endpoints' excess was not parked");
    slow.store(false, Ordering::SeqCst);
    let all = wait_until(Duration::from_secs(90), || {
        by_path_and_id(&rx.received()).len() >= 640
    })
    .await;
    let got = by_path_and_id(&rx.received());
    assert!(
        all,
        "{} of 640 deliveries arrived after recovery; log:\n{}",
        got.len(),
        log_tail(&w)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = by_path_and_id(&rx.received());
    assert!(got.values().all(|&n| n == 1), "a delivery arrived twice");
    let dlq: u64 = redis::cmd("XLEN")
        .arg(format!("{}dlq", setup.prefix))
        .query(&mut r)
        .unwrap();
    assert_eq!(dlq, 0);
    let m = w.metrics().await;
    let parked: f64 = m
        .lines()
        .filter(|l| l.starts_with("webhookd_deliveries_parked_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(parked > 0.0, "{m}");
}

/// Copies received per (endpoint path, `webhook-id`).
fn by_path_and_id(got: &[Received]) -> std::collections::HashMap<(String, String), usize> {
    let mut m = std::collections::HashMap::new();
    for g in got {
        *m.entry((g.path.clone(), g.header("webhook-id").to_string()))
            .or_insert(0) += 1;
    }
    m
}

/// Entries read in one batch but not yet fanned out are still their consumer's work: another
/// replica's `XAUTOCLAIM` (every second here) must not take them and send them twice. Before,
/// only entries already fanned out were heartbeated, so the rest of a batch waiting for room
/// went idle past `claim_idle` and the other replica claimed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_fan_out_room_is_never_claimed_from_the_live_consumer() {
    let rx = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(200)))).await;
    let replica = |name: &str, prefix: &str, batch: usize| {
        let mut s = Setup::new("iso_batch").with(&format!(
            "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  max_in_flight: 2\n\
             stream:\n  consumer: {name}\n  block: 200ms\n  claim_idle: 1s\n  batch: {batch}\n"
        ));
        if !prefix.is_empty() {
            s.prefix = prefix.to_string();
        }
        many(s, "t", 20, &rx)
    };
    // Replica a reads a batch at once; b, started once a is busy, reads one entry at a time and
    // so comes round to XAUTOCLAIM while a's batch still waits for room.
    let a = replica("a", "", 256);
    let b = replica("b", &a.prefix, 1);
    let _wa = Webhookd::start(&a).await;
    let mut r = redis();
    publish(&mut r, &a.stream(), &events("b", "t", 8));
    assert!(wait_until(Duration::from_secs(10), || rx.count() > 0).await);
    let _wb = Webhookd::start(&b).await;
    // 160 deliveries, two at a time per replica, 200 ms each: seconds in which the entries
    // of each read wait their turn.
    let got = rx.wait_for(160, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(got.len() >= 160, "only {} of 160 arrived", got.len());
    let per_path_and_id = by_path_and_id(&rx.received());
    let dups: usize = per_path_and_id.values().map(|n| n - 1).sum();
    assert_eq!(per_path_and_id.len(), 160);
    assert_eq!(dups, 0, "deliveries sent twice without any crash");
}

/// After `breaker_failures` consecutive failures the circuit opens: deliveries wait unattempted
/// except one probe at a time across both replicas, at doubling intervals; a 2xx closes it and
/// the backlog is delivered in full, with nothing dead-lettered early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_probes_one_at_a_time_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        let status = if h.load(Ordering::SeqCst) { 200 } else { 500 };
        (status, vec![], Duration::from_millis(100))
    }))
    .await;
    // Two replicas: the circuit is one state for both, so probes stay one at a time.
    let replica = |prefix: Option<&str>| {
        let mut s = Setup::new("iso_breaker")
            .with("retry:\n  schedule: [500ms, 1s, 30s, 30s, 30s]\n  jitter: 0\n")
            .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 5\n  breaker_probe: 1s\n")
            .endpoint("ep_flaky", "t", &rx.url("/"), &["*"]);
        if let Some(p) = prefix {
            s.prefix = p.to_string();
        }
        s
    };
    let setup = replica(None);
    let w = Webhookd::start(&setup).await;
    let w2 = Webhookd::start(&replica(Some(&setup.prefix))).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("c", "t", 30));
    let opened = wait_until(Duration::from_secs(20), || {
        circuit(&mut r, &setup, "ep_flaky").is_some()
    })
    .await;
    assert!(opened, "the circuit never opened; log:\n{}", w.log_text());
    // Attempts the other replica started before it learnt of the circuit (its view is
    // refreshed every 250 ms) are not probes: count from half a second on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rx.count();
    // While open: probes only, one at a time (each start at least the probe interval after
    // the previous one), 1 s then 2 s then 4 s apart.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let probes: Vec<Received> = rx.received()[before..].to_vec();
    assert!(
        (2..=4).contains(&probes.len()),
        "expected 2–4 probes from 0.5 s to 7.5 s of an open circuit (1 s, 2 s, 4 s apart), got {}",
        probes.len()
    );
    for pair in probes.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "probes {gap:?} apart: more than one at a time"
        );
    }
    let c = circuit(&mut r, &setup, "ep_flaky").expect("still open");
    assert!(c["state"] == "open" || c["state"] == "half_open", "{c}");
    let stats_url = format!("{}/v1/tenants/t/endpoints/ep_flaky/stats", setup.api());
    let (status, body) = http(hyper::Method::GET, &stats_url, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        stats["circuit"] == "open" || stats["circuit"] == "half_open",
        "{stats}"
    );
    let m = w.metrics().await;
    assert_eq!(metric(&m, "webhookd_circuits_open"), 1.0, "{m}");
    let m2 = w2.metrics().await;
    let parked = |m: &str| metric(m, "webhookd_deliveries_parked_total{reason=\"circuit\"}");
    assert!(parked(&m) + parked(&m2) >= 1.0, "{m}");
    // Recovery: the next probe succeeds, the circuit closes, and the whole backlog arrives.
    healthy.store(true, Ordering::SeqCst);
    let recovered_at = Instant::now();
    let all = wait_until(Duration::from_secs(30), || {
        let ok: std::collections::HashSet<String> = rx
            .received()
            .iter()
            .filter(|g| g.at > recovered_at)
            .map(|g| g.header("webhook-id").to_string())
            .collect();
        ok.len() >= 30
    })
    .await;
    assert!(all, "the backlog was not delivered after recovery");
    let closed = wait_until(Duration::from_secs(5), || {
        circuit(&mut r, &setup, "ep_flaky").is_none()
    })
    .await;
    assert!(closed, "the circuit did not close");
    let dlq_len: u64 = redis::cmd("XLEN")
        .arg(format!("{}dlq", setup.prefix))
        .query(&mut r)
        .unwrap();
    assert_eq!(dlq_len, 0, "nothing is dead-lettered early for waiting");
    let closed_by = |m: &str| metric(m, "webhookd_circuit_transitions_total{to=\"closed\"}");
    assert!(closed_by(&w.metrics().await) + closed_by(&w2.metrics().await) >= 1.0);
    let (status, body) = http(
        hyper::Method::GET,
        &format!(
            "{}/v1/tenants/t/endpoints/ep_flaky/attempts?limit=250",
            setup.api()
        ),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let attempts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let statuses: Vec<i64> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["status"].as_i64())
        .collect();
    assert!(statuses.contains(&500) && statuses.contains(&200));
    // The last answers may still be on their way back: poll until all 30 are counted. The
    // test may straddle an hour's start, so its attempts are the last two hours'.
    let mut stats = serde_json::Value::Null;
    let last_two = |stats: &serde_json::Value, what: &str| -> u64 {
        stats["hours"]
            .as_array()
            .map(|h| {
                h.iter()
                    .rev()
                    .take(2)
                    .filter_map(|h| h[what].as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    for _ in 0..50 {
        let (_, body) = http(hyper::Method::GET, &stats_url, Some(ADMIN_TOKEN), None).await;
        stats = serde_json::from_str(&body).unwrap();
        if last_two(&stats, "success") >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["circuit"], "closed", "{stats}");
    assert!(
        last_two(&stats, "failure") >= 5 && last_two(&stats, "success") >= 30,
        "{stats}\nattempts: {attempts}"
    );
}

/// Waiting costs no attempt, but time counts: a delivery whose schedule runs out while its
/// circuit stays open is dead-lettered as `circuit open: …`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_schedule_runs_out_while_its_circuit_is_open_is_dead_lettered() {
    let rx = Receiver::start(always(503)).await;
    let setup = circuit_opening_setup("iso_expire", &rx);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("x", "t", 5));
    let dlq = format!("{}dlq", setup.prefix);
    let (all_dead, _) = dead_letters_reach(&dlq, 5, Duration::from_secs(30)).await;
    assert!(all_dead, "the parked deliveries were never dead-lettered");
    let letters: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&dlq)
        .arg("-")
        .arg("+")
        .query(&mut r)
        .unwrap();
    let circuit_open = letters
        .ids
        .iter()
        .filter(|e| {
            e.get::<String>("last_error")
                .is_some_and(|s| s.starts_with("circuit open: "))
        })
        .count();
    assert!(
        circuit_open >= 1,
        "at least the deliveries that waited out their schedule say why"
    );
    // Far fewer requests than 5 deliveries × 4 attempts: the open circuit stopped the rest.
    assert!(rx.count() < 20, "{} requests", rx.count());
}

/// Every failed attempt counts as `retry` or `dead`: those after which the delivery waited
/// behind the open circuit were counted as neither (4 attempts failed, `retry` said 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_that_waits_behind_an_open_circuit_counts_as_a_retry() {
    let rx = Receiver::start(Arc::new(|n, _| {
        let status = if n < 4 { 503 } else { 200 };
        (status, vec![], Duration::ZERO)
    }))
    .await;
    let setup = Setup::new("iso_count")
        .with("retry:\n  schedule: [100ms, 100ms, 10s, 10s, 10s]\n  jitter: 0\n")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 3\n  breaker_probe: 500ms\n")
        .endpoint("ep_flaky", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    publish(&mut redis(), &setup.stream(), &events("flaky", "t", 1));
    let success = w
        .metric_until("webhookd_deliveries_total{outcome=\"success\"}", |n| {
            n >= 1.0
        })
        .await;
    assert_eq!(success, 1.0, "log:\n{}", w.log_text());
    let text = w.metrics().await;
    assert_eq!(rx.count(), 5);
    assert_eq!(
        metric(&text, "webhookd_attempt_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        metric(&text, "webhookd_deliveries_total{outcome=\"retry\"}"),
        4.0,
        "each failed attempt is a retry"
    );
    assert_eq!(
        metric(&text, "webhookd_deliveries_total{outcome=\"dead\"}"),
        0.0
    );
}

/// A delivery parked behind an open circuit waits in the retry queue (SPEC 5): the queue's
/// depth counts it (it counted only the scheduled ones, and showed 0 beside 46,000 parked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_queue_depth_counts_deliveries_parked_behind_an_open_circuit() {
    let rx = Receiver::start(always(503)).await;
    let setup = Setup::new("iso_depth")
        .with("retry:\n  schedule: [1m]\n  jitter: 0\n")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 1\n  breaker_probe: 30s\n")
        .endpoint("ep_down", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    publish(&mut redis(), &setup.stream(), &events("depth", "t", 3));
    let parked = w
        .metric_until(
            "webhookd_deliveries_parked_total{reason=\"circuit\"}",
            |n| n >= 3.0,
        )
        .await;
    assert_eq!(parked, 3.0, "log:\n{}", w.log_text());
    let depth = w
        .metric_until("webhookd_retry_queue_depth", |n| n >= 3.0)
        .await;
    assert_eq!(depth, 3.0);
}

/// Every delivery whose schedule ran out behind an open circuit is dead-lettered at the next
/// look at its backlog: a look took 100, so 250 took three probes (3 s, 9 s, 21 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_behind_an_open_circuit_is_dead_lettered_at_one_look() {
    let rx = Receiver::start(always(503)).await;
    let setup = circuit_opening_setup("iso_sweep", &rx);
    let _w = Webhookd::start(&setup).await;
    publish(&mut redis(), &setup.stream(), &events("sweep", "t", 250));
    let dlq = format!("{}dlq", setup.prefix);
    let (all_dead, n) = dead_letters_reach(&dlq, 250, Duration::from_secs(8)).await;
    assert!(all_dead, "{n} of 250 dead-lettered within 8 s");
}

/// Endpoint `ep_down` of tenant `t` at `rx`, whose circuit opens after 2 failures and is
/// probed after 3 s, and a schedule that runs out in 0.9 s.
fn circuit_opening_setup(name: &str, rx: &Receiver) -> Setup {
    Setup::new(name)
        .with("retry:\n  schedule: [300ms, 300ms, 300ms]\n  jitter: 0\n")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n  breaker_failures: 2\n  breaker_probe: 3s\n")
        .endpoint("ep_down", "t", &rx.url("/"), &["*"])
}

/// Whether the dead-letter stream `dlq` holds `n` letters within `limit`, and how many it
/// held last.
async fn dead_letters_reach(dlq: &str, n: u64, limit: Duration) -> (bool, u64) {
    let mut r = redis();
    let mut held = 0;
    let reached = wait_until(limit, || {
        held = redis::cmd("XLEN").arg(dlq).query(&mut r).unwrap();
        held >= n
    })
    .await;
    (reached, held)
}

/// Endpoints that answered at once and then hang all together hold another tenant's events up
/// for about half a second. Before, a lane whose answers stopped kept its attempts in the quick
/// room, and the deliveries waiting for its slots in the consumer's room, for a whole second
/// (`SLOW_AFTER`, `LANE_WAIT`), whatever latency it had shown: here (the quick room 16, all of
/// it the bad tenant's at its host) the good tenant's events then took 938-989 ms; now a
/// lane that answered within 25 ms is slow after 500 ms (`Lane::slow_after`): 434-443 ms.
///
/// Run alone, before the suite, on a release build, like the spike test below: its figure is
/// a time, which a machine busy with other tests stretches.
#[ignore = "timing-sensitive: scripts/test.sh runs it alone before the suite"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_start_hanging_together_do_not_hold_up_another_tenant() {
    let (bad, hang) = switched(60_000, 0, false).await;
    let good = Receiver::start(always(200)).await;
    let setup = Setup::new("iso_flip").with(
        "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 30s\n  max_in_flight: 16\n",
    );
    let setup = many(setup, "bad", 8, &bad).endpoint("ep_good", "good", &good.url("/g"), &["*"]);
    let _w = Webhookd::start_program(&timing_bin(), &setup, &[]).await;
    let mut r = redis();
    // Quick answers first: every bad lane measures a latency of a few ms and opens up.
    publish(&mut r, &setup.stream(), &events("warm", "bad", 100));
    assert_eq!(bad.wait_for(800, Duration::from_secs(30)).await.len(), 800);
    hang.store(true, Ordering::SeqCst);
    publish(&mut r, &setup.stream(), &events("stuck", "bad", 100));
    assert!(wait_until(Duration::from_secs(10), || bad.count() >= 800 + 16).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = good_events_take(&setup, &good).await;
    assert!(
        took < Duration::from_millis(800),
        "the good tenant's events took {took:?} behind the hung ones"
    );
}

/// How long 5 events of tenant `good` published now take to reach `good` (all of them).
async fn good_events_take(setup: &Setup, good: &Receiver) -> Duration {
    let sent = Instant::now();
    publish(&mut redis(), &setup.stream(), &events("g", "good", 5));
    let got = good.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 5, "every good event arrives");
    got.iter().map(|g| g.at).max().unwrap() - sent
}

/// Many new endpoints that never answer, sent events at a steady pace, must not keep another
/// tenant's events unread. Every delivery read holds a place in the consumer's room until its
/// attempt ends or its lane turns slow, a whole second for an endpoint that has never
/// answered, so such a tenant filled the room and the consumer read nothing, for anyone, for
/// that second: 0.87-1.03 s beside 200 and 500 of them at 50 events a second in an outside
/// probe (issue 16's twenty-fifth slice). Now a tenant holds at most half the room; past it,
/// a delivery to an endpoint that has not answered yet and has an attempt out is parked
/// instead (`deliver::tenant_room`). Here (room 48, the bad tenant's 16 attempts at its host
/// and 24 more waiting) the good tenant's events took 1.005 s before.
#[ignore = "timing-sensitive: scripts/test.sh runs it alone before the suite"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_endpoints_that_never_answer_do_not_keep_another_tenants_events_unread() {
    let (bad, _always) = switched(60_000, 60_000, true).await;
    let good = Receiver::start(always(200)).await;
    let setup = Setup::new("iso_fresh_hang").with(
        "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 30s\n  max_in_flight: 32\n",
    );
    let setup = many(setup, "bad", 40, &bad).endpoint("ep_good", "good", &good.url("/g"), &["*"]);
    let w = Webhookd::start_program(&timing_bin(), &setup, &[]).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("stuck", "bad", 20));
    assert!(wait_until(Duration::from_secs(10), || bad.count() >= 16).await);
    let took = good_events_take(&setup, &good).await;
    assert!(
        took < Duration::from_millis(600),
        "the good tenant's events took {took:?} behind the hanging ones; log:\n{}",
        log_tail(&w)
    );
    let m = w.metrics().await;
    assert!(
        metric(
            &m,
            "webhookd_deliveries_parked_total{reason=\"tenant_share\"}"
        ) > 0.0,
        "the bad tenant's deliveries past its share were parked:\n{m}"
    );
}

/// A healthy endpoint's lane grows to the default `per_endpoint_in_flight`, 16 requests at once
/// from one replica, and never past it (8 before issue 16's twenty-fourth slice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_endpoint_gets_sixteen_requests_at_once_by_default_and_no_more() {
    let held = Duration::from_millis(150);
    let rx = Receiver::start(Arc::new(move |_, _| (200, vec![], held))).await;
    let setup = Setup::new("iso_lane_default").endpoint("ep_wide", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("wide", "t", 120));
    let got = rx.wait_for(120, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 120, "every delivery arrives");
    let all: Vec<&Received> = got.iter().collect();
    let at_once = most_at_once(&all, held);
    assert!(
        (14..=16).contains(&at_once),
        "requests to one endpoint in flight at once: {at_once}"
    );
}

/// A test send goes through the endpoint's limits like any delivery: while its one slot is
/// taken by a hanging delivery, the API answers 429 instead of opening another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_respects_the_endpoints_in_flight_limit() {
    let started = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let s = started.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        s.lock().unwrap().push(Instant::now());
        (200, vec![], Duration::from_secs(20))
    }))
    .await;
    let setup = Setup::new("iso_test_send")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 30s\n  per_endpoint_in_flight: 1\n")
        .endpoint("ep_busy", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("busy", "t", 1));
    assert!(wait_until(Duration::from_secs(10), || rx.count() == 1).await);
    let (status, body) = http(
        hyper::Method::POST,
        &format!("{}/v1/tenants/t/endpoints/ep_busy/test", setup.api()),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_requests"), "{body}");
    assert_eq!(rx.count(), 1, "no second connection was opened");
}

/// A tenant's room at one host is a quarter of `max_in_flight` (here 16). Deliveries waiting
/// for it must not hold the consumer's room: another tenant's 100 slow endpoints on one host,
/// with 3,000 deliveries (more than the 1,024 the consumer may hold), leave the healthy
/// tenant's events flowing. (Its slow budget, 24 attempts, runs out, so attempts past it keep
/// their host room for all of their 20 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_for_their_hosts_room_do_not_stop_the_consumer() {
    let slow = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_secs(20)))).await;
    let healthy = Receiver::start(always(200)).await;
    let setup = Setup::new("iso_host").with(
        "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 30s\n  max_in_flight: 64\n",
    );
    let setup = many(setup, "bad", 100, &slow)
        .endpoint("ep_good_a", "good", &healthy.url("/a"), &["*"])
        .endpoint("ep_good_b", "good", &healthy.url("/b"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(&mut r, &setup.stream(), &events("bad", "bad", 30));
    assert!(
        wait_until(Duration::from_secs(20), || slow.count() >= 16).await,
        "the slow endpoints are being attempted"
    );
    publish(&mut r, &setup.stream(), &events("good", "good", 200));
    let got = healthy.wait_for(400, Duration::from_secs(20)).await;
    assert_eq!(
        got.len(),
        400,
        "the healthy tenant got {} of 400 deliveries within 20 s; log:\n{}",
        got.len(),
        log_tail(&w)
    );
}

/// A latency spike in the middle of a burst parks some of it; the rest of the burst waits for
/// that backlog to drain instead of going through Redis too. Before, every fresh delivery
/// behind a backlog was parked, so the consumer read on as fast as Redis took the writes and
/// the whole remainder of the burst was parked and pulled back (issue 16).
///
/// Run alone, before the suite, on a release build (`scripts/test.sh` builds it and names it
/// in `WEBHOOKD_TEST_TIMING_BIN`): on a machine busy with other tests, or with the debug build
/// on a slow one (its answers take 3-30 ms here under the burst), the lane cannot finish what
/// waits behind the backlog within the second a fresh delivery may wait, and then parking the
/// rest is what webhookd should do, so the figures would say nothing: on one 2-core machine
/// the debug build failed 1 of 6 runs, and in a noisy hour 4 of 10 runs of three tries each.
/// On the release build a 700 ms spike parks about 1,000, and about 550 of the ~7,600
/// deliveries after it are parked behind them (19 of 19 runs); without the wait about 6,000
/// (4 runs). On a noisier machine (issue 16's twenty-fifth slice) 1,803 and 1,871 of ~7,000
/// were, in 2 of 9 runs of two builds, over the quarter this once allowed: half still tells
/// the wait from none.
#[ignore = "timing-sensitive: scripts/test.sh runs it alone before the suite"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_latency_spike_the_rest_of_a_burst_waits_for_the_backlog_to_drain() {
    let (rx, spike) = switched(300, 0, false).await;
    let setup = Setup::new("iso_spike")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n");
    let setup = many(setup, "t", 1, &rx);
    let w = Webhookd::start_program(&timing_bin(), &setup, &[]).await;
    let mut r = redis();
    const BURST: usize = 8_000;
    publish(&mut r, &setup.stream(), &events("spike", "t", BURST));
    assert!(wait_until(Duration::from_secs(30), || rx.count() >= 300).await);
    spike.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    spike.store(false, Ordering::SeqCst);
    let at_spike_end = rx.count();
    let all = wait_until(Duration::from_secs(120), || {
        by_path_and_id(&rx.received()).len() >= BURST
    })
    .await;
    assert!(all, "{} of {BURST} arrived", rx.count());
    let got = by_path_and_id(&rx.received());
    assert!(got.values().all(|&n| n == 1), "a delivery arrived twice");
    let m = w.metrics().await;
    let parked = |why: &str| {
        metric(
            &m,
            &format!("webhookd_deliveries_parked_total{{reason=\"{why}\"}}"),
        )
    };
    let (busy, backlog) = (parked("busy"), parked("backlog"));
    assert!(
        busy > 0.0,
        "the spike parked nothing, so it tested nothing:\n{m}"
    );
    let after = (BURST - at_spike_end) as f64;
    assert!(
        backlog < after / 2.0,
        "{backlog} of the {after} deliveries after the spike were parked behind its {busy}"
    );
}
