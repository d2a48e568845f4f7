//! No silent loss, no wrong verdicts (SPEC 5 and 6): every delivery gets a fate, the API says
//! only what is true, and operators see changes when they happen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api_common::*;
use crate::common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn dead_letters(setup: &Setup) -> Vec<redis::streams::StreamId> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{}dlq", setup.prefix))
        .arg("-")
        .arg("+")
        .query(&mut redis())
        .unwrap();
    reply.ids
}

/// SPEC 5: deliveries that match a disabled endpoint are dead-lettered at once (`attempts` 0,
/// `last_error` `endpoint disabled`), so its tenant can replay them after enabling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_a_disabled_endpoint_are_dead_lettered_with_no_attempt() {
    let rx = Receiver::start(always(200)).await;
    let (setup, _w, api) = admin_api(Setup::new("nsl_disabled")).await;
    let ep = api
        .create_endpoint(
            "acct_d",
            json!({"url": rx.url("/d"), "filters": ["*"], "disabled": true}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = api
        .post(
            "/v1/events",
            event("evt_while_off", "outbound.sent", "acct_d"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let found = wait_until(WAIT, || !dead_letters(&setup).is_empty()).await;
    assert!(
        found,
        "the delivery to a disabled endpoint was acknowledged with no fate"
    );
    let dl = &dead_letters(&setup)[0];
    assert_eq!(
        dl.get::<String>("endpoint_id"),
        ep["id"].as_str().map(String::from)
    );
    assert_eq!(dl.get::<String>("attempts").as_deref(), Some("0"));
    assert_eq!(
        dl.get::<String>("last_error").as_deref(),
        Some("endpoint disabled")
    );
    assert_eq!(rx.count(), 0, "a disabled endpoint is not attempted");
    // Not dated 1970: there was no first attempt.
    let (_, list) = api.get("/v1/tenants/acct_d/dlq").await;
    assert_eq!(list["data"][0]["attempts"], 0, "{list}");
    assert_eq!(list["data"][0]["first_attempt_at"], json!(null), "{list}");
}

/// A replay takes no letter whose endpoint was deleted: it stays in the dead-letter stream
/// and the answer counts it apart. Before, the API counted it replayed and the retry queue
/// dropped it unseen, with no request and nothing logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_leaves_the_letters_of_a_deleted_endpoint_in_place() {
    let rx = Receiver::start(always(200)).await;
    let (setup, _w, api) = admin_api(Setup::new("nsl_replay_deleted")).await;
    let off = json!({"filters": ["*"], "disabled": true});
    let body = |path: &str| {
        let mut b = off.clone();
        b["url"] = json!(rx.url(path));
        b
    };
    let gone = api.create_endpoint("acct_g", body("/gone")).await;
    let kept = api.create_endpoint("acct_g", body("/kept")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = api
        .post("/v1/events", event("evt_g1", "outbound.sent", "acct_g"))
        .await;
    assert_eq!(status, 202);
    assert!(
        wait_until(WAIT, || dead_letters(&setup).len() == 2).await,
        "one letter per disabled endpoint"
    );
    let (status, _) = api.delete(&ep_path("acct_g", &gone["id"])).await;
    assert_eq!(status, 204);
    let (status, _) = api
        .patch(&ep_path("acct_g", &kept["id"]), json!({"disabled": false}))
        .await;
    assert_eq!(status, 200);

    let replay = "/v1/tenants/acct_g/dlq/replay";
    let (status, n) = api
        .post(replay, json!({"since": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(
        (status, n),
        (200, json!({"replayed": 1, "endpoint_deleted": 1}))
    );
    // Replayed right after the enable: it waits for the index rather than dying again.
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.first().map(|r| r.path.as_str()), Some("/kept"));
    let left = dead_letters(&setup);
    assert_eq!(left.len(), 1, "the deleted endpoint's letter is kept");
    assert_eq!(
        left[0].get::<String>("endpoint_id"),
        gone["id"].as_str().map(String::from)
    );
    let (status, n) = api.post(replay, json!({"ids": [left[0].id]})).await;
    assert_eq!(
        (status, n),
        (200, json!({"replayed": 0, "endpoint_deleted": 1}))
    );
    assert_eq!(dead_letters(&setup).len(), 1);
    assert_eq!(rx.count(), 1, "nothing is sent for it");
}

/// SPEC 5: `Retry-After` is honoured on 429, 502, 503 and 504 only. A 500 asking for ten hours
/// is retried on the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_only_on_429_502_503_504() {
    let rx = Receiver::start(Arc::new(|n, _| {
        if n == 0 {
            (
                500,
                vec![("retry-after".into(), "36000".into())],
                Duration::ZERO,
            )
        } else {
            (200, vec![], Duration::ZERO)
        }
    }))
    .await;
    let setup = Setup::new("nsl_retry_after")
        .with("retry:\n  schedule: [300ms, 1h]\n  jitter: 0\n")
        .endpoint("ep_ra", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_ra", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        2,
        "a 500's Retry-After held the retry back beyond the 300 ms schedule"
    );
}

/// Registration errors say which rule refused a host, never the internal address it resolved to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_host_name_says_which_rule_and_not_the_address() {
    let (_setup, _w, api) =
        admin_api(Setup::new("nsl_ssrf_msg").with("delivery:\n  allow_http: true\n")).await;
    let got = api
        .post(
            "/v1/tenants/acct_s/endpoints",
            json!({"url": "http://localhost:9/x", "filters": ["*"]}),
        )
        .await;
    assert_error(&got, 422, "invalid");
    let msg = got.1["error"]["message"].as_str().unwrap();
    assert!(msg.contains("loopback"), "{msg}");
    assert!(
        !msg.contains("127.0.0.1") && !msg.contains("::1"),
        "the message echoes the resolved address: {msg}"
    );
}

/// SPEC 6: syntax is judged before shape on every route: a truncated body is 400, even when
/// the part that was sent names a field the route does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_json_body_is_400_malformed_on_every_route() {
    let (_setup, _w, api) = admin_api(Setup::new("nsl_truncated")).await;
    let ep = api
        .create_endpoint(
            "acct_t",
            json!({"url": "http://example.com/h", "filters": ["*"]}),
        )
        .await;
    let id = ep["id"].as_str().unwrap();
    for (method, path) in [
        (Method::POST, "/v1/tenants/acct_t/endpoints".to_string()),
        (Method::PATCH, format!("/v1/tenants/acct_t/endpoints/{id}")),
        (Method::POST, "/v1/tenants/acct_t/dlq/replay".to_string()),
        (Method::POST, "/v1/events".to_string()),
    ] {
        let got = api
            .raw(method.clone(), &path, Some(r#"{"oops": "#.to_string()))
            .await;
        assert_error(&got, 400, "malformed");
    }
}

/// SIGTERM while a request hangs: webhookd exits within `shutdown_grace` (plus a moment), and
/// the interrupted delivery is made after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hanging_request_exits_within_the_grace() {
    let rx = Receiver::start(late(200, |n| {
        Duration::from_secs(if n == 0 { 120 } else { 0 })
    }))
    .await;
    let setup = Setup::new("nsl_sigterm")
        .with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 60s\n")
        .with("stream:\n  consumer: solo\n  block: 200ms\n  claim_idle: 2s\n")
        .with("shutdown_grace: 2s\n")
        .endpoint("ep_hang", "t", &rx.url("/"), &["*"]);
    let mut w = Webhookd::start(&setup).await;
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_term", "outbound.sent", "t", json!({}))],
    );
    assert!(wait_until(WAIT, || rx.count() == 1).await);
    let took = w.terminate(Duration::from_secs(15)).await;
    assert!(
        took < Duration::from_millis(3_000),
        "exit took {took:?} with shutdown_grace 2s"
    );
    drop(w);
    let _again = Webhookd::start(&setup).await;
    let got = rx.wait_for(2, Duration::from_secs(30)).await;
    assert!(
        got.len() >= 2,
        "the interrupted delivery was not made after restart"
    );
}

/// Gauges an operator alerts on move within a second of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_depth_gauge_moves_within_a_second() {
    let rx = Receiver::start(always(500)).await;
    let setup = Setup::new("nsl_gauge")
        .with("retry:\n  schedule: []\n")
        .endpoint("ep_dead", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    // Let the first gauge reading (at start) pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_gauge", "outbound.sent", "t", json!({}))],
    );
    assert!(wait_until(WAIT, || dead_letters(&setup).len() == 1).await);
    let seen = Instant::now();
    let mut depth = 0.0;
    while seen.elapsed() < Duration::from_secs(1) {
        depth = metric(&w.metrics().await, "webhookd_dlq_depth");
        if depth == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        depth, 1.0,
        "webhookd_dlq_depth lagged the dead letter by over a second"
    );
}

/// Static endpoints exist for as long as the config says so: after Redis comes back without
/// its data they are written again at once (they used to be written only at start, so the next
/// full reload installed an empty registry and their events were acknowledged with no fate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_endpoints_come_back_when_redis_loses_its_data() {
    let rx = Receiver::start(always(200)).await;
    let port = free_port();
    let server = OwnRedis::start(port).await;
    let url = server.url();
    let setup = Setup::new("nsl_static").endpoint("ep_static", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &url)]).await;
    drop(server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _again = OwnRedis::start(port).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = format!("{}{{endpoints}}:all", setup.prefix);
    let back = wait_until(WAIT, || {
        redis::cmd("HEXISTS")
            .arg(&key)
            .arg("ep_static")
            .query::<bool>(&mut conn)
            .unwrap_or(false)
    })
    .await;
    assert!(
        back,
        "the static endpoint was not written again; log:\n{}",
        w.log_text()
    );
    let ready = format!("http://127.0.0.1:{}/readyz", setup.port);
    assert!(wait_ready(&ready, WAIT).await);
    publish(
        &mut conn,
        &setup.stream(),
        &[envelope("evt_after_loss", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
}

/// A success ends the failure streak whichever replica sees it. Before, a replica cleared the
/// streak only if its own memory said the endpoint was failing, so a streak another replica
/// started survived this one's successes and later disabled a healthy endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_ends_a_failure_streak_another_replica_started() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("nsl_streak").endpoint("ep_ok", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    // Another replica's failure, written after this one started.
    let failing = format!("{}{{endpoints}}:failing", setup.prefix);
    let _: () = redis::cmd("HSET")
        .arg(&failing)
        .arg("ep_ok")
        .arg(webhookd::support::clock::now_ms() - 1_000)
        .query(&mut r)
        .unwrap();
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_streak", "outbound.sent", "t", json!({}))],
    );
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);
    let cleared = wait_until(Duration::from_secs(3), || {
        !redis::cmd("HEXISTS")
            .arg(&failing)
            .arg("ep_ok")
            .query::<bool>(&mut r)
            .unwrap()
    })
    .await;
    assert!(cleared, "the streak outlived a success");
}

/// While acknowledging fails, the acker keeps trying, and the finished entries stay claimed
/// meanwhile: they are neither forgotten (left pending for good) nor taken by `XAUTOCLAIM`
/// and sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_that_fail_are_retried_and_nothing_is_sent_twice() {
    let rx = Receiver::start(always(200)).await;
    let port = free_port();
    let server = OwnRedis::start(port).await;
    let url = server.url();
    let setup = Setup::new("nsl_acker")
        .with("stream:\n  consumer: solo\n  block: 200ms\n  claim_idle: 1s\n")
        .endpoint("ep_ack", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &url)]).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let acl = |conn: &mut redis::Connection, rule: &str| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rule)
            .query(conn)
            .unwrap();
    };
    acl(&mut conn, "-xack");
    let env: Vec<String> = (0..5)
        .map(|i| envelope(&format!("evt_ack{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut conn, &setup.stream(), &env);
    assert_eq!(rx.wait_for(5, WAIT).await.len(), 5);
    // Several claim_idle periods with every XACK refused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    acl(&mut conn, "+xack");
    let acked = wait_until(WAIT, || pending(&mut conn, &setup.stream()) == 0).await;
    assert!(acked, "entries stayed pending after XACK was allowed again");
    let ids = by_webhook_id(&rx.received());
    assert!(ids.values().all(|&n| n == 1), "sent twice: {ids:?}");
}

/// The invalid stream keeps at most `stream.invalid_max_len` entries, the newest, each with its
/// raw event verbatim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invalid_stream_keeps_at_most_its_cap_newest_first() {
    let setup = Setup::new("nsl_invalid_cap")
        .with("stream:\n  consumer: solo\n  block: 200ms\n  invalid_max_len: 10\n");
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let bad: Vec<String> = (0..30).map(|i| format!("not json {i}")).collect();
    publish(&mut r, &setup.stream(), &bad);
    let invalid = format!("{}:invalid", setup.stream());
    let consumed = wait_until(WAIT, || {
        let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&invalid)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut r)
            .unwrap();
        last.ids
            .first()
            .and_then(|e| e.get::<String>("event"))
            .is_some_and(|e| e == "not json 29")
    })
    .await;
    assert!(consumed, "the last invalid entry never arrived");
    let len: u64 = redis::cmd("XLEN").arg(&invalid).query(&mut r).unwrap();
    assert_eq!(len, 10, "the invalid stream is capped");
}

/// Dead letters are kept for `dlq.retention`: older ones are removed (and counted in
/// `webhookd_dlq_trimmed_total`), the rest stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_older_than_the_retention_are_trimmed() {
    let rx = Receiver::start(always(500)).await;
    let setup = Setup::new("nsl_dlq_retention")
        .with("retry:\n  schedule: []\n")
        .with("dlq:\n  retention: 2s\n")
        .endpoint("ep_r", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_old", "outbound.sent", "t", json!({}))],
    );
    assert!(wait_until(WAIT, || dead_letters(&setup).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_new", "outbound.sent", "t", json!({}))],
    );
    let trimmed = wait_until(WAIT, || {
        let dls = dead_letters(&setup);
        dls.len() == 1 && dls[0].get::<String>("event_id").as_deref() == Some("evt_new")
    })
    .await;
    assert!(
        trimmed,
        "the expired dead letter is still there: {:?}",
        dead_letters(&setup).len()
    );
    assert_eq!(
        metric(&w.metrics().await, "webhookd_dlq_trimmed_total"),
        1.0
    );
}

/// A static endpoint disabled at run time (here by a 410) is enabled again with
/// `PATCH {"disabled": false}`, the one change the API allows on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_endpoint_disabled_at_run_time_can_be_enabled_by_patch() {
    let rx = Receiver::start(first_then_ok(1, 410)).await;
    let (setup, _w, api) = admin_api(Setup::new("nsl_static_enable").endpoint(
        "ep_gone",
        "acct_g",
        &rx.url("/"),
        &["*"],
    ))
    .await;
    let path = "/v1/tenants/acct_g/endpoints/ep_gone";
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_gone", "outbound.sent", "acct_g", json!({}))],
    );
    let mut disabled = false;
    for _ in 0..100 {
        if api.get(path).await.1["disabled"] == true {
            disabled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(disabled, "the 410 did not disable the static endpoint");
    assert_error(
        &api.patch(path, json!({"disabled": false, "description": "x"}))
            .await,
        409,
        "conflict",
    );
    let (status, ep) = api.patch(path, json!({"disabled": false})).await;
    assert_eq!(status, 200, "{ep}");
    assert_eq!(ep["disabled"], false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope("evt_back", "outbound.sent", "acct_g", json!({}))],
    );
    let got = rx.wait_for(2, WAIT).await;
    assert!(got.iter().any(|g| g.header("webhook-id") == "evt_back"));
}

/// A retry job this build cannot read (written by another version, or damaged) is set aside
/// in a quarantine hash with a log line and a metric, never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_retry_job_is_quarantined_not_deleted() {
    let setup = Setup::new("nsl_bad_job");
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    let jobs = format!("{}{{retry}}:jobs", setup.prefix);
    let due = format!("{}{{retry}}:due", setup.prefix);
    let quarantine = format!("{}{{retry}}:quarantine", setup.prefix);
    let _: () = redis::pipe()
        .hset(&jobs, "1-0:ep_x", "{not a job")
        .zadd(&due, "1-0:ep_x", 0)
        .query(&mut r)
        .unwrap();
    let set_aside = wait_until(WAIT, || {
        redis::cmd("HGET")
            .arg(&quarantine)
            .arg("1-0:ep_x")
            .query::<Option<String>>(&mut r)
            .unwrap()
            .as_deref()
            == Some("{not a job")
    })
    .await;
    assert!(set_aside, "the unreadable job was not kept");
    let still_due: Option<f64> = redis::cmd("ZSCORE")
        .arg(&due)
        .arg("1-0:ep_x")
        .query(&mut r)
        .unwrap();
    assert_eq!(still_due, None, "it no longer comes due again and again");
    assert_eq!(
        metric(&w.metrics().await, "webhookd_retry_jobs_quarantined_total"),
        1.0
    );
}

/// Each endpoint keeps at most `dlq.max_per_endpoint` dead letters, the newest; the oldest go
/// first (counted in `webhookd_dlq_trimmed_total`), and other endpoints' letters are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_keeps_at_most_its_share_of_dead_letters() {
    let rx = Receiver::start(always(500)).await;
    let setup = Setup::new("nsl_dlq_cap")
        .with("retry:\n  schedule: []\n")
        .with("dlq:\n  max_per_endpoint: 3\n")
        .endpoint("ep_many", "t", &rx.url("/m"), &["outbound.sent"])
        .endpoint("ep_few", "t", &rx.url("/f"), &["outbound.bounced"]);
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    let mut env: Vec<String> = (0..8)
        .map(|i| envelope(&format!("evt_cap{i}"), "outbound.sent", "t", json!({})))
        .collect();
    env.push(envelope("evt_other", "outbound.bounced", "t", json!({})));
    publish(&mut r, &setup.stream(), &env);
    assert!(wait_until(WAIT, || rx.count() == 9).await);
    let capped = wait_until(WAIT, || {
        let dls = dead_letters(&setup);
        let many = dls
            .iter()
            .filter(|d| d.get::<String>("endpoint_id").as_deref() == Some("ep_many"))
            .count();
        many == 3 && dls.len() == 4
    })
    .await;
    assert!(capped, "{} dead letters", dead_letters(&setup).len());
    let kept: Vec<String> = dead_letters(&setup)
        .iter()
        .filter_map(|d| d.get::<String>("event_id"))
        .collect();
    assert!(kept.contains(&"evt_other".to_string()), "{kept:?}");
    assert!(
        !kept.contains(&"evt_cap0".to_string()),
        "the oldest go first: {kept:?}"
    );
    assert_eq!(
        metric(&w.metrics().await, "webhookd_dlq_trimmed_total"),
        5.0
    );
}

/// Item 9: every endpoint change is a compare-and-set. Two rotations at once both sign
/// (the later one's secret current, the earlier one's overlapping), a PATCH racing a
/// disable keeps both changes, and two PATCHes of different fields keep both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_endpoint_changes_are_all_kept() {
    let rx = Receiver::start(always(200)).await;
    let (setup, _w, api) = admin_api(Setup::new("nsl_cas")).await;
    let (store, _) = setup.registry().await;
    let ep = api
        .create_endpoint("acct_c", json!({"url": rx.url("/c"), "filters": ["*"]}))
        .await;
    let id = ep["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tenants/acct_c/endpoints/{id}");
    let rotate = format!("{path}/secret/rotate");

    for round in 0..6 {
        let (a, b) = tokio::join!(api.post(&rotate, json!({})), api.post(&rotate, json!({})));
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        let (status, tested) = api.post(&format!("{path}/test"), json!({})).await;
        assert_eq!(status, 200, "{tested}");
        let got = rx.wait_for(round + 1, WAIT).await;
        let last = got.last().unwrap();
        for told in [&a.1["secret"], &b.1["secret"]] {
            assert!(
                verify(last, told.as_str().unwrap()),
                "round {round}: a secret a rotation answered does not sign: {}",
                last.header("webhook-signature")
            );
        }

        let description = format!("round {round}");
        let (patched, disabled) = tokio::join!(
            api.patch(&path, json!({"description": description})),
            webhookd::deliver::disable(&store, &id, "endpoint answered 410 Gone"),
        );
        assert_eq!(patched.0, 200, "{patched:?}");
        assert!(
            disabled.unwrap(),
            "round {round}: the disable found it enabled"
        );
        let (_, now) = api.get(&path).await;
        assert_eq!(now["description"], description.as_str(), "round {round}");
        assert_eq!(
            now["disabled"], true,
            "round {round}: the PATCH re-enabled it: {now}"
        );

        let (x, y) = tokio::join!(
            api.patch(&path, json!({"description": format!("d{round}")})),
            api.patch(&path, json!({"metadata": {"round": round.to_string()}})),
        );
        assert_eq!((x.0, y.0), (200, 200));
        let (_, now) = api.get(&path).await;
        assert_eq!(now["description"], format!("d{round}").as_str(), "{now}");
        assert_eq!(
            now["metadata"]["round"],
            round.to_string().as_str(),
            "{now}"
        );

        let (status, _) = api.patch(&path, json!({"disabled": false})).await;
        assert_eq!(status, 200);
    }
}

/// webhookd's peak resident memory so far, in kB (Linux `VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Item 10: a tenant's replay by `since` reads the dead-letter stream in chunks and keeps
/// only its own letters: 80 MB of another tenant's dead letters never sit in webhookd's
/// memory (before: all of them were loaded, then filtered), and none of them moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_by_since_holds_one_chunk_not_every_tenants_letters() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("nsl_replay_chunks");
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let ep = api
        .create_endpoint("acct_r", json!({"url": rx.url("/r"), "filters": ["*"]}))
        .await;
    let ep_id = ep["id"].as_str().unwrap();
    let dlq = format!("{}dlq", setup.prefix);
    let mut r = redis();
    let now = webhookd::support::clock::now_ms();
    let letter = |i: usize, tenant: &str, endpoint: &str, body: &str| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&dlq).arg("*");
        for (k, v) in [
            ("tenant", tenant.to_string()),
            ("endpoint_id", endpoint.to_string()),
            ("event_id", format!("evt_{tenant}_{i}")),
            ("event_type", "outbound.sent".to_string()),
            ("attempts", "3".to_string()),
            ("last_status", "500".to_string()),
            ("last_error", "HTTP 500".to_string()),
            ("first_attempt_at", now.to_string()),
            ("dead_at", now.to_string()),
            ("published_at", now.to_string()),
            ("body", body.to_string()),
        ] {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    let big = json!({"type": "outbound.sent", "data": {"pad": "x".repeat(20_000)}}).to_string();
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.add_command(letter(chunk * 200 + i, "acct_other", "ep_other", &big))
                .ignore();
        }
        if chunk % 4 == 0 {
            for i in 0..10 {
                let small = json!({"type": "outbound.sent", "n": chunk * 10 + i}).to_string();
                pipe.add_command(letter(chunk * 10 + i, "acct_r", ep_id, &small))
                    .ignore();
            }
        }
        pipe.query::<()>(&mut r).unwrap();
    }
    let before = peak_rss_kb(w.pid());

    let (status, body) = api
        .post(
            "/v1/tenants/acct_r/dlq/replay",
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let grown_mb = (peak_rss_kb(w.pid()) - before) / 1024;
    assert_eq!(
        (status, body),
        (200, json!({"replayed": 50, "endpoint_deleted": 0}))
    );
    assert!(
        grown_mb < 30,
        "peak memory grew {grown_mb} MB while replaying 50 small letters"
    );
    assert_eq!(xlen(&dlq), 4000, "the other tenant's letters stay");
    assert_eq!(rx.wait_for(50, WAIT).await.len(), 50);
    let _: () = redis::cmd("DEL").arg(&dlq).query(&mut r).unwrap();
}

fn redis_at(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Whether the server on `port` is a replica whose link to its primary is up.
fn replica_in_sync(port: u16) -> bool {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut redis_at(port))
        .unwrap_or_default();
    info.contains("role:slave") && info.contains("master_link_status:up")
}

/// A primary on `pa` and its replica on `pb`, in sync.
async fn primary_and_replica(pa: u16, pb: u16) -> (OwnRedis, OwnRedis) {
    let servers = (OwnRedis::start(pa).await, OwnRedis::start(pb).await);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(pa)
        .query(&mut redis_at(pb))
        .unwrap();
    assert!(wait_until(WAIT, || replica_in_sync(pb)).await);
    servers
}

/// The failover: B is promoted, A becomes its replica, the proxy's address leads to B.
async fn fail_over(pa: u16, pb: u16, proxy: &Proxy) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut redis_at(pb))
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(pb)
        .query(&mut redis_at(pa))
        .unwrap();
    proxy.point_to(pb);
    assert!(wait_until(WAIT, || replica_in_sync(pa)).await);
}

/// A connection whose commands alone meet the demoted server (no pipeline, no transaction
/// among them: the consumers' own connection) is replaced too. A command's READONLY comes
/// back as a value, not as an error of the connection, and was once missed: the duplicate
/// check then failed for good after a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_only_meets_readonly_in_replies_follows_the_failover() {
    let (pa, pb) = (free_port(), free_port());
    let _servers = primary_and_replica(pa, pb).await;
    let proxy = Proxy::start(pa).await;
    let conn = webhookd::db::conn::connect(&proxy.url(), Duration::from_secs(5))
        .await
        .unwrap();
    let set = |conn: webhookd::db::conn::Conn| async move {
        let mut conn = conn;
        let script = redis::Script::new("return redis.call('SET', KEYS[1], 'v')");
        script
            .key("nsl_readonly")
            .invoke_async::<()>(&mut conn)
            .await
    };
    set(conn.clone()).await.unwrap();

    fail_over(pa, pb, &proxy).await;
    let refused = set(conn.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("read only"), "{refused}");
    let writes_again = wait_until_async(WAIT, || {
        let conn = conn.clone();
        async move { set(conn).await.is_ok() }
    })
    .await;
    assert!(writes_again, "the connection stayed on the demoted server");
}

/// Item 4: after a failover demotes the primary webhookd was connected to, its connections
/// answer READONLY. webhookd must notice, connect again (through the address, which now
/// leads to the new primary), report not-ready meanwhile, and carry on: deliveries, API
/// writes and readiness all come back. Two real redis-servers swap roles with REPLICAOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_demotes_the_primary_is_followed_to_the_new_one() {
    let rx = Receiver::start(always(200)).await;
    let (pa, pb) = (free_port(), free_port());
    let _servers = primary_and_replica(pa, pb).await;
    let proxy = Proxy::start(pa).await;
    let setup = Setup::new("nsl_failover").endpoint("ep_fo", "t", &rx.url("/fo"), &["*"]);
    let w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &proxy.url())]).await;
    let api = Api::admin(&setup);
    publish(
        &mut redis_at(pa),
        &setup.stream(),
        &[envelope("evt_before", "outbound.sent", "t", json!({}))],
    );
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);

    fail_over(pa, pb, &proxy).await;

    publish(
        &mut redis_at(pb),
        &setup.stream(),
        &[envelope("evt_after", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(2, WAIT).await;
    assert!(
        got.iter().any(|g| g.header("webhook-id") == "evt_after"),
        "nothing delivered after the failover; log:\n{}",
        w.log_text()
    );
    let deadline = Instant::now() + WAIT;
    let created = loop {
        let body = json!({"url": rx.url("/new"), "filters": ["*"]});
        let (status, _) = api.post("/v1/tenants/t/endpoints", body).await;
        if status == 201 || Instant::now() > deadline {
            break status == 201;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(created, "API writes still fail after the failover");
    let ready = format!("http://127.0.0.1:{}/readyz", setup.port);
    assert!(wait_ready(&ready, WAIT).await);
}
