//! SPEC 1's duplicate check of a backlog (issue 16's twenty-third slice): full reads are
//! checked with plain commands against the segments webhookd last saw (ingest/dedup/plain.rs),
//! not in a script. They must answer as the script does: an id an older segment holds is a
//! duplicate unless its own entry is read again, each id is delivered once, new hashes get
//! their expiry. An entry read again is settled by the script, where the newest segment's
//! claim decides (a plain write may have reached an older segment after a replica opened a
//! newer one).

use std::time::Duration;

use crate::checked_reads::{calls, claims, own, start, v3_claim};
use crate::common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const HOUR: u64 = 3_600_000;

fn now_ms(r: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(r).unwrap();
    s * 1000 + us / 1000
}

/// The layout's names for `setup`: the segment table and the hashes' base.
fn layout(setup: &Setup) -> (String, String) {
    let base = format!("{}{{dedup}}:v3:", setup.prefix);
    (format!("{base}segments"), base)
}

/// Writes a segment's record, as `dedup_core.lua` does: id -> "start count n".
fn segment(r: &mut redis::Connection, table: &str, id: u64, count: u64, n: u64) {
    let _: () = redis::cmd("HSET")
        .arg(table)
        .arg(id)
        .arg(format!("{id} {count} {n}"))
        .query(r)
        .unwrap();
}

/// Claims `id` of tenant t1 for `entry` in segment `seg` (of `n` hashes).
fn claim(r: &mut redis::Connection, base: &str, seg: u64, n: u64, id: &str, entry: &str) {
    let (fp, tag) = v3_claim("t1", id, entry);
    let h = u32::from_be_bytes([fp[0], fp[1], fp[2], fp[3]]) as u64;
    let _: () = redis::cmd("HSET")
        .arg(format!("{base}{seg}:{}", h % n))
        .arg(&fp)
        .arg(&tag)
        .query(r)
        .unwrap();
}

/// Segments of the test's own: one started two hours ago (`older`, 16 hashes) and the one
/// being filled (`newest`, started an hour ago, 64 hashes), with the counts given.
struct Segments {
    table: String,
    base: String,
    older: u64,
    newest: u64,
}

fn two_segments(r: &mut redis::Connection, setup: &Setup, older: u64, newest: u64) -> Segments {
    let (table, base) = layout(setup);
    let now = now_ms(r);
    let s = Segments {
        table,
        base,
        older: now - 2 * HOUR,
        newest: now - HOUR,
    };
    segment(r, &s.table, s.older, older, 16);
    segment(r, &s.table, s.newest, newest, 64);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_checked_with_plain_commands_and_each_id_arrives_once() {
    let (_server, url, rx, setup, mut r) = own("plain_backlog", "").await;
    // An older segment holding 300 ids another entry carried, and the one being filled.
    let Segments {
        base,
        older,
        newest,
        ..
    } = two_segments(&mut r, &setup, 300, 0);
    for i in 0..300 {
        claim(&mut r, &base, older, 16, &format!("old_{i}"), "1-1");
    }
    // 2,000 entries: a tenth repeat an old id, a tenth an id two entries before.
    let ids: Vec<String> = (0..2000)
        .map(|i| match i % 10 {
            3 => format!("old_{}", i / 10 % 300),
            7 => format!("new_{}", i - 2),
            _ => format!("new_{i}"),
        })
        .collect();
    let events: Vec<String> = ids
        .iter()
        .map(|id| envelope(id, "outbound.sent", "t1", json!({})))
        .collect();
    let entries = publish(&mut r, &setup.stream(), &events);
    let hlen_before = calls(&mut r, "hlen");
    let expiries_before = calls(&mut r, "pexpireat");

    let w = start(&setup, &url).await;
    let got = rx.wait_for(1600, WAIT).await;
    let extra: Vec<String> = {
        let mut seen = std::collections::HashMap::new();
        for r in &got {
            *seen.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
        }
        seen.into_iter()
            .filter(|(id, n)| *n > 1 || id.starts_with("old_"))
            .map(|(id, n)| format!("{id}x{n}"))
            .collect()
    };
    assert_eq!(got.len(), 1600, "{extra:?} log:\n{}", w.log_text());
    assert!(wait_until(WAIT, || pending(&mut r, &setup.stream()) == 0).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = by_webhook_id(&rx.received());
    assert_eq!(delivered.len(), 1600, "every new id");
    assert!(delivered.values().all(|&n| n == 1), "each once");
    assert!(
        delivered.keys().all(|id| id.starts_with("new_")),
        "no id the older segment holds"
    );

    // Plain commands, not the script: it asks HLEN after each new id's write.
    let hlen = calls(&mut r, "hlen") - hlen_before;
    assert!(
        hlen < 800,
        "{hlen} HLEN calls for 1,600 new ids: the script checked them"
    );
    // And a hash's expiry once (64 hashes), not once a write.
    let expiries = calls(&mut r, "pexpireat") - expiries_before;
    assert!(
        expiries < 400,
        "{expiries} PEXPIREAT calls for 1,600 new ids in 64 hashes"
    );

    // Each new id under its first entry, in the segment being filled, whose hashes expire
    // when the script's would; the old ids stay their owner's, and only there.
    let held = claims(&mut r, &base);
    for (i, id) in ids.iter().enumerate() {
        if i % 10 == 3 || i % 10 == 7 {
            continue;
        }
        let (fp, tag) = v3_claim("t1", id, &entries[i]);
        assert_eq!(held.get(&fp), Some(&tag), "{id}");
    }
    let newest_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{base}{newest}:*"))
        .query(&mut r)
        .unwrap();
    let expiry = newest + 6 * HOUR + 24 * HOUR;
    let mut in_newest = 0;
    for key in &newest_keys {
        let at: i64 = redis::cmd("PEXPIRETIME").arg(key).query(&mut r).unwrap();
        assert_eq!(at, expiry as i64, "{key}'s expiry");
        let n: u64 = redis::cmd("HLEN").arg(key).query(&mut r).unwrap();
        in_newest += n;
    }
    assert_eq!(in_newest, 1600, "the new ids, and no old one");
    let (fp, tag) = v3_claim("t1", "old_0", "1-1");
    assert_eq!(held.get(&fp), Some(&tag));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_read_again_is_a_duplicate_of_the_newest_segments_claim() {
    let (_server, url, rx, setup, mut r) = own("plain_reread", "").await;
    let stream = setup.stream();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("webhookd")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut r)
        .unwrap();
    let ev = |id: &str| envelope(id, "outbound.sent", "t1", json!({}));
    let entry = publish(&mut r, &stream, &[ev("x1")]).remove(0);
    // Read by this consumer before it stopped: pending, read again once it starts.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("webhookd")
        .arg(&setup.consumer)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query(&mut r)
        .unwrap();
    // Its id in an older segment under its own tag (a plain write that reached it after a
    // replica opened the newest), and in the newest under another entry's, which that
    // replica's check claimed there, finding the older segment without it.
    let Segments {
        base,
        older,
        newest,
        ..
    } = two_segments(&mut r, &setup, 1, 1);
    claim(&mut r, &base, older, 16, "x1", &entry);
    claim(&mut r, &base, newest, 64, "x1", "9-9");

    let w = start(&setup, &url).await;
    publish(&mut r, &stream, &[ev("y1")]);
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "log:\n{}", w.log_text());
    assert!(wait_until(WAIT, || pending(&mut r, &stream) == 0).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = by_webhook_id(&rx.received());
    assert_eq!(
        delivered.keys().collect::<Vec<_>>(),
        vec!["y1"],
        "x1 is the newest segment's claim's"
    );
}

/// The script's settling (`claim` with `settle` in dedup_core.lua), called as webhookd calls
/// it for one entry: 1 (its id is its own) or 0.
fn settle(r: &mut redis::Connection, setup: &Setup, fp: &[u8], tag: &str) -> i64 {
    let (table, base) = layout(setup);
    let script = redis::Script::new(&format!(
        "{}\n{}",
        include_str!("../../src/ingest/dedup/dedup_core.lua"),
        include_str!("../../src/ingest/dedup/dedup.lua")
    ));
    let out: Vec<i64> = script
        .key(&table)
        .key(format!("{}{{dedup}}:segments", setup.prefix))
        .arg(24 * HOUR)
        .arg(6 * HOUR)
        .arg(64)
        .arg(&base)
        .arg(format!("{}{{dedup}}:", setup.prefix))
        .arg(0)
        .arg(0)
        .arg(1)
        .arg(fp)
        .arg(tag)
        .invoke(r)
        .unwrap();
    out[0]
}

/// The owner segment `seg` (of `n` hashes) records for `id` of tenant t1.
fn owner(r: &mut redis::Connection, base: &str, seg: u64, n: u64, id: &str) -> Option<String> {
    let (fp, _) = v3_claim("t1", id, "0-0");
    let h = u32::from_be_bytes([fp[0], fp[1], fp[2], fp[3]]) as u64;
    redis::cmd("HGET")
        .arg(format!("{base}{seg}:{}", h % n))
        .arg(&fp)
        .query(r)
        .unwrap()
}

/// Replica 1's view is a moment old: it writes id x1 for entry A to the segment it takes for
/// the newest, after replica 2, which knows the newer one, looked in the older and found
/// nothing, and before replica 2 writes x1 for entry B to the newest. Replica 1's write is
/// unverified (its book shows the newer segment), so the script settles it; replica 2's is
/// verified. Only one of A and B may be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_to_an_older_segment_and_a_write_to_the_newest_deliver_one_entry() {
    let (_server, _, _, setup, mut r) = own("plain_race", "").await;
    let Segments {
        base,
        older,
        newest,
        ..
    } = two_segments(&mut r, &setup, 1, 0);
    let (fp, a) = v3_claim("t1", "x1", "5-1");
    let (_, b) = v3_claim("t1", "x1", "5-2");
    // Replica 2's probe of the older segment: nothing.
    assert_eq!(owner(&mut r, &base, older, 16, "x1"), None);
    // Replica 1's late write, then its settling: A's, and claimed in the newest too.
    claim(&mut r, &base, older, 16, "x1", "5-1");
    assert_eq!(settle(&mut r, &setup, &fp, &a), 1, "A is delivered");
    assert_eq!(owner(&mut r, &base, newest, 64, "x1"), Some(a.clone()));
    // Replica 2's write to the newest finds it taken, so it is settled too: a duplicate.
    let h = u32::from_be_bytes([fp[0], fp[1], fp[2], fp[3]]) as u64;
    let taken: i64 = redis::cmd("HSETNX")
        .arg(format!("{base}{newest}:{}", h % 64))
        .arg(&fp)
        .arg(&b)
        .query(&mut r)
        .unwrap();
    assert_eq!(taken, 0);
    assert_eq!(settle(&mut r, &setup, &fp, &b), 0, "B is not");
}

/// The other order: replica 2 wrote the newest first, so replica 1's late write is settled as
/// a duplicate, and taken back: an earlier build reading B again after a crash looks in the
/// oldest segment first and must not find A there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_that_lost_to_the_newest_is_taken_back() {
    let (_server, _, _, setup, mut r) = own("plain_race_lost", "").await;
    let Segments {
        base,
        older,
        newest,
        ..
    } = two_segments(&mut r, &setup, 1, 1);
    claim(&mut r, &base, newest, 64, "x1", "5-2");
    claim(&mut r, &base, older, 16, "x1", "5-1");
    let (fp, a) = v3_claim("t1", "x1", "5-1");
    let (_, b) = v3_claim("t1", "x1", "5-2");
    assert_eq!(settle(&mut r, &setup, &fp, &a), 0, "A is not delivered");
    assert_eq!(
        owner(&mut r, &base, older, 16, "x1"),
        None,
        "A's claim taken back"
    );
    assert_eq!(settle(&mut r, &setup, &fp, &b), 1, "B is, read again");
    assert_eq!(owner(&mut r, &base, newest, 64, "x1"), Some(b));
}

/// Three segments: B holds x1 in the middle one, the newest has it not, and A's late write is
/// in the oldest. The middle one's claim counts; A's is taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_behind_a_newer_segments_claim_is_taken_back() {
    let (_server, _, _, setup, mut r) = own("plain_race_middle", "").await;
    let (table, base) = layout(&setup);
    let now = now_ms(&mut r);
    let (oldest, middle, newest) = (now - 3 * HOUR, now - 2 * HOUR, now - HOUR);
    segment(&mut r, &table, oldest, 1, 16);
    segment(&mut r, &table, middle, 1, 16);
    segment(&mut r, &table, newest, 0, 64);
    claim(&mut r, &base, middle, 16, "x1", "5-2");
    claim(&mut r, &base, oldest, 16, "x1", "5-1");
    let (fp, a) = v3_claim("t1", "x1", "5-1");
    assert_eq!(settle(&mut r, &setup, &fp, &a), 0, "A is not delivered");
    assert_eq!(
        owner(&mut r, &base, oldest, 16, "x1"),
        None,
        "A's claim taken back"
    );
    assert_eq!(
        owner(&mut r, &base, newest, 64, "x1"),
        None,
        "nothing claimed for A"
    );
}
