//! Operating webhookd (SPEC 10): metrics move, SIGTERM drains and exits 0, replicas share work.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move_with_deliveries() {
    let ok = Receiver::start(always(200)).await;
    let bad = Receiver::start(always(500)).await;
    let setup = Setup::new("metrics")
        .with("retry:\n  schedule: [100ms]\n  jitter: 0\n")
        .endpoint("ep_ok", "t", &ok.url("/"), &["*"])
        .endpoint("ep_bad", "t", &bad.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let before = w.metrics().await;
    let mut r = redis();
    let mut env: Vec<String> = (0..10)
        .map(|i| envelope(&format!("m{i}"), "outbound.sent", "t", json!({})))
        .collect();
    env.push("garbage".into());
    publish(&mut r, &setup.stream(), &env);
    ok.wait_for(10, WAIT).await;
    bad.wait_for(20, WAIT).await;
    let m = |text: &str, s: &str| metric(text, s);
    let mut after = String::new();
    for _ in 0..200 {
        after = w.metrics().await;
        if m(&after, "webhookd_deliveries_total{outcome=\"dead\"}") >= 10.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No endpoint subscribes to webhookd.*, so no operational event is published (SPEC 2).
    assert_eq!(m(&before, "webhookd_events_consumed_total"), 0.0);
    assert_eq!(m(&after, "webhookd_events_consumed_total"), 11.0);
    assert_eq!(m(&after, "webhookd_events_invalid_total"), 1.0);
    assert_eq!(
        m(&after, "webhookd_deliveries_total{outcome=\"success\"}"),
        10.0
    );
    assert_eq!(
        m(&after, "webhookd_deliveries_total{outcome=\"retry\"}"),
        10.0
    );
    assert_eq!(
        m(&after, "webhookd_deliveries_total{outcome=\"dead\"}"),
        10.0
    );
    assert_eq!(m(&after, "webhookd_attempt_duration_seconds_count"), 30.0);
    assert_eq!(m(&after, "webhookd_event_to_delivery_seconds_count"), 10.0);
    assert!(after.contains("webhookd_in_flight") && after.contains("webhookd_stream_pending"));
    // Gauges are read from Redis every few seconds.
    let mut dlq_seen = false;
    for _ in 0..150 {
        if m(&w.metrics().await, "webhookd_dlq_depth") == 10.0 {
            dlq_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dlq_seen, "webhookd_dlq_depth reaches 10");
}

/// `webhookd_stream_lag` counts the input entries not yet done: unread by the group plus read
/// and not yet acknowledged (what KEDA scales on through its Prometheus trigger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_lag_counts_entries_not_yet_done_and_falls_to_zero() {
    let slow = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(150)))).await;
    let setup = Setup::new("lag")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  max_in_flight: 1\n  per_endpoint_in_flight: 1\n")
        .endpoint("ep_slow", "t", &slow.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let env: Vec<String> = (0..30)
        .map(|i| envelope(&format!("lag{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut redis(), &setup.stream(), &env);
    let seen = w.metric_until("webhookd_stream_lag", |v| v >= 10.0).await;
    assert!(seen >= 10.0, "the backlog shows in the lag: at most {seen}");
    assert_eq!(slow.wait_for(30, WAIT).await.len(), 30);
    let last = w.metric_until("webhookd_stream_lag", |v| v == 0.0).await;
    assert_eq!(last, 0.0, "the lag falls to 0 once every entry is done");
}

/// A webhookd with one endpoint (`ep1` of tenant `t`, answering as `behavior`) whose receiver
/// has been sent one event.
async fn one_event_sent(name: &str, behavior: Behavior) -> (Receiver, Setup, Webhookd) {
    let rx = Receiver::start(behavior).await;
    let setup = Setup::new(name).endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_one", "outbound.sent", "t", json!({}))],
    );
    assert!(wait_until(WAIT, || rx.count() == 1).await);
    (rx, setup, w)
}

/// SIGTERM on a replica with nothing in flight ends it at once, with the default read block,
/// not after the whole `shutdown_grace` (here 10 s): it took all of it, which every rolling
/// update of every replica waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_idle_replica_exits_at_once() {
    let (_rx, _setup, mut w) = one_event_sent("sigterm_idle", always(200)).await;
    let took = w.terminate(Duration::from_secs(30)).await;
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} with nothing in flight (shutdown_grace 10s); log:\n{}",
        w.log_text()
    );
}

/// A second SIGTERM skips the rest of the wait (README): the hanging delivery stays pending,
/// and the process exits at once. It took 5.1 s of the 10 s `shutdown_grace`: what followed
/// the skipped wait still ran to the original deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_skips_the_wait() {
    let hang = late(200, |_| Duration::from_secs(60));
    let (_rx, _setup, mut w) = one_event_sent("sigterm_twice", hang).await;
    let took = (w.terminate_twice(Some(Duration::from_millis(500)), Duration::from_secs(30))).await;
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} after a second SIGTERM (shutdown_grace 10s); log:\n{}",
        w.log_text()
    );
}

/// A delivery that ends during the drain has its attempt in the log after the exit: the
/// attempt-log writer is told to finish (and stops taking records) only once deliveries are
/// over. Told at the start of the drain, it lost this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_ending_during_shutdown_is_in_the_attempt_log() {
    let answer = late(200, |_| Duration::from_millis(500));
    let (_rx, setup, mut w) = one_event_sent("sigterm_log", answer).await;
    w.terminate(Duration::from_secs(30)).await;
    drop(w);
    let _again = Webhookd::start(&setup).await;
    let (status, got) = crate::api_common::Api::admin(&setup)
        .get("/v1/tenants/t/endpoints/ep1/attempts")
        .await;
    assert_eq!(status, 200, "{got}");
    let attempts = got["data"].as_array().expect("a list");
    assert_eq!(attempts.len(), 1, "the attempt is logged: {got}");
    assert_eq!(attempts[0]["status"], 200, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_within_the_grace_and_a_restart_delivers_everything() {
    // A receiver slow enough that SIGTERM lands mid-run.
    let rx = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(20)))).await;
    let setup = Setup::new("sigterm")
        .with("stream:\n  consumer: fixed\n  block: 200ms\n  claim_idle: 2s\n")
        .endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let mut w = Webhookd::start(&setup).await;
    let mut r = redis();
    let env: Vec<String> = (0..3000)
        .map(|i| envelope(&format!("g{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut r, &setup.stream(), &env);
    assert!(wait_until(WAIT, || rx.count() >= 300).await);
    let took = w.terminate(Duration::from_secs(15)).await;
    assert!(
        took < Duration::from_secs(12),
        "exit within shutdown_grace (10s): {took:?}"
    );
    let at_stop = by_webhook_id(&rx.received()).len();
    assert!(at_stop < 3000, "SIGTERM came mid-run ({at_stop})");
    let _w2 = Webhookd::start(&setup).await;
    assert!(
        wait_until(Duration::from_secs(120), || by_webhook_id(&rx.received())
            .len()
            == 3000)
        .await
    );
    let dups: usize = by_webhook_id(&rx.received()).values().map(|n| n - 1).sum();
    eprintln!("SIGTERM at {at_stop}/3000 delivered; {dups} duplicates after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_and_one_finishes_when_the_other_dies() {
    let rx = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(5)))).await;
    let base = Setup::new("pair").endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let replica = |name: &str| Setup {
        extra: format!(
            "stream:\n  consumer: {name}\n  block: 100ms\n  batch: 20\n  claim_idle: 2s\n"
        ),
        ..base.replica(name)
    };
    let (one, two) = (replica("r1"), replica("r2"));
    let mut w1 = Webhookd::start(&one).await;
    let w2 = Webhookd::start(&two).await;
    let mut r = redis();
    let env: Vec<String> = (0..4000)
        .map(|i| envelope(&format!("p{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut r, &base.stream(), &env);
    assert!(wait_until(WAIT, || rx.count() >= 1500).await);
    let s1 = metric(
        &w1.metrics().await,
        "webhookd_deliveries_total{outcome=\"success\"}",
    );
    let s2 = metric(
        &w2.metrics().await,
        "webhookd_deliveries_total{outcome=\"success\"}",
    );
    assert!(s1 > 0.0 && s2 > 0.0, "both replicas take work: {s1} / {s2}");
    w1.signal("KILL");
    w1.wait_exit(Duration::from_secs(5)).await;
    assert!(
        wait_until(Duration::from_secs(120), || by_webhook_id(&rx.received())
            .len()
            == 4000)
        .await,
        "the surviving replica finishes everything\n{}",
        w2.log_text()
    );
}
