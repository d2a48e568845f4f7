//! Watching the webhookd under test from outside: its metrics page, Redis's command counts,
//! and the consumer group's progress through the stream.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use redis::Value;
use webhookd::db::commandstats;
use webhookd::db::conn::Conn;

/// A plain GET on loopback: (status, body) or `None` when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let uri: http::Uri = url.parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

/// The `webhookd_endpoints` gauge (refreshed by webhookd every 5 s).
pub async fn indexed_endpoints(metrics_url: &str) -> Option<u64> {
    let (_, text) = get(metrics_url).await?;
    sample(&text, "webhookd_endpoints").map(|v| v as u64)
}

/// Counters that explain a run: how deliveries ended and how many took the retry queue.
pub const EXPLAINING: &[(&str, &str)] = &[
    ("consumed", "webhookd_events_consumed_total"),
    ("success", "webhookd_deliveries_total{outcome=\"success\"}"),
    ("retry", "webhookd_deliveries_total{outcome=\"retry\"}"),
    ("dead", "webhookd_deliveries_total{outcome=\"dead\"}"),
    // Builds before the parked backlogs counted deferrals; later ones count parked deliveries
    // by reason. Null where a build lacks the metric or nothing was parked (no sample yet).
    ("deferred", "webhookd_deliveries_deferred_total"),
    ("parked", "webhookd_deliveries_parked_total"),
    ("attempt_log_waits", "webhookd_attempt_log_waits_total"),
];

/// The value of one sample line of Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Counters and gauges of the isolation work, when this webhookd has them (besides
/// `deferred` and `parked`, in [`EXPLAINING`]).
pub const ISOLATION: &[(&str, &str)] = &[
    ("circuit_transitions", "webhookd_circuit_transitions_total"),
    ("circuits_open", "webhookd_circuits_open"),
];

/// Every sample of one metric: its label set (`""` when none) and its value.
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once('}')?;
                (labels.to_string(), v)
            } else if rest.starts_with(' ') {
                (String::new(), rest)
            } else {
                return None;
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// One metric as JSON: null when absent, a number when unlabelled, else `{labels: value}`.
pub fn metric_json(text: &str, name: &str) -> serde_json::Value {
    let s = samples(text, name);
    match s.as_slice() {
        [] => serde_json::Value::Null,
        [(labels, v)] if labels.is_empty() => serde_json::json!(v),
        _ => s
            .into_iter()
            .map(|(l, v)| (l, serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

pub use webhookd::db::commandstats::Calls;

/// `INFO commandstats` as (command, calls), summed over the primaries among `nodes` (each
/// asked directly); server-wide, so other clients count too.
pub async fn command_calls(nodes: &[String]) -> Option<Calls> {
    let mut sum = Calls::new();
    for calls in calls_by_node(nodes).await? {
        for (cmd, n) in calls {
            *sum.entry(cmd).or_default() += n;
        }
    }
    Some(sum)
}

/// Waits (up to `limit`) until the commands sent to `nodes` settle: fewer than `QUIET` more
/// in a quarter second, as when only webhookd's timers are left. The attempt log and the
/// figures it feeds are written after the deliveries they record, so counts taken at the last
/// delivery miss part of them. Answers the counts then, and how long it took.
pub async fn settled_calls(nodes: &[String], limit: Duration) -> Option<(Calls, Duration)> {
    const QUIET: u64 = 100;
    let started = tokio::time::Instant::now();
    let mut last = command_calls(nodes).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = command_calls(nodes).await?;
        if total(&now) < total(&last) + QUIET || started.elapsed() >= limit {
            return Some((now, started.elapsed()));
        }
        last = now;
    }
}

/// `INFO commandstats` of each primary among `nodes` (a replica counts again every write it
/// applies, so it is left out).
pub async fn calls_by_node(nodes: &[String]) -> Option<Vec<Calls>> {
    let mut out = Vec::with_capacity(nodes.len());
    for url in nodes {
        let mut c = node(url).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.ok()?;
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            continue;
        }
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .ok()?;
        out.push(commandstats::parse(&text));
    }
    Some(out)
}

/// Clients connected to all `nodes` together (`INFO clients`).
pub async fn connected_clients(nodes: &[String]) -> Option<u64> {
    let mut n = 0;
    for url in nodes {
        let text: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut node(url).await?)
            .await
            .ok()?;
        n += text
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))?
            .trim()
            .parse::<u64>()
            .ok()?;
    }
    Some(n)
}

async fn node(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()
}

/// Every call counted, without the readings themselves (`info`).
pub fn total(c: &Calls) -> u64 {
    c.iter()
        .filter(|(k, _)| k.as_str() != "info")
        .map(|(_, n)| n)
        .sum()
}

/// Calls made between two readings, without the readings themselves (`info`) and without
/// the calls this tool made on its own (`own`, e.g. its polls of the consumer group).
pub fn calls_delta(before: &Calls, after: &Calls, own: &Calls) -> Calls {
    after
        .iter()
        .filter(|(cmd, _)| cmd.as_str() != "info")
        .filter_map(|(cmd, &n)| {
            let d = n
                .saturating_sub(before.get(cmd).copied().unwrap_or(0))
                .saturating_sub(own.get(cmd).copied().unwrap_or(0));
            (d > 0).then(|| (cmd.clone(), d))
        })
        .collect()
}

/// The `k` commands with the most calls, most first (ties by name).
pub fn top_calls(delta: &Calls, k: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = delta.iter().map(|(c, &n)| (c.clone(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// How far a consumer group has read a stream.
#[derive(Debug, PartialEq, Default, Clone, Copy)]
pub struct GroupProgress {
    /// `entries-read` (Redis ≥ 7.0; null when Redis cannot tell).
    pub entries_read: Option<u64>,
    /// `lag`: entries not yet delivered to the group (null when Redis cannot tell).
    pub lag: Option<u64>,
    pub pending: Option<u64>,
}

impl GroupProgress {
    /// Whether the group has read every one of the stream's `len` entries.
    pub fn read_all(&self, len: u64) -> bool {
        self.lag == Some(0) || self.entries_read.is_some_and(|r| r >= len)
    }
}

/// The reply of `XINFO GROUPS`: the progress of the group named `group`.
pub fn group_progress(groups: Vec<Value>, group: &str) -> Option<GroupProgress> {
    for g in groups {
        let fields: std::collections::HashMap<String, Value> = redis::from_redis_value(g).ok()?;
        let text = |k: &str| -> Option<String> {
            fields
                .get(k)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
        };
        if text("name").as_deref() != Some(group) {
            continue;
        }
        let num = |k: &str| -> Option<u64> {
            match fields.get(k)? {
                Value::Nil => None,
                v => redis::from_redis_value_ref(v).ok(),
            }
        };
        return Some(GroupProgress {
            entries_read: num("entries-read"),
            lag: num("lag"),
            pending: num("pending"),
        });
    }
    None
}

/// `XINFO GROUPS` and `XLEN` of the stream: the group's progress and the stream's length.
pub async fn stream_progress(
    conn: &Conn,
    stream: &str,
    group: &str,
) -> Option<(GroupProgress, u64)> {
    let mut c = conn.clone();
    let groups: Vec<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut c)
        .await
        .ok()?;
    let len: u64 = redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut c)
        .await
        .ok()?;
    Some((group_progress(groups, group)?, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_are_parsed_and_differenced() {
        let before = commandstats::parse(
            "# Commandstats\r\ncmdstat_xadd:calls=10,usec=5,usec_per_call=0.5\r\n\
             cmdstat_info:calls=3,usec=1\r\ncmdstat_xinfo|groups:calls=1,usec=1\r\n",
        );
        assert_eq!(before.get("xadd"), Some(&10));
        assert_eq!(before.get("xinfo|groups"), Some(&1));
        let after = commandstats::parse(
            "cmdstat_xadd:calls=110,usec=9\ncmdstat_info:calls=9,usec=1\n\
             cmdstat_xinfo|groups:calls=5,usec=1\ncmdstat_zadd:calls=40,usec=1\n\
             cmdstat_hset:calls=40,usec=1\ncmdstat_get:calls=7\nbogus\n",
        );
        let own = Calls::from([("xinfo|groups".to_string(), 4)]);
        let d = calls_delta(&before, &after, &own);
        assert_eq!(
            d,
            Calls::from([
                ("get".to_string(), 7),
                ("hset".to_string(), 40),
                ("xadd".to_string(), 100),
                ("zadd".to_string(), 40),
            ])
        );
        assert_eq!(
            top_calls(&d, 3),
            vec![
                ("xadd".to_string(), 100),
                ("hset".to_string(), 40),
                ("zadd".to_string(), 40)
            ]
        );
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_group_progress_is_read_from_xinfo_groups() {
        let group = |name: &str, read: Value, lag: Value| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Int(1),
                bulk("pending"),
                Value::Int(3),
                bulk("last-delivered-id"),
                bulk("1-0"),
                bulk("entries-read"),
                read,
                bulk("lag"),
                lag,
            ])
        };
        let reply = vec![
            group("other", Value::Int(1), Value::Int(9)),
            group("webhookd", Value::Int(40), Value::Nil),
        ];
        let p = group_progress(reply.clone(), "webhookd").expect("found");
        assert_eq!(
            p,
            GroupProgress {
                entries_read: Some(40),
                lag: None,
                pending: Some(3)
            }
        );
        assert!(p.read_all(40) && !p.read_all(41));
        assert!(group_progress(reply, "nobody").is_none());
        let behind = GroupProgress {
            entries_read: None,
            lag: Some(2),
            pending: None,
        };
        assert!(!behind.read_all(0));
        assert!(GroupProgress {
            lag: Some(0),
            ..behind
        }
        .read_all(10));
    }

    #[test]
    fn metrics_are_read_with_or_without_labels() {
        let text = "# HELP webhookd_circuits_open x\nwebhookd_circuits_open 2\n\
                    webhookd_circuit_transitions_total{to=\"open\"} 5\n\
                    webhookd_circuit_transitions_total{to=\"closed\"} 1\n\
                    webhookd_deliveries_deferred_total 7\n";
        assert_eq!(
            metric_json(text, "webhookd_circuits_open"),
            serde_json::json!(2.0)
        );
        assert_eq!(
            metric_json(text, "webhookd_circuit_transitions_total"),
            serde_json::json!({"to=\"open\"": 5.0, "to=\"closed\"": 1.0})
        );
        assert_eq!(
            metric_json(text, "webhookd_deliveries_parked_total"),
            serde_json::Value::Null
        );
        assert_eq!(
            metric_json(text, "webhookd_deliveries_deferred"),
            serde_json::Value::Null
        );
    }
}
