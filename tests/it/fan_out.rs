//! Core dispatch promises (SPEC 1–4): the right endpoints get each event, signed and shaped
//! as the SPEC says, and bad entries never stop good ones.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

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
    assert!(wait_until(WAIT, || { pending(&mut r, &setup.stream()) == 0 }).await);
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

/// The attempt log trims a list only once a push found it over its 100 records (issue 16):
/// a busy endpoint's list still ends at exactly 100, the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_endpoints_attempt_list_ends_at_its_newest_hundred() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("attempt_cap").endpoint("ep", "acme", &rx.url("/"), &["outbound.*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let list = format!("{}attempts:ep", setup.prefix);
    // In waves, so the list outgrows the cap in more than one write of the attempt log.
    for wave in 0..3 {
        let env: Vec<String> = (0..100)
            .map(|i| {
                let id = format!("evt_{wave}_{i}");
                envelope(&id, "outbound.delivered", "acme", json!({}))
            })
            .collect();
        publish(&mut r, &setup.stream(), &env);
        rx.wait_for(100 * (wave + 1), WAIT).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut len = 0;
    let capped = wait_until(WAIT, || {
        len = redis::cmd("LLEN")
            .arg(&list)
            .query::<usize>(&mut r)
            .unwrap();
        len == 100
    })
    .await;
    assert!(capped, "{len} records kept");
    let newest: Vec<String> = redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    let last_wave = newest.iter().filter(|r| r.contains("evt_2_")).count();
    assert_eq!(last_wave, 100, "the newest are kept");

    // A list awaiting its trim holds more than 100; the API still shows at most the newest 100.
    let _: () = redis::cmd("LPUSH")
        .arg(&list)
        .arg(&newest[..50])
        .query(&mut r)
        .unwrap();
    let url = format!(
        "{}/v1/tenants/acme/endpoints/ep/attempts?limit=250",
        setup.api()
    );
    let (status, body) = http(hyper::Method::GET, &url, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        shown["data"].as_array().unwrap().len(),
        100,
        "records shown"
    );
}

/// A webhookd with endpoint `ep_paced` of tenant `t` at `per_sec` deliveries a second, and
/// `n` events published for it; answers what arrived and the running webhookd.
async fn rate_limited(name: &str, per_sec: u32, n: usize) -> (Vec<Received>, Webhookd) {
    use webhookd::registry::EndpointRecord;

    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new(name);
    let w = Webhookd::start(&setup).await;
    let (store, sealer) = setup.registry().await;
    let rec = EndpointRecord {
        rate_limit: Some(per_sec),
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
    let env: Vec<String> = (0..n)
        .map(|i| envelope(&format!("rl{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut redis(), &setup.stream(), &env);
    let got = rx.wait_for(n, WAIT).await;
    assert_eq!(
        by_webhook_id(&got).len(),
        n,
        "every delivery arrives, paced or deferred"
    );
    (got, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_rate_limit_spaces_its_deliveries_and_loses_none() {
    let (got, _w) = rate_limited("ratelimit", 4, 8).await;
    let first = got.iter().map(|g| g.at).min().unwrap();
    let last = got.iter().map(|g| g.at).max().unwrap();
    // 4 per second, evenly spaced: 8 deliveries need at least 7 intervals of 250 ms.
    assert!(
        last - first >= Duration::from_millis(1700),
        "8 deliveries at 4/s came within {:?}",
        last - first
    );
}

/// SPEC 5: parking costs a bounded, small number of writes, not one per look. A rate-limited
/// endpoint's backlog is pulled only as its slots come near: before, each look at it (ten a
/// second) pulled deliveries whose slot was seconds away and parked them again, 87 parkings
/// for 12 deliveries at 2 a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_backlog_is_not_parked_again_at_every_look() {
    let events = 12;
    let (_, w) = rate_limited("ratelimit_parks", 2, events).await;
    let parked = metric(
        &w.metrics().await,
        "webhookd_deliveries_parked_total{reason=\"rate_limit\"}",
    );
    assert!(
        parked <= events as f64,
        "{parked} parkings for {events} rate-limited deliveries"
    );
}

/// SPEC 1 and 8: an event id is remembered for `stream.dedup_window` (default 24 h), and a
/// second entry carrying it within the window is not delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_is_remembered_for_the_configured_dedup_window() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("dedup_window")
        .with("stream:\n  block: 200ms\n  dedup_window: 1h\n")
        .endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let twice = [
        envelope("evt_window", "outbound.sent", "t", json!({})),
        envelope("evt_window", "outbound.sent", "t", json!({})),
    ];
    publish(&mut r, &setup.stream(), &twice);
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1, "the second entry is a duplicate");
    // Every key the duplicate check keeps lives at least the window and at most a quarter
    // longer (it remembers ids in segments of a quarter window each).
    let ttls = dedup_ttls(&setup);
    assert!(!ttls.is_empty(), "the duplicate check keeps no keys");
    for ttl in ttls {
        assert!(
            (3000..=4500).contains(&ttl),
            "remembered for the 1h window, TTL {ttl}"
        );
    }
}

/// TTLs (s) of the duplicate check's keys under `setup`'s prefix.
fn dedup_ttls(setup: &Setup) -> Vec<i64> {
    let mut r = redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*dedup*", setup.prefix))
        .query(&mut r)
        .unwrap();
    keys.iter()
        .map(|k| redis::cmd("TTL").arg(k).query(&mut r).unwrap())
        .filter(|ttl: &i64| *ttl != -1)
        .collect()
}

/// Issue 13: the duplicate check costs at most 60 bytes per event over its window
/// (`MEMORY USAGE` of every key it keeps, summed; the expiry table's entries are per key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duplicate_check_costs_at_most_60_bytes_per_event() {
    const EVENTS: usize = 5_000;
    let setup = Setup::new("dedup_memory").with("stream:\n  block: 200ms\n  batch: 500\n");
    let w = Webhookd::start(&setup).await;
    let mut r = redis();
    let envelopes: Vec<String> = (0..EVENTS)
        .map(|i| {
            envelope(
                &format!("evt_{i:06}_01J9ZQ4S8K"),
                "outbound.sent",
                &format!("acct_{}", i % 50),
                json!({}),
            )
        })
        .collect();
    for chunk in envelopes.chunks(1000) {
        publish(&mut r, &setup.stream(), chunk);
    }
    let deadline = std::time::Instant::now() + WAIT;
    let mut consumed = 0.0;
    while consumed < EVENTS as f64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        consumed = metric(&w.metrics().await, "webhookd_events_consumed_total");
    }
    let acknowledged = wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await;
    let consumed = consumed == EVENTS as f64 && acknowledged;
    assert!(consumed, "not all events consumed; log:\n{}", w.log_text());
    let (bytes, _, keys) = memory_of(&format!("{}*dedup*", setup.prefix));
    let per_event = bytes as f64 / EVENTS as f64;
    eprintln!("duplicate check: {per_event:.1} bytes per event in {keys} keys");
    assert!(
        per_event <= 60.0,
        "{per_event:.1} bytes per event ({keys} keys, {bytes} bytes)"
    );
    let segments =
        segments_match_their_hashes(&mut r, &format!("{}{{dedup}}:v3:", setup.prefix), EVENTS);
    // Every segment is one probe more for each new id until it expires: a fresh deployment's
    // first 5,000 ids fit in one (it holds 16,384: 256 hashes of 64).
    assert!(
        segments <= 1,
        "{EVENTS} ids in {segments} segments: each costs a probe per id"
    );
}

/// Issue 16: a new id costs one probe (`HGET`) per older segment of the duplicate check and
/// one write (`HSETNX`) in the segment being filled, which is its probe there too. Each id was
/// probed in every segment and then written (`HSET`): a command more per new id.
/// On a Redis of the test's own, whose command counts are this webhookd's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_id_costs_a_probe_per_older_segment_and_one_write() {
    // The first segment holds 16,384 ids (256 hashes of 64); the rest go to a second.
    const EVENTS: usize = 20_000;
    const FIRST: usize = 16_384;
    let port = free_port();
    let server = OwnRedis::start(port).await;
    let url = server.url();
    let setup = Setup::new("dedup_probes").with("stream:\n  block: 200ms\n  batch: 500\n");
    let w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &url)]).await;
    let mut r = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let envelopes: Vec<String> = (0..EVENTS)
        .map(|i| {
            envelope(
                &format!("evt_probe_{i:05}"),
                "outbound.sent",
                "t",
                json!({}),
            )
        })
        .collect();
    let calls_before = command_calls(&mut r);
    for chunk in envelopes.chunks(1000) {
        publish(&mut r, &setup.stream(), chunk);
    }
    let consumed = w
        .metric_until("webhookd_events_consumed_total", |n| n >= EVENTS as f64)
        .await;
    assert_eq!(consumed, EVENTS as f64, "log:\n{}", w.log_text());
    assert!(wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await);
    let calls = command_calls(&mut r);
    let made = |cmd: &str| calls.get(cmd).unwrap_or(&0) - calls_before.get(cmd).unwrap_or(&0);
    let segments =
        segments_match_their_hashes(&mut r, &format!("{}{{dedup}}:v3:", setup.prefix), EVENTS);
    eprintln!(
        "{EVENTS} new ids: {} HGET, {} HSETNX, {} HSET, {} HLEN",
        made("hget"),
        made("hsetnx"),
        made("hset"),
        made("hlen")
    );
    assert_eq!(segments, 2);
    assert_eq!(made("hsetnx"), EVENTS as u64, "one write per new id");
    assert_eq!(
        made("hget"),
        (EVENTS - FIRST) as u64,
        "a probe of the first segment for each id of the second, none of the segment written"
    );
}

/// The duplicate check spells a hash's number from tables of digits, not with printf: every
/// number a segment's hashes can have (up to 2^20) must be spelt as every earlier build spelt
/// it, or the ids in the hashes they wrote would no longer be found.
#[test]
fn every_hash_of_a_segment_is_named_as_earlier_builds_named_it() {
    let core = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/ingest/dedup/dedup_core.lua"
    ))
    .unwrap();
    // All below 20,000, then a spread up to the largest, and each power of ten's edges.
    let script = format!(
        "{core}
local seg = {{n = 1048576, prefix = 'p:', keys = {{}}}}
local function named(b)
  return key_of(seg, b) == 'p:' .. string.format('%d', b)
end
for b = 0, 19999 do if not named(b) then return b end end
for b = 20000, 1048575, 997 do if not named(b) then return b end end
for _, b in ipairs({{99999, 100000, 100001, 999999, 1000000, 1000001, 1048575}}) do
  if not named(b) then return b end
end
return -1"
    );
    let misnamed: i64 = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .query(&mut redis())
        .unwrap();
    assert_eq!(misnamed, -1, "hash {misnamed} is named differently");
}

/// `INFO commandstats` as command name -> calls.
fn command_calls(r: &mut redis::Connection) -> webhookd::db::commandstats::Calls {
    let info: String = redis::cmd("INFO").arg("commandstats").query(r).unwrap();
    webhookd::db::commandstats::parse(&info)
}

/// Every hash of the duplicate check is named `<base><segment id>:<bucket>` in plain digits
/// (as every earlier build named them), for a segment in the table and a bucket below its
/// hash count; and each segment's count in the table is the fields its hashes hold. Answers
/// how many segments the table holds.
fn segments_match_their_hashes(r: &mut redis::Connection, base: &str, events: usize) -> usize {
    let table: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{base}segments"))
        .query(r)
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{base}*:*"))
        .query(r)
        .unwrap();
    let mut held: std::collections::HashMap<&str, u64> = Default::default();
    for key in &keys {
        let (id, bucket) = key[base.len()..]
            .split_once(':')
            .expect("<segment>:<bucket>");
        let record = table
            .get(id)
            .unwrap_or_else(|| panic!("{key}: no segment {id}"));
        let n: u64 = record.split(' ').nth(2).unwrap().parse().unwrap();
        assert!(
            bucket.bytes().all(|b| b.is_ascii_digit()) && bucket.parse::<u64>().unwrap() < n,
            "{key}: bucket of a segment with {n} hashes"
        );
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "{key}");
        let fields: u64 = redis::cmd("HLEN").arg(key).query(r).unwrap();
        *held.entry(id).or_default() += fields;
    }
    let mut total = 0;
    for (id, record) in &table {
        let count: u64 = record.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(
            held.get(id.as_str()).copied().unwrap_or(0),
            count,
            "segment {id}: {record}"
        );
        total += count;
    }
    assert_eq!(total, events as u64, "every event remembered once");
    table.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_to_one_host_is_bounded_per_tenant_and_another_tenant_there_does_not_wait() {
    // Each of "big"'s requests takes 600 ms (quick: under a second), "small"'s none.
    let held = Duration::from_millis(600);
    let rx = Receiver::start(Arc::new(move |_, r: &Received| {
        let delay = if r.path.starts_with("/big/") {
            held
        } else {
            Duration::ZERO
        };
        (200, vec![], delay)
    }))
    .await;
    let mut setup = Setup::new("hostroom");
    for i in 0..400 {
        setup = setup.endpoint(
            &format!("big{i}"),
            "big",
            &rx.url(&format!("/big/{i}")),
            &["*"],
        );
    }
    let setup = setup.endpoint("small", "small", &rx.url("/small"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    publish(
        &mut r,
        &setup.stream(),
        &[
            envelope("e_big", "outbound.sent", "big", json!({})),
            envelope("e_small", "outbound.sent", "small", json!({})),
        ],
    );
    let got = rx.wait_for(401, WAIT).await;
    assert_eq!(got.len(), 401, "every delivery arrives");
    let big: Vec<&Received> = got.iter().filter(|r| r.path.starts_with("/big/")).collect();
    let at_once = most_at_once(&big, held);
    // The default max_in_flight (1024) gives a tenant a quarter of it at one host.
    assert!(
        (100..=256).contains(&at_once),
        "one tenant's requests to one host in flight at once: {at_once}"
    );
    let small = got.iter().find(|r| r.path == "/small").unwrap();
    let first_big = big.iter().map(|r| r.at).min().unwrap();
    assert!(
        small.at < first_big + held,
        "the other tenant at the same host did not wait for the first 256 to finish"
    );
}
