//! The gauges read from Redis (queue depths, pending entries), refreshed when `/metrics` is
//! scraped, so an alert sees a change as soon as it happens and idle replicas read nothing.

use redis::streams::StreamInfoGroupsReply;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::ops::metrics::Metrics;
use crate::registry::LiveIndex;
use crate::retry::dlq::Dlq;
use crate::retry::RetryQueue;

pub(crate) struct Gauges {
    pub(crate) conn: Conn,
    /// Every stream this replica reads: the lag is their sum.
    pub(crate) streams: Vec<Keys>,
    pub(crate) group: String,
    pub(crate) retry: RetryQueue,
    pub(crate) dlq: Dlq,
    pub(crate) live: LiveIndex,
}

impl Gauges {
    /// Reads every gauge; one that Redis cannot answer keeps its last value.
    pub(crate) async fn refresh(&self, metrics: &Metrics) {
        if let Ok(n) = self.retry.depth().await {
            metrics.retry_queue_depth.set(n as i64);
        }
        if let Ok(n) = self.dlq.depth().await {
            metrics.dlq_depth.set(n as i64);
        }
        // One XINFO GROUPS per stream answers both the group's pending entries and its
        // unread ones; KEDA scales on the sum over all shards.
        let (mut pending, mut lag, mut lag_known) = (0, 0, true);
        for keys in &self.streams {
            let groups: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(keys.stream())
                .query_async(&mut self.conn.clone())
                .await;
            let ours = groups
                .ok()
                .and_then(|g| g.groups.into_iter().find(|g| g.name == self.group));
            if let Some(g) = ours {
                pending += g.pending;
                // Redis cannot always count the unread entries (after deletions inside the
                // group's range it answers nil); the lag then keeps its last value.
                match g.lag {
                    Some(unread) => lag += unread + g.pending,
                    None => lag_known = false,
                }
            }
        }
        metrics.stream_pending.set(pending as i64);
        if lag_known {
            metrics.stream_lag.set(lag as i64);
        }
        let snapshot = self.live.snapshot();
        metrics.endpoints.set(snapshot.len() as i64);
        metrics
            .endpoints_quarantined
            .set(snapshot.quarantined() as i64);
    }
}
