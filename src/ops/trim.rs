//! Keeps the input stream from growing forever: entries every consumer group has read and
//! acknowledged, and that are older than [`KEEP`], are trimmed. Nothing pending or unread by
//! any group on the stream is ever removed.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::ops::metrics::Metrics;
use crate::retry::dlq::Dlq;
use crate::support::clock::now_ms;
use crate::support::shutdown::Shutdown;

/// Recent history kept for inspection (`XRANGE`) even once delivered.
pub(crate) const KEEP: Duration = Duration::from_secs(3600);
const EVERY: Duration = Duration::from_secs(60);

/// `(ms, seq)` of a stream id.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The lowest id still needed by any group: its oldest pending entry, or the first entry after
/// its last-delivered id. `None` when the stream has no group (then nothing is trimmed).
pub(crate) async fn lowest_needed(
    conn: &Conn,
    stream: &str,
) -> redis::RedisResult<Option<(u64, u64)>> {
    let groups: Vec<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut conn.clone())
        .await?;
    let mut lowest: Option<(u64, u64)> = None;
    let mut keep = |id: (u64, u64)| lowest = Some(lowest.map_or(id, |l| l.min(id)));
    if groups.is_empty() {
        return Ok(None);
    }
    for g in groups {
        let fields: std::collections::HashMap<String, Value> = redis::from_redis_value(g)?;
        let name: String = fields
            .get("name")
            .map(redis::from_redis_value_ref)
            .transpose()?
            .unwrap_or_default();
        let last: String = fields
            .get("last-delivered-id")
            .map(redis::from_redis_value_ref)
            .transpose()?
            .unwrap_or_else(|| "0-0".into());
        if let Some((ms, seq)) = parse_id(&last) {
            keep((ms, seq.saturating_add(1)));
        }
        let summary: (u64, Option<String>, Value, Value) = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&name)
            .query_async(&mut conn.clone())
            .await?;
        if let Some(oldest) = summary.1.as_deref().and_then(parse_id) {
            keep(oldest);
        }
    }
    Ok(lowest)
}

/// Every minute: the input streams (what every group is done with), and the dead letters past
/// `dlq.retention`.
pub(crate) async fn run(
    conn: Conn,
    streams: Vec<Keys>,
    dlq: Dlq,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) {
    loop {
        // First at start: dead letters from before this build are listed by tenant once
        // indexed (`retry::dlq::tenant_index`).
        if let Err(e) = dlq.index_new().await {
            tracing::debug!(error = %e, "indexing dead letters by tenant skipped");
        }
        if !stop.sleep(EVERY).await {
            return;
        }
        for keys in &streams {
            if let Err(e) = trim_once(&conn, keys.stream()).await {
                tracing::debug!(error = %e, stream = keys.stream(), "stream trim skipped");
            }
        }
        match dlq.trim().await {
            Ok(n) => {
                metrics.dlq_trimmed.inc_by(n);
            }
            Err(e) => tracing::debug!(error = %e, "dead-letter trim skipped"),
        }
    }
}

/// Trims once; answers how many entries were removed.
pub async fn trim_once(conn: &Conn, stream: &str) -> redis::RedisResult<u64> {
    let Some(needed) = lowest_needed(conn, stream).await? else {
        return Ok(0);
    };
    let age_floor = (now_ms().max(0) as u64).saturating_sub(KEEP.as_millis() as u64);
    let minid = needed.min((age_floor, 0));
    redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg(format!("{}-{}", minid.0, minid.1))
        .query_async(&mut conn.clone())
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_parse() {
        assert_eq!(super::parse_id("17-3"), Some((17, 3)));
        assert_eq!(super::parse_id("17"), Some((17, 0)));
        assert_eq!(super::parse_id("x-1"), None);
    }
}
