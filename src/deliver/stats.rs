//! Endpoint health for `GET …/endpoints/{id}/stats` (SPEC 6): hourly attempt counts and
//! latency percentiles, and deliveries in flight summed over every replica.
//!
//! Hours live in one Redis hash per endpoint per hour (`Keys::stats`): a `failure` count and
//! a latency histogram of every attempt, one field per log-spaced bucket, named
//! `ms:{upper bound}` so a reader needs no knowledge of the bounds a writer used; successes
//! are the histogram's total less the failures (builds before issue 16's thirteenth slice
//! also wrote a `success` count, which equals that and is no longer read). The
//! attempt-log writer adds each batch to the pipeline it already sends, so the numbers cost
//! no round trip of their own.
//!
//! In flight: each replica replaces its own small hash of per-endpoint counts every second
//! (`Keys::in_flight`) and marks itself live in a sorted set (`Keys::replicas`); a reader
//! sums the replicas seen lately.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::db::sized;
use crate::deliver::attempt::is_success;
use crate::deliver::attempt::AttemptRecord;
use crate::support::clock::now_ms;

/// Hours the stats route shows, the current one last.
pub(crate) const HOURS: usize = 24;
const HOUR_MS: i64 = 3_600_000;
/// An hour's hash outlives the 24 hours it is shown for by a little.
const HOUR_TTL: Duration = Duration::from_secs(25 * 3600);

const FAILURE: &str = "failure";
/// Histogram fields are this plus the bucket's upper bound in ms.
const LATENCY: &str = "ms:";

/// The largest bucket bound; slower attempts are counted in the last bucket.
const TOP_MS: u64 = 3_600_000;
/// Each bucket's upper bound is at most 6/5 of the one before (integers step by at least 1),
/// so reporting a bucket's upper bound overstates a latency by less than 20 %.
const fn next_bound(prev: u64) -> u64 {
    let grown = prev * 6 / 5;
    if grown > prev {
        grown
    } else {
        prev + 1
    }
}

const fn bucket_count() -> usize {
    let (mut n, mut b) = (1, 1);
    while b < TOP_MS {
        b = next_bound(b);
        n += 1;
    }
    n
}

const BUCKETS: usize = bucket_count();

/// Upper bounds (ms) of the histogram's buckets: 1, 2, 3, …, 10, 12, 14, … up to an hour.
const BOUNDS: [u64; BUCKETS] = {
    let mut b = [1; BUCKETS];
    let mut i = 1;
    while i < BUCKETS {
        b[i] = next_bound(b[i - 1]);
        i += 1;
    }
    b
};

/// The bucket a latency falls in: the first whose upper bound is at least it, else the last.
fn bucket(latency_ms: u64) -> usize {
    BOUNDS.partition_point(|&b| b < latency_ms).min(BUCKETS - 1)
}

/// The histogram's field names by bucket, `ms:{bound}`, made once: a fan-out names one per
/// endpoint.
static FIELDS: std::sync::LazyLock<[String; BUCKETS]> =
    std::sync::LazyLock::new(|| BOUNDS.map(|b| format!("{LATENCY}{b}")));

/// The `pct`-th percentile of a histogram of (upper bound, count), sorted by bound: the
/// bound of the bucket holding the attempt of that rank. None when it is empty.
fn percentile(hist: &[(u64, u64)], pct: u64) -> Option<u64> {
    let total: u64 = hist.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = (total * pct).div_ceil(100).max(1);
    let mut seen = 0;
    hist.iter().find_map(|&(bound, n)| {
        seen += n;
        (seen >= rank).then_some(bound)
    })
}

/// Unix seconds of the start of the hour `ms` falls in.
pub(crate) fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS / 1000
}

/// One endpoint's attempts in one hour, as a batch adds them.
#[derive(Default, Debug, PartialEq)]
struct Tally {
    failure: u64,
    /// (bucket (an index of `BOUNDS`), attempts), a few at most: one endpoint's latencies
    /// in a batch fall in neighbouring buckets, and in a fan-out it has one attempt.
    latency: Vec<(usize, u64)>,
}

impl Tally {
    fn count(&mut self, bucket: usize) {
        match self.latency.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n += 1,
            None => self.latency.push((bucket, 1)),
        }
    }
}

/// Every attempt counts towards the latencies, failed ones too: how long a delivery held
/// its slot is what the percentiles are for.
fn tally(batch: &[AttemptRecord]) -> BTreeMap<(&Arc<str>, i64), Tally> {
    let mut out: BTreeMap<(&Arc<str>, i64), Tally> = BTreeMap::new();
    for rec in batch {
        let t = out.entry((&rec.endpoint_id, hour_of(rec.at))).or_default();
        if !is_success(rec.status) {
            t.failure += 1;
        }
        t.count(bucket(rec.latency_ms));
    }
    out
}

/// Stats hashes by (endpoint, hour): their names are made only when written.
pub(crate) type StatKeys = crate::deliver::expiries::Expiries<(Arc<str>, i64)>;

/// Adds a batch of attempts to the hourly stats, on the caller's pipeline: per endpoint and
/// hour, one HINCRBY for its failures (if any) and one per histogram bucket, and an EXPIRE
/// when `expiries` says it is due (once a minute per key, not once a batch). The caller
/// discards their replies (not `.ignore()`: see `attempt_log::Writer::write`).
pub(crate) fn add(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    batch: &[AttemptRecord],
    expiries: &mut StatKeys,
) {
    let hincr = |key: &str, field: &str, n: u64| {
        let mut cmd = sized::command("HINCRBY", 3, key.len() + field.len() + sized::INT);
        cmd.arg(key).arg(field).arg(n);
        cmd
    };
    for ((endpoint, hour), t) in tally(batch) {
        let key = keys.stats(endpoint, hour);
        // No `success` count: the histogram counts every attempt, so successes are its total
        // less the failures (`Hour::from_fields`), one HINCRBY fewer per endpoint a batch.
        if t.failure > 0 {
            pipe.add_command(hincr(&key, FAILURE, t.failure));
        }
        for (bucket, n) in t.latency {
            pipe.add_command(hincr(&key, FIELDS[bucket].as_str(), n));
        }
        if expiries.due(&(endpoint.clone(), hour)) {
            let mut expire = sized::command("EXPIRE", 2, key.len() + sized::INT);
            expire.arg(&key).arg(HOUR_TTL.as_secs());
            pipe.add_command(expire);
        }
    }
}

/// One hour of an endpoint's attempts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hour {
    /// Unix ms of the hour's start.
    pub(crate) start_ms: i64,
    pub(crate) success: u64,
    pub(crate) failure: u64,
    /// Upper bounds of the histogram buckets holding the median and the 99th percentile.
    pub(crate) p50_ms: Option<u64>,
    pub(crate) p99_ms: Option<u64>,
}

/// An hour's latency histogram, as (upper bound in ms, attempts), unsorted.
fn histogram(fields: &HashMap<String, String>) -> Vec<(u64, u64)> {
    fields
        .iter()
        .filter_map(|(f, v)| Some((f.strip_prefix(LATENCY)?.parse().ok()?, v.parse().ok()?)))
        .collect()
}

/// The attempts an hour's hash counts: every attempt is in its histogram, in every build that
/// wrote one.
pub(crate) fn attempts_in(fields: &HashMap<String, String>) -> u64 {
    histogram(fields).iter().map(|(_, n)| n).sum()
}

impl Hour {
    fn from_fields(start_ms: i64, fields: &HashMap<String, String>) -> Hour {
        let count = |f: &str| fields.get(f).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut hist = histogram(fields);
        hist.sort_unstable();
        let failure = count(FAILURE);
        let attempts: u64 = hist.iter().map(|(_, n)| n).sum();
        Hour {
            start_ms,
            // The `success` field earlier builds also wrote is this same difference: not read.
            success: attempts.saturating_sub(failure),
            failure,
            p50_ms: percentile(&hist, 50),
            p99_ms: percentile(&hist, 99),
        }
    }
}

/// The last 24 hours of an endpoint, oldest first; the last is the hour `now_ms` is in.
pub(crate) async fn last_day(
    conn: &Conn,
    keys: &Keys,
    endpoint_id: &str,
    now_ms: i64,
) -> redis::RedisResult<Vec<Hour>> {
    let current = hour_of(now_ms) * 1000;
    let starts: Vec<i64> = (0..HOURS as i64)
        .rev()
        .map(|back| current - back * HOUR_MS)
        .collect();
    let mut pipe = redis::pipe();
    for start in &starts {
        pipe.hgetall(keys.stats(endpoint_id, start / 1000));
    }
    let raw: Vec<HashMap<String, String>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(starts
        .iter()
        .zip(&raw)
        .map(|(&start, fields)| Hour::from_fields(start, fields))
        .collect())
}

/// This replica's in-flight deliveries per endpoint, as the dispatcher counts them.
pub(crate) type InFlightCounts = Arc<dyn Fn() -> Vec<(Arc<str>, usize)> + Send + Sync>;

const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// A replica's counts vanish this long after its last publication (it may have died).
const REPLICA_LIVE: Duration = Duration::from_secs(5);
/// Replicas silent this long are dropped from the replica set.
const REPLICA_FORGET: Duration = Duration::from_secs(60);
/// Endpoints one replica publishes at most (the busiest).
const MAX_PUBLISHED: usize = 10_000;
/// Replicas a reader sums at most.
const MAX_REPLICAS: usize = 1_000;

/// Publishes this replica's in-flight counts every second. Runs until aborted, so that
/// deliveries finishing during the shutdown grace still count.
pub(crate) async fn publish_in_flight(
    conn: Conn,
    keys: Keys,
    replica: String,
    counts: InFlightCounts,
) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = publish_once(&conn, &keys, &replica, counts(), now_ms()).await {
            tracing::debug!(error = %e, "in-flight counts not published");
        }
    }
}

/// Replaces this replica's published counts with `counts` (non-zero ones, the busiest
/// `MAX_PUBLISHED`), marks it live at `now_ms`, and forgets long-silent replicas.
pub async fn publish_once(
    conn: &Conn,
    keys: &Keys,
    replica: &str,
    mut counts: Vec<(Arc<str>, usize)>,
    now_ms: i64,
) -> redis::RedisResult<()> {
    counts.retain(|(_, n)| *n > 0);
    if counts.len() > MAX_PUBLISHED {
        counts.select_nth_unstable_by(MAX_PUBLISHED - 1, |a, b| b.1.cmp(&a.1));
        counts.truncate(MAX_PUBLISHED);
    }
    let key = keys.in_flight(replica);
    let mut tx = redis::pipe();
    tx.atomic().del(&key).ignore();
    if !counts.is_empty() {
        let hset = tx.cmd("HSET").arg(&key);
        for (endpoint, n) in &counts {
            hset.arg(&**endpoint).arg(*n);
        }
        hset.ignore()
            .pexpire(&key, REPLICA_LIVE.as_millis() as i64)
            .ignore();
    }
    tx.query_async::<()>(&mut conn.clone()).await?;
    redis::pipe()
        .zadd(keys.replicas(), replica, now_ms)
        .ignore()
        .zrembyscore(
            keys.replicas(),
            "-inf",
            now_ms - REPLICA_FORGET.as_millis() as i64,
        )
        .ignore()
        .query_async(&mut conn.clone())
        .await
}

/// Deliveries to an endpoint in flight on every replica seen in the last 5 s.
pub(crate) async fn in_flight(
    conn: &Conn,
    keys: &Keys,
    endpoint_id: &str,
    now_ms: i64,
) -> redis::RedisResult<u64> {
    let replicas: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys.replicas())
        .arg(now_ms - REPLICA_LIVE.as_millis() as i64)
        .arg("+inf")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_REPLICAS)
        .query_async(&mut conn.clone())
        .await?;
    if replicas.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for r in &replicas {
        pipe.hget(keys.in_flight(r), endpoint_id);
    }
    let counts: Vec<Option<u64>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(counts.into_iter().flatten().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upper bound of the bucket a latency falls in.
    fn bucket_bound(latency_ms: u64) -> u64 {
        BOUNDS[bucket(latency_ms)]
    }

    fn rec(endpoint: &str, at: i64, status: Option<u16>, latency_ms: u64) -> AttemptRecord {
        AttemptRecord {
            at,
            event_id: "evt_1".into(),
            attempt: 1,
            status,
            latency_ms,
            error: None,
            response: String::new(),
            endpoint_id: endpoint.into(),
            tenant: "t".into(),
            gone: false,
        }
    }

    #[test]
    fn bucket_bounds_rise_and_cover_an_hour() {
        assert_eq!(&BOUNDS[..12], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14]);
        assert!(BOUNDS.windows(2).all(|w| w[0] < w[1]));
        assert!(BOUNDS[BUCKETS - 1] >= TOP_MS && BUCKETS < 100, "{BUCKETS}");
    }

    #[test]
    fn a_reported_latency_is_never_below_it_and_less_than_20_percent_above() {
        for ms in (1..20_000).chain((20_000..TOP_MS).step_by(997)) {
            let b = bucket_bound(ms);
            assert!(b >= ms && (b as f64) < ms as f64 * 1.2, "{ms} → {b}");
        }
        assert_eq!(bucket_bound(0), 1);
        assert_eq!(bucket_bound(TOP_MS * 10), BOUNDS[BUCKETS - 1]);
    }

    #[test]
    fn each_bucket_is_named_by_its_upper_bound() {
        for (i, b) in BOUNDS.iter().enumerate() {
            assert_eq!(FIELDS[i], format!("ms:{b}"));
        }
        assert_eq!(FIELDS[bucket(11)], "ms:12");
    }

    #[test]
    fn percentiles_are_the_bounds_of_the_buckets_holding_that_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[(10, 1)], 50), Some(10));
        assert_eq!(percentile(&[(10, 1)], 99), Some(10));
        // 100 attempts: 50 at 10 ms, 49 at 100 ms, 1 at 1000 ms.
        let hist = [(10, 50), (100, 49), (1000, 1)];
        assert_eq!(percentile(&hist, 50), Some(10));
        assert_eq!(percentile(&hist, 99), Some(100));
        // One more slow attempt moves the 99th into the slow bucket.
        let hist = [(10, 50), (100, 49), (1000, 2)];
        assert_eq!(percentile(&hist, 50), Some(100));
        assert_eq!(percentile(&hist, 99), Some(1000));
    }

    #[test]
    fn a_percentile_from_buckets_is_within_20_percent_of_the_exact_one() {
        let latencies: Vec<u64> = (1..=1000u64).map(|i| i * i % 7919 + 1).collect();
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
        for &l in &latencies {
            *hist.entry(bucket_bound(l)).or_default() += 1;
        }
        let hist: Vec<(u64, u64)> = hist.into_iter().collect();
        for pct in [50, 90, 99] {
            let exact = sorted[(sorted.len() * pct as usize).div_ceil(100) - 1];
            let est = percentile(&hist, pct).unwrap();
            assert!(
                est >= exact && (est as f64) < exact as f64 * 1.2,
                "p{pct}: {est} vs {exact}"
            );
        }
    }

    #[test]
    fn a_batch_is_tallied_per_endpoint_and_hour() {
        let h = 1_704_823_200_000; // an hour's start
        let batch = [
            rec("ep_a", h + 5, Some(200), 12),
            rec("ep_a", h + 6, Some(204), 12),
            rec("ep_a", h + 7, Some(500), 300),
            rec("ep_a", h + 8, None, 5000),
            rec("ep_a", h - 1, Some(302), 1),
            rec("ep_b", h + 9, Some(299), 0),
        ];
        let t = tally(&batch);
        assert_eq!(t.len(), 3);
        let (ep_a, ep_b): (Arc<str>, Arc<str>) = ("ep_a".into(), "ep_b".into());
        let a = &t[&(&ep_a, h / 1000)];
        assert_eq!(a.failure, 2);
        assert_eq!(a.latency.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert!(a.latency.contains(&(bucket(12), 2)));
        assert_eq!(BOUNDS[bucket(12)], 12);
        let before = &t[&(&ep_a, h / 1000 - 3600)];
        assert_eq!(before.failure, 1, "3xx is a failure");
        assert_eq!(before.latency.iter().map(|(_, n)| n).sum::<u64>(), 1);
        let b = &t[&(&ep_b, h / 1000)];
        assert_eq!((b.failure, b.latency.len()), (0, 1));
    }

    #[test]
    fn a_large_batch_costs_a_handful_of_commands_per_endpoint() {
        let keys = Keys::new("t:", "events");
        let h = 1_704_823_200_000;
        let batch: Vec<AttemptRecord> = (0..512)
            .map(|i| {
                rec(
                    ["ep_a", "ep_b"][i % 2],
                    h + i as i64,
                    Some(200),
                    40 + i as u64 % 3,
                )
            })
            .collect();
        let mut pipe = redis::pipe();
        let mut expiries = crate::deliver::expiries::Expiries::default();
        add(&mut pipe, &keys, &batch, &mut expiries);
        // Per endpoint: one latency bucket (40–42 ms share one) and the EXPIRE; no failures.
        assert_eq!(pipe.len(), 2 * 2);
        let mut again = redis::pipe();
        add(&mut again, &keys, &batch, &mut expiries);
        assert_eq!(
            again.len(),
            2,
            "the expiry is set once a minute, not every batch"
        );
    }

    #[test]
    fn an_hour_reads_its_counts_and_percentiles_from_either_builds_fields() {
        let fields: HashMap<String, String> = [
            ("success", "3"),
            ("failure", "1"),
            ("ms:12", "3"),
            ("ms:300", "1"),
            ("ms:oops", "9"),
            ("other", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let hour = Hour::from_fields(7, &fields);
        assert_eq!(
            hour,
            Hour {
                start_ms: 7,
                success: 3,
                failure: 1,
                p50_ms: Some(12),
                p99_ms: Some(300)
            }
        );
        // As this build writes it: no `success` field.
        let fields: HashMap<String, String> = [("failure", "1"), ("ms:12", "3"), ("ms:300", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(Hour::from_fields(7, &fields), hour, "the same hour");
        let empty = Hour::from_fields(7, &HashMap::new());
        assert_eq!(
            (empty.success, empty.failure, empty.p50_ms, empty.p99_ms),
            (0, 0, None, None)
        );
    }
}
