//! Per-endpoint attempt history in Redis (capped), written off the hot path in batches,
//! and the failure streak that disables an endpoint after `delivery.disable_after`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::registry::Store;

/// Attempts kept per endpoint.
pub const KEEP: isize = 100;
/// Records waiting to be written; past this, records are dropped (the log is best-effort).
const BACKLOG: usize = 16_384;
const BATCH: usize = 512;
/// How often the set of failing endpoints is re-read, to see other replicas' successes.
const FAILING_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    /// Unix ms.
    pub at: i64,
    pub event_id: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response: String,
    #[serde(skip)]
    pub endpoint_id: String,
    #[serde(skip)]
    pub gone: bool,
}

/// The hot path's handle: never blocks.
#[derive(Clone)]
pub struct AttemptLog {
    tx: mpsc::Sender<AttemptRecord>,
}

impl AttemptLog {
    pub fn record(&self, rec: AttemptRecord) {
        let _ = self.tx.try_send(rec);
    }
}

/// Records a failure time if none is set; answers the start of the streak.
const FAILING: &str = r#"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"#;

pub struct Writer {
    rx: mpsc::Receiver<AttemptRecord>,
    conn: ConnectionManager,
    keys: Keys,
    store: Store,
    disable_after: Duration,
    failing: HashSet<String>,
    script: redis::Script,
    metrics: Arc<Metrics>,
}

pub fn channel(
    conn: ConnectionManager,
    keys: Keys,
    store: Store,
    disable_after: Duration,
    metrics: Arc<Metrics>,
) -> (AttemptLog, Writer) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (
        AttemptLog { tx },
        Writer {
            rx,
            conn,
            keys,
            store,
            disable_after,
            failing: HashSet::new(),
            script: redis::Script::new(FAILING),
            metrics,
        },
    )
}

impl Writer {
    /// Runs until every handle is dropped, then drains what is left.
    pub async fn run(mut self) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut last_refresh = tokio::time::Instant::now() - FAILING_REFRESH;
        loop {
            if last_refresh.elapsed() >= FAILING_REFRESH {
                last_refresh = tokio::time::Instant::now();
                if let Ok(ids) = redis::cmd("HKEYS")
                    .arg(self.keys.failing_since())
                    .query_async::<Vec<String>>(&mut self.conn.clone())
                    .await
                {
                    self.failing = ids.into_iter().collect();
                }
            }
            let n = tokio::select! {
                n = self.rx.recv_many(&mut buf, BATCH) => n,
                _ = tokio::time::sleep(FAILING_REFRESH) => continue,
            };
            if n == 0 {
                return;
            }
            if let Err(e) = self.write(&buf).await {
                tracing::warn!(error = %e, dropped = buf.len(), "attempt log write failed");
            }
            buf.clear();
        }
    }

    async fn write(&mut self, batch: &[AttemptRecord]) -> redis::RedisResult<()> {
        // One LPUSH and one LTRIM per endpoint per batch, oldest first so the newest ends up
        // at the head.
        let mut by_endpoint: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        let mut pipe = redis::pipe();
        for rec in batch {
            by_endpoint
                .entry(rec.endpoint_id.as_str())
                .or_default()
                .push(serde_json::to_string(rec).expect("records serialize"));
            let ok = matches!(rec.status, Some(s) if (200..300).contains(&s));
            if ok && self.failing.remove(&rec.endpoint_id) {
                pipe.hdel(self.keys.failing_since(), &rec.endpoint_id)
                    .ignore();
            }
        }
        for (endpoint, records) in &by_endpoint {
            let key = self.keys.attempts(endpoint);
            let newest = &records[records.len().saturating_sub(KEEP as usize)..];
            pipe.lpush(&key, newest)
                .ignore()
                .ltrim(&key, 0, KEEP - 1)
                .ignore();
        }
        crate::stats::add(&mut pipe, &self.keys, batch);
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        for rec in batch {
            let ok = matches!(rec.status, Some(s) if (200..300).contains(&s));
            if ok || rec.gone {
                continue;
            }
            self.failing.insert(rec.endpoint_id.clone());
            let since: i64 = self
                .script
                .key(self.keys.failing_since())
                .arg(&rec.endpoint_id)
                .arg(rec.at)
                .invoke_async(&mut self.conn.clone())
                .await?;
            if rec.at - since >= self.disable_after.as_millis() as i64 {
                let reason = format!(
                    "every attempt failed for {} (delivery.disable_after); last error: {}",
                    crate::duration::Dur(self.disable_after),
                    rec.error.as_deref().unwrap_or("unknown")
                );
                if disable(&self.store, &rec.endpoint_id, &reason).await? {
                    self.metrics.endpoints_disabled.inc();
                }
            }
        }
        Ok(())
    }
}

/// Disables an endpoint with a reason; false when it was gone or already disabled.
pub async fn disable(store: &Store, endpoint_id: &str, reason: &str) -> redis::RedisResult<bool> {
    let Some(mut rec) = store.get(endpoint_id).await? else {
        return Ok(false);
    };
    if rec.disabled {
        return Ok(false);
    }
    rec.disabled = true;
    rec.disabled_reason = Some(reason.to_string());
    rec.updated_at = crate::clock::now_ms();
    store.put(&rec).await?;
    tracing::info!(endpoint = %endpoint_id, reason, "endpoint disabled");
    Ok(true)
}

/// Recent attempts of one endpoint, newest first.
pub async fn recent(
    conn: &ConnectionManager,
    keys: &Keys,
    endpoint_id: &str,
    limit: usize,
) -> redis::RedisResult<Vec<AttemptRecord>> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.attempts(endpoint_id))
        .arg(0)
        .arg(limit.saturating_sub(1))
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}
