//! Moves ordered deliveries along (`retry::order`): each key's next delivery is released into
//! the due set once the one before it has its fate and every earlier entry of its shard has
//! been fanned out, and then taken at once rather than at the retry puller's next look.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::deliver::dispatcher::Dispatcher;
use crate::deliver::pull::take;
use crate::ops::health::Health;
use crate::retry::order::{entry_score, OrderQueue};
use crate::retry::shards::Queue;
use crate::retry::RetryQueue;
use crate::support::shutdown::Shutdown;

/// How often keys are looked at while some have deliveries, and at most when none do (an
/// ordered fan-out here wakes it sooner).
const BUSY: Duration = Duration::from_millis(20);
const IDLE: Duration = Duration::from_millis(500);

pub(crate) struct Promoter {
    pub(crate) order: OrderQueue,
    pub(crate) queue: RetryQueue,
    pub(crate) conn: Conn,
    /// The streams this replica reads, by the label key queues name them with.
    pub(crate) streams: HashMap<String, Keys>,
    pub(crate) group: String,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) outstanding: Arc<Semaphore>,
    pub(crate) lease: Duration,
    pub(crate) wake: Arc<Notify>,
    pub(crate) health: Arc<Health>,
}

/// The label a stream's key queues carry: its shard, or `-` unsharded.
pub(crate) fn label(keys: &Keys) -> String {
    keys.shard_index()
        .map_or_else(|| "-".to_string(), |i| i.to_string())
}

impl Promoter {
    pub(crate) async fn run(self, stop: Shutdown) {
        let queues: Vec<Queue> = self.queue.shards().all().map(|(q, _)| q).collect();
        let mut wait = BUSY;
        let mut offsets: HashMap<Queue, isize> = HashMap::new();
        while !stop.begun() {
            let mut marks: HashMap<String, f64> = HashMap::new();
            let (mut busy, mut failed) = (false, false);
            for &q in &queues {
                let offset = offsets.get(&q).copied().unwrap_or(0);
                let active = match self.order.active(q, offset).await {
                    Ok((a, next)) => {
                        offsets.insert(q, next);
                        if a.is_empty() {
                            continue;
                        }
                        busy = true;
                        a
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(error = %e, "reading the ordered keys failed");
                        continue;
                    }
                };
                for name in &active {
                    let Some(label) = self.order.stream_of(q, name) else {
                        continue;
                    };
                    if !marks.contains_key(label) {
                        let w = self.watermark(label).await;
                        failed |= w.is_none();
                        marks.insert(label.to_string(), w.unwrap_or(f64::NEG_INFINITY));
                    }
                }
                match self.order.promote(q, &active, &marks).await {
                    Ok(0) => {}
                    Ok(_) => {
                        take(
                            &self.queue,
                            q,
                            &self.dispatcher,
                            &self.outstanding,
                            self.lease,
                            &self.health,
                            &stop,
                        )
                        .await;
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(error = %e, "moving ordered deliveries along failed");
                    }
                }
            }
            // While keys hold deliveries, a head's fate is noticed within BUSY.
            wait = if busy && !failed {
                BUSY
            } else if failed {
                IDLE
            } else {
                (wait * 2).min(IDLE)
            };
            tokio::select! {
                _ = stop.sleep(wait) => {}
                _ = self.wake.notified() => wait = BUSY,
            }
        }
    }

    /// The score up to which every entry of the stream has been fanned out: its oldest
    /// pending entry's, or past everything when none is pending.
    async fn watermark(&self, label: &str) -> Option<f64> {
        let keys = self.streams.get(label)?;
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(keys.stream())
            .arg(&self.group)
            .query_async(&mut self.conn.clone())
            .await
            .ok()?;
        let redis::Value::Array(parts) = summary else {
            return None;
        };
        match parts.get(1) {
            Some(redis::Value::BulkString(min)) => {
                Some(entry_score(std::str::from_utf8(min).ok()?))
            }
            Some(redis::Value::SimpleString(min)) => Some(entry_score(min)),
            _ => Some(f64::INFINITY),
        }
    }
}
