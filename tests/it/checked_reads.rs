//! SPEC 1's duplicate check at a steady rate (issue 16): a light read and its check are one
//! call (`read_checked.lua`), which claims ids from the events' JSON. The ids it claims and
//! the ones the two-step check claims must be the same, an invalid event must not keep an id
//! from a valid one, and ids the previous layout remembers stay duplicates until they expire.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(30);

/// XADDs `events` one a millisecond (a steady 1,000/s), on a connection of its own.
async fn publish_steadily(url: &str, stream: &str, events: Vec<String>) -> Vec<String> {
    let (url, stream) = (url.to_string(), stream.to_string());
    tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let start = Instant::now();
        let mut ids = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let due = start + Duration::from_millis(i as u64);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let id: String = redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("event")
                .arg(e)
                .query(&mut c)
                .unwrap();
            ids.push(id);
        }
        ids
    })
    .await
    .unwrap()
}

pub(crate) fn calls(r: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(r).unwrap();
    *webhookd::db::commandstats::parse(&info)
        .get(command)
        .unwrap_or(&0)
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Every (fingerprint → owner tag) the duplicate check's hashes under `base` hold.
pub(crate) fn claims(
    r: &mut redis::Connection,
    base: &str,
) -> std::collections::HashMap<Vec<u8>, String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{base}*:*"))
        .query(r)
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for key in keys {
        let fields: Vec<(Vec<u8>, String)> = redis::cmd("HGETALL").arg(&key).query(r).unwrap();
        out.extend(fields);
    }
    out
}

/// The layout's claim of `id` (tenant `tenant`) for the entry `entry`: 128 bits of SHA-1 of
/// the domain, tenant and id, and 24 bits of SHA-1 of the entry id, as a number.
pub(crate) fn v3_claim(tenant: &str, id: &str, entry: &str) -> (Vec<u8>, String) {
    let fp = sha1(&[
        b"webhookd dedup v3\0",
        tenant.as_bytes(),
        b"\0",
        id.as_bytes(),
    ]);
    let tag = sha1(&[entry.as_bytes()]);
    let tag = u32::from_be_bytes([0, tag[0], tag[1], tag[2]]);
    (fp[..16].to_vec(), tag.to_string())
}

/// A test's own Redis (its command counts are this webhookd's alone; kept while the first
/// part lives), its URL, a receiver, a setup with one endpoint of tenant t1 taking every
/// event, and a connection.
pub(crate) async fn own(
    name: &str,
    stream: &str,
) -> (OwnRedis, String, Receiver, Setup, redis::Connection) {
    let server = OwnRedis::start(free_port()).await;
    let url = server.url();
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new(name)
        .with(&format!("stream:\n  block: 200ms\n{stream}"))
        .endpoint("ep1", "t1", &rx.url("/"), &["*"]);
    let r = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    (server, url, rx, setup, r)
}

pub(crate) async fn start(setup: &Setup, url: &str) -> Webhookd {
    Webhookd::start_with_env(setup, &[("WEBHOOKD_REDIS__URL", url)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_checked_in_one_call_and_the_two_step_check_claim_the_same_ids() {
    let (_server, url, rx, setup, mut r) = own("checked_ids", "").await;
    let w = start(&setup, &url).await;
    let ev = |id: &str| envelope(id, "outbound.sent", "t1", json!({}));

    // At once: one read, checked after it (the two-step check).
    let first: Vec<String> = (0..10).map(|i| format!("idle_{i}")).collect();
    let first_entries = publish(
        &mut r,
        &setup.stream(),
        &first.iter().map(|id| ev(id)).collect::<Vec<_>>(),
    );
    rx.wait_for(10, WAIT).await;
    let pauses_before = calls(&mut r, "xread");

    // Steadily: reads checked in one call. Every 50th repeats an id read at once above.
    let mut steady_ids = Vec::new();
    let mut events = Vec::new();
    for i in 0..600 {
        if i % 50 == 25 {
            events.push(ev(&first[i / 50 % 10]));
        } else {
            let id = format!("steady_{i}");
            events.push(ev(&id));
            steady_ids.push((i, id));
        }
    }
    let steady_entries = publish_steadily(&url, &setup.stream(), events).await;
    let got = rx.wait_for(10 + steady_ids.len(), WAIT).await;
    assert_eq!(got.len(), 10 + steady_ids.len(), "log:\n{}", w.log_text());
    let pauses = calls(&mut r, "xread") - pauses_before;
    assert!(
        pauses >= 50,
        "a steady 1,000/s was read in checked reads, each after a pause kept by Redis \
         ({pauses} pauses)"
    );

    // At once again: repeats of ids the checked reads claimed, checked in two steps.
    let again: Vec<String> = steady_ids
        .iter()
        .step_by(40)
        .map(|(_, id)| ev(id))
        .collect();
    publish(&mut r, &setup.stream(), &again);
    assert!(
        wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await,
        "log:\n{}",
        w.log_text()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = by_webhook_id(&rx.received());
    assert_eq!(ids.len(), 10 + steady_ids.len(), "every id once");
    assert!(ids.values().all(|&n| n == 1), "no id twice: {ids:?}");

    // Both ways wrote the same layout: each id under its first entry.
    let held = claims(&mut r, &format!("{}{{dedup}}:v3:", setup.prefix));
    for (id, entry) in first.iter().zip(&first_entries) {
        let (fp, tag) = v3_claim("t1", id, entry);
        assert_eq!(held.get(&fp), Some(&tag), "{id}, checked in two steps");
    }
    for (i, id) in &steady_ids {
        let (fp, tag) = v3_claim("t1", id, &steady_entries[*i]);
        assert_eq!(held.get(&fp), Some(&tag), "{id}, checked with its read");
    }
    assert_eq!(held.len(), 10 + steady_ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_event_read_and_checked_in_one_call_does_not_keep_its_id_from_a_valid_one() {
    let (_server, url, rx, setup, mut r) = own("checked_invalid", "").await;
    let w = start(&setup, &url).await;
    // Tenant and id are there (the script claims the id), `created_at` is not (webhookd
    // sets the event aside).
    let invalid = json!({"id": "shared", "type": "outbound.sent", "tenant": "t1", "data": {}});
    let mut events: Vec<String> = (0..400)
        .map(|i| envelope(&format!("e{i}"), "outbound.sent", "t1", json!({})))
        .collect();
    events[200] = invalid.to_string();
    events[300] = envelope("shared", "outbound.sent", "t1", json!({"valid": true}));
    let pauses_before = calls(&mut r, "xread");
    publish_steadily(&url, &setup.stream(), events).await;
    let got = rx.wait_for(399, WAIT).await;
    assert!(
        calls(&mut r, "xread") - pauses_before >= 50,
        "checked reads"
    );
    let shared: Vec<_> = got
        .iter()
        .filter(|g| g.header("webhook-id") == "shared")
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "the valid event with the invalid one's id is delivered; log:\n{}",
        w.log_text()
    );
    assert_eq!(shared[0].json()["data"]["valid"], true);
    assert_eq!(got.len(), 399, "log:\n{}", w.log_text());
    let invalid_key = format!("{}:invalid", setup.stream());
    assert!(
        wait_until(WAIT, || redis::cmd("XLEN")
            .arg(&invalid_key)
            .query::<u64>(&mut r)
            .unwrap()
            == 1)
        .await,
        "the invalid event is set aside"
    );
}

/// Issue 16's upgrade: ids the previous layout (SHA-256 fingerprints) remembers are still
/// duplicates, whichever way they are read; once its last segment has expired, reads are
/// checked in one call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_the_previous_layout_remembers_stay_duplicates_until_it_expires() {
    let (_server, url, rx, setup, mut r) = own("checked_v2", "  dedup_window: 4s\n").await;
    // The previous build's check, as it claimed "old_1" and "old_2" for entry 1-1.
    let base = format!("{}{{dedup}}:", setup.prefix);
    let v2 = redis::Script::new(include_str!("../fixtures/dedup_v2.lua"));
    let mut call = v2.key(format!("{base}segments"));
    call.arg(4000).arg(1000).arg(64).arg(&base).arg(0);
    for id in ["old_1", "old_2"] {
        let mut fp = sha2::Sha256::new();
        fp.update(b"webhookd dedup v2\0t1\0");
        fp.update(id.as_bytes());
        let d = sha2::Sha256::digest(b"1-1");
        call.arg(&fp.finalize()[..16])
            .arg(u32::from_be_bytes([0, d[0], d[1], d[2]]));
    }
    let seen: Vec<u8> = call.invoke(&mut r).unwrap();
    assert_eq!(seen, [1, 1]);

    let w = start(&setup, &url).await;
    let ev = |id: &str| envelope(id, "outbound.sent", "t1", json!({}));
    // At once (checked in two steps), and steadily (the checked read leaves them to it).
    publish(&mut r, &setup.stream(), &[ev("old_1"), ev("new_1")]);
    let mut events: Vec<String> = (0..300).map(|i| ev(&format!("s{i}"))).collect();
    events[150] = ev("old_2");
    publish_steadily(&url, &setup.stream(), events).await;
    // new_1 and the 299 steady ones besides old_2.
    rx.wait_for(300, WAIT).await;
    assert!(wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = by_webhook_id(&rx.received());
    assert_eq!(ids.len(), 300, "log:\n{}", w.log_text());
    assert!(!ids.contains_key("old_1") && !ids.contains_key("old_2"));

    // The previous layout's segment expires 5 s after it began; the checks clear it away.
    let table = format!("{base}segments");
    let mut n = 0;
    let gone = wait_until_async(WAIT, || {
        n += 1;
        let mut r = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        publish(&mut r, &setup.stream(), &[ev(&format!("later_{n}"))]);
        let table = table.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            !redis::cmd("EXISTS")
                .arg(&table)
                .query::<bool>(&mut r)
                .unwrap()
        }
    })
    .await;
    assert!(
        gone,
        "the previous layout's table is removed once it expires"
    );
    let pauses_before = calls(&mut r, "xread");
    let events: Vec<String> = (0..300).map(|i| ev(&format!("after_{i}"))).collect();
    publish_steadily(&url, &setup.stream(), events).await;
    let all = rx.wait_for(300 + n + 300, WAIT).await;
    assert_eq!(all.len(), 300 + n + 300, "log:\n{}", w.log_text());
    // Each pause kept by Redis is a checked read's (none at all with checked reads off). Not
    // a figure per event: on a machine busy with other tests the publisher's pace slips, and
    // reads of a single entry go back to the blocking read (one CI run saw under 30 here).
    let pauses = calls(&mut r, "xread") - pauses_before;
    assert!(
        pauses >= 10,
        "reads are checked in one call again: {pauses} pauses kept by Redis for 300 steady events"
    );
}

/// Redis parses events inside the checked read while every other client waits, so one call
/// takes apart at most 64 KiB of them: the rest come back unchecked (-1), unclaimed, for the
/// two-step check. The script called as webhookd calls it, on a stream of 5 KiB events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_read_takes_apart_no_more_than_its_budget() {
    let (_server, _, _, setup, mut r) = own("checked_budget", "").await;
    let stream = setup.stream();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut r)
        .unwrap();
    let pad = "x".repeat(5000);
    let events: Vec<String> = (0..20)
        .map(|i| {
            envelope(
                &format!("b{i}"),
                "outbound.sent",
                "t1",
                json!({ "pad": pad }),
            )
        })
        .collect();
    publish(&mut r, &stream, &events);
    let script = redis::Script::new(&format!(
        "{}\n{}",
        include_str!("../../src/ingest/dedup/dedup_core.lua"),
        include_str!("../../src/ingest/dedup/read_checked.lua")
    ));
    let base = format!("{}{{dedup}}:v3:", setup.prefix);
    let (read, seen, _fps): (redis::Value, Vec<i64>, redis::Value) = script
        .key(&stream)
        .key(format!("{base}segments"))
        .key(format!("{}{{dedup}}:segments", setup.prefix))
        .arg("g")
        .arg("c")
        .arg(100)
        .arg(86_400_000)
        .arg(21_600_000)
        .arg(64)
        .arg(&base)
        .arg(8 * 1024)
        .arg(0)
        .arg(64 * 1024)
        .invoke(&mut r)
        .unwrap();
    assert!(matches!(read, redis::Value::Array(_)));
    let mut budget = 64 * 1024;
    let want: Vec<i64> = events
        .iter()
        .map(|e| {
            if e.len() <= budget {
                budget -= e.len();
                1
            } else {
                -1
            }
        })
        .collect();
    assert_eq!(seen, want);
    assert_eq!(want.iter().filter(|&&v| v == 1).count(), 12);
    assert_eq!(
        claims(&mut r, &base).len(),
        12,
        "only those taken apart are claimed"
    );
}
