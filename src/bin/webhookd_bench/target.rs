//! The webhookd under test: its endpoints written straight into its Redis registry, and the
//! process itself, either spawned here with a generated config or already running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use redis::Value;
use webhookd::db::conn::Conn;
use webhookd::registry::{EndpointRecord, Store};
use webhookd::secure::seal::Sealer;
use webhookd::secure::sign::generate_secret;

use super::noisy::{Noisy, NOISY_TYPE};
use super::plan::Plan;

/// Endpoint records written concurrently per round trip batch.
const PUT_CONCURRENCY: usize = 256;
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Writes every endpoint of the plan, each with its own secret, under the target's prefix.
pub async fn register(
    store: &Store,
    sealer: &Sealer,
    plan: &Plan,
    filters: &[String],
    secrets: &[String],
    listeners: &[SocketAddr],
) -> redis::RedisResult<()> {
    let now = webhookd::support::clock::now_ms();
    let records: Vec<EndpointRecord> = (0..plan.endpoints)
        .map(|n| EndpointRecord {
            description: "webhookd-bench".into(),
            ..EndpointRecord::new(
                plan.endpoint_id(n),
                plan.tenant(n as u64),
                format!("http://{}/ep/{n}", listeners[n as usize % listeners.len()]),
                filters.to_vec(),
                sealer.seal(&secrets[n as usize], &plan.endpoint_id(n)),
                now,
            )
        })
        .collect();
    put_all(store, &records).await
}

/// Writes the noisy endpoints exactly like the healthy ones (own secrets, same registry).
pub async fn register_noisy(
    store: &Store,
    sealer: &Sealer,
    noisy: &Noisy,
    addrs: &[SocketAddr],
) -> redis::RedisResult<()> {
    let now = webhookd::support::clock::now_ms();
    let records: Vec<EndpointRecord> = (0..noisy.endpoints)
        .map(|k| EndpointRecord {
            description: format!("webhookd-bench noisy {}", noisy.kind.name()),
            ..EndpointRecord::new(
                noisy.endpoint_id(k),
                noisy.tenant.clone(),
                format!(
                    "http://{}{}",
                    addrs[k as usize % addrs.len()],
                    Noisy::path(k)
                ),
                vec![NOISY_TYPE.to_string()],
                sealer.seal(&generate_secret(), &noisy.endpoint_id(k)),
                now,
            )
        })
        .collect();
    put_all(store, &records).await
}

async fn put_all(store: &Store, records: &[EndpointRecord]) -> redis::RedisResult<()> {
    for chunk in records.chunks(PUT_CONCURRENCY) {
        let puts = chunk.iter().map(|r| store.put(r));
        for r in futures_util::future::join_all(puts).await {
            r?;
        }
    }
    Ok(())
}

/// Removes the plan's endpoints, and the noisy ones (external mode: the rest of the prefix is
/// not ours).
pub async fn unregister(
    store: &Store,
    plan: &Plan,
    noisy: Option<&Noisy>,
) -> redis::RedisResult<()> {
    let mut ids: Vec<(String, String)> = (0..plan.endpoints)
        .map(|n| (plan.tenant(n as u64), plan.endpoint_id(n)))
        .collect();
    if let Some(noisy) = noisy {
        ids.extend((0..noisy.endpoints).map(|k| (noisy.tenant.clone(), noisy.endpoint_id(k))));
    }
    for chunk in ids.chunks(PUT_CONCURRENCY) {
        let dels = chunk.iter().map(|(t, id)| store.delete(t, id));
        for r in futures_util::future::join_all(dels).await {
            r?;
        }
    }
    Ok(())
}

/// Deletes every key under `prefix` (spawn mode: the whole prefix belongs to this run).
pub async fn purge_prefix(conn: &Conn, prefix: &str) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let pattern = format!("{}*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            removed += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A webhookd started by this tool; killed when dropped.
pub struct Spawned {
    child: Child,
    pub pid: u32,
    pub base_url: String,
    pub dir: PathBuf,
}

pub struct SpawnSpec<'a> {
    pub bin: &'a Path,
    pub redis_url: &'a str,
    pub prefix: &'a str,
    pub stream_key: &'a str,
    pub encryption_key: &'a str,
    pub env: &'a [(String, String)],
}

impl Spawned {
    /// Writes a config (own prefix, loopback receivers allowed over http), starts
    /// `webhookd serve` and waits until `/readyz` answers 200.
    pub async fn start(spec: SpawnSpec<'_>) -> Result<Spawned, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir =
            std::env::temp_dir().join(format!("webhookd-bench-{}", spec.prefix.replace(':', "_")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("config.yaml");
        let yaml = format!(
            "redis:\n  url: \"{}\"\n  key_prefix: \"{}\"\n\
             stream:\n  key: \"{}\"\n  consumer: bench\n\
             http:\n  listen: \"127.0.0.1:{port}\"\n\
             delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n\
             signing:\n  encryption_key: \"{}\"\n\
             shutdown_grace: 2s\n",
            spec.redis_url, spec.prefix, spec.stream_key, spec.encryption_key
        );
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.join("webhookd.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(spec.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        for (k, v) in spec.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
        let mut s = Spawned {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        loop {
            if get(&format!("{}/readyz", s.base_url))
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return Ok(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!(
                    "webhookd exited ({status}); see {}/webhookd.log",
                    s.dir.display()
                ));
            }
            if started.elapsed() > READY_WITHIN {
                return Err(format!(
                    "webhookd not ready within {READY_WITHIN:?}; see {}/webhookd.log",
                    s.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

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
    ("deferred", "webhookd_deliveries_deferred_total"),
];

/// The value of one sample line of Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Counters and gauges of the isolation work, when this webhookd has them (besides
/// `deferred`, in [`EXPLAINING`]).
pub const ISOLATION: &[(&str, &str)] = &[
    ("parked", "webhookd_deliveries_parked_total"),
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

pub type Calls = std::collections::BTreeMap<String, u64>;

/// `INFO commandstats` as (command, calls); server-wide, so other clients count too.
pub async fn command_calls(conn: &Conn) -> Option<Calls> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn.clone())
        .await
        .ok()?;
    Some(parse_commandstats(&text))
}

/// The `cmdstat_<name>:calls=N,...` lines of `INFO commandstats`.
pub fn parse_commandstats(text: &str) -> Calls {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
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
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_xadd:calls=10,usec=5,usec_per_call=0.5\r\n\
             cmdstat_info:calls=3,usec=1\r\ncmdstat_xinfo|groups:calls=1,usec=1\r\n",
        );
        assert_eq!(before.get("xadd"), Some(&10));
        assert_eq!(before.get("xinfo|groups"), Some(&1));
        let after = parse_commandstats(
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
