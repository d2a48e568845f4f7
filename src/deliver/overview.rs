//! The operator view's figures across tenants (SPEC 6a): attempts and failures per tenant,
//! and the endpoints whose attempts take longest. Per-endpoint hours (`stats`) answer "how is
//! this endpoint"; these answer "who needs attention" without reading every endpoint's hours.
//!
//! Each hour has one hash of per-tenant counts and one sorted set of endpoints by summed
//! latency, written on the attempt log's pipeline with the endpoint stats, so they cost no
//! round trip of their own. Hours expire after a day. An endpoint's attempts come from its
//! own hour (`stats`), read only for the few ranked candidates: a second sorted set of
//! attempts per endpoint (what builds before issue 16's sixteenth slice also wrote, under
//! `overview:attempts:{hour}`) cost Redis about as much as every other write of a fan-out
//! together, a `ZINCRBY` into a set of 100,000 members being ~5 µs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::deliver::attempt::{is_success, AttemptRecord};
use crate::deliver::expiries::Expiries;
use crate::deliver::stats::{attempts_in, hour_of};

const HOUR_TTL: Duration = Duration::from_secs(25 * 3600);
const OK: &str = "ok:";
const FAILED: &str = "failed:";
/// Endpoints with the most time spent in attempts, per hour read, among which the slowest
/// by mean are picked: bounded whatever the number of endpoints.
const CANDIDATES: isize = 200;
/// Endpoints per latency command. Redis runs a script to its end before it answers anyone
/// else: one of the writer's whole batch (2,048 endpoints) into an hour's set of 100,000
/// took 15–30 ms of Redis in a 500 × 200 fan-out (its slowlog, issue 16's twenty-sixth slice).
const ZINCR_PER_CALL: usize = 256;

/// Adds a batch's attempts, on the caller's pipeline: per tenant and hour one HINCRBY per
/// outcome; per hour one command adding every endpoint's latency; the hour's expiries when
/// `expiries` says they are due. The caller discards their replies.
pub(crate) fn add(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    batch: &[AttemptRecord],
    expiries: &mut Expiries,
) {
    let mut tenants: BTreeMap<(i64, &str), (u64, u64)> = BTreeMap::new();
    let mut endpoints: BTreeMap<(i64, &str), u64> = BTreeMap::new();
    for rec in batch {
        let hour = hour_of(rec.at);
        let t = tenants.entry((hour, &rec.tenant)).or_default();
        if is_success(rec.status) {
            t.0 += 1;
        } else {
            t.1 += 1;
        }
        *endpoints.entry((hour, &*rec.endpoint_id)).or_default() += rec.latency_ms;
    }
    let mut hours = Vec::new();
    for ((hour, tenant), (ok, failed)) in tenants {
        let key = keys.overview_tenants(hour);
        for (field, n) in [(OK, ok), (FAILED, failed)] {
            if n > 0 {
                pipe.hincr(&key, format!("{field}{tenant}"), n);
            }
        }
        hours.push(hour);
    }
    // One command per hour and `ZINCR_PER_CALL` endpoints: a fan-out's batch of 2,048
    // attempts would otherwise send 2,048 ZINCRBYs, each a reply to parse.
    let endpoints: Vec<((i64, &str), u64)> = endpoints.into_iter().collect();
    for hour in endpoints.chunk_by(|a, b| a.0 .0 == b.0 .0) {
        for call in hour.chunks(ZINCR_PER_CALL) {
            let mut cmd = zincr_many(keys.overview_latency(call[0].0 .0));
            for ((_, endpoint), ms) in call {
                cmd.arg(*endpoint).arg(*ms);
            }
            pipe.add_command(cmd);
        }
    }
    hours.dedup();
    for hour in hours.into_iter().filter(|h| expiries.due(h)) {
        for key in [keys.overview_tenants(hour), keys.overview_latency(hour)] {
            pipe.expire(key, HOUR_TTL.as_secs() as i64);
        }
    }
}

/// `ZINCRBY` of many members of one sorted set: `EVAL` with (member, increment) pairs.
fn zincr_many(key: String) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ZINCR_MANY).arg(1).arg(key);
    cmd
}

const ZINCR_MANY: &str =
    "for i = 1, #ARGV, 2 do redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i]) end return 0";

/// A tenant's attempts over the last 24 hours.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TenantVolume {
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
}

/// Per tenant, attempts over the 24 hours up to `now_ms` (the current hour included).
pub(crate) async fn tenants(
    conn: &Conn,
    keys: &Keys,
    now_ms: i64,
) -> redis::RedisResult<HashMap<String, TenantVolume>> {
    let mut pipe = redis::pipe();
    for hour in last_hours(now_ms, 24) {
        pipe.hgetall(keys.overview_tenants(hour));
    }
    let hours: Vec<HashMap<String, u64>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(sum_tenants(hours))
}

fn sum_tenants(hours: Vec<HashMap<String, u64>>) -> HashMap<String, TenantVolume> {
    let mut out: HashMap<String, TenantVolume> = HashMap::new();
    for (field, n) in hours.into_iter().flatten() {
        if let Some(t) = field.strip_prefix(OK) {
            out.entry(t.to_string()).or_default().succeeded += n;
        } else if let Some(t) = field.strip_prefix(FAILED) {
            out.entry(t.to_string()).or_default().failed += n;
        }
    }
    out
}

/// An endpoint's attempts and their mean latency over the current and previous hour.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlowEndpoint {
    pub(crate) endpoint_id: String,
    pub(crate) attempts: u64,
    pub(crate) mean_ms: u64,
}

/// The `limit` endpoints with the slowest attempts on average over the current and previous
/// hour, among those that spent the most time in attempts.
pub(crate) async fn slowest(
    conn: &Conn,
    keys: &Keys,
    now_ms: i64,
    limit: usize,
) -> redis::RedisResult<Vec<SlowEndpoint>> {
    let hours = last_hours(now_ms, 2);
    let mut pipe = redis::pipe();
    for &hour in &hours {
        pipe.zrevrange_withscores(keys.overview_latency(hour), 0, CANDIDATES - 1);
    }
    let tops: Vec<Vec<(String, f64)>> = pipe.query_async(&mut conn.clone()).await?;
    let mut spent: BTreeMap<String, f64> = BTreeMap::new();
    for (id, ms) in tops.into_iter().flatten() {
        *spent.entry(id).or_default() += ms;
    }
    let ids: Vec<&String> = spent.keys().collect();
    let mut pipe = redis::pipe();
    for &hour in &hours {
        for id in &ids {
            pipe.hgetall(keys.stats(id, hour));
        }
    }
    let counts: Vec<HashMap<String, String>> = if ids.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn.clone()).await?
    };
    let mut out: Vec<SlowEndpoint> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let n: u64 = counts
                .iter()
                .skip(i)
                .step_by(ids.len())
                .map(attempts_in)
                .sum();
            (n >= 1).then(|| SlowEndpoint {
                endpoint_id: (*id).clone(),
                attempts: n,
                mean_ms: (spent[*id] / n as f64).round() as u64,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.mean_ms
            .cmp(&a.mean_ms)
            .then(a.endpoint_id.cmp(&b.endpoint_id))
    });
    out.truncate(limit);
    Ok(out)
}

/// The starts (Unix seconds) of the last `n` hours, the current one last.
fn last_hours(now_ms: i64, n: i64) -> Vec<i64> {
    let current = hour_of(now_ms);
    (0..n).rev().map(|back| current - back * 3600).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_sum_over_hours_by_outcome() {
        let hour = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let out = sum_tenants(vec![
            hour(&[("ok:a", 3), ("failed:a", 1), ("ok:b:c", 2)]),
            hour(&[("ok:a", 4), ("failed:b:c", 5)]),
        ]);
        assert_eq!(
            out["a"],
            TenantVolume {
                succeeded: 7,
                failed: 1
            }
        );
        assert_eq!(
            out["b:c"],
            TenantVolume {
                succeeded: 2,
                failed: 5
            }
        );
    }

    #[test]
    fn a_batch_to_many_endpoints_is_a_few_bounded_commands_per_hour() {
        let rec = |i: usize| AttemptRecord {
            at: 7_200_000 + i as i64,
            event_id: "evt_1".into(),
            attempt: 1,
            status: Some(200),
            latency_ms: 3,
            error: None,
            response: String::new(),
            endpoint_id: format!("ep_{i}").into(),
            tenant: "t".into(),
            gone: false,
        };
        let batch: Vec<AttemptRecord> = (0..600).map(rec).collect();
        let mut pipe = redis::pipe();
        add(
            &mut pipe,
            &Keys::new("p:", "events"),
            &batch,
            &mut Expiries::default(),
        );
        let names: Vec<String> = pipe
            .cmd_iter()
            .map(|c| match c.args_iter().next() {
                Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            })
            .collect();
        // The tenant's count, the latency set's 600 members in three calls (no script long
        // enough to keep Redis from everyone else), two expiries.
        assert_eq!(
            names,
            ["HINCRBY", "EVAL", "EVAL", "EVAL", "EXPIRE", "EXPIRE"]
        );
        let members: Vec<usize> = pipe
            .cmd_iter()
            .filter(|c| matches!(c.args_iter().next(), Some(redis::Arg::Simple(b"EVAL"))))
            .map(|c| (c.args_iter().count() - 4) / 2)
            .collect();
        assert_eq!(members, [256, 256, 88]);
    }

    #[test]
    fn the_last_hours_end_with_the_current_one() {
        assert_eq!(last_hours(7_200_000 + 5, 2), vec![3600, 7200]);
    }
}
