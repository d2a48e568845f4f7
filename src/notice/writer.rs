//! Publishes notices to their tenants' stream shards, marked as webhookd's own, a batch per
//! round trip; while Redis is away it waits and tries again, so a notice is lost only when
//! webhookd stops before Redis comes back (logged).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::kinds::Notice;
use super::mark::{self, Mark};
use crate::db::conn::Conn;
use crate::db::shards::Shards;
use crate::event::envelope_json;
use crate::registry::LiveIndex;
use crate::support::backoff::Backoff;
use crate::support::batch::{Batches, Closing};
use crate::support::clock::now_ms;
use crate::support::shutdown::Shutdown;

const BATCH: usize = 64;

pub(crate) struct Writer {
    rx: Closing<Notice>,
    conn: Conn,
    shards: Shards,
    mark: Arc<Mark>,
    live: LiveIndex,
}

impl Writer {
    pub(super) fn new(
        rx: mpsc::Receiver<Notice>,
        conn: Conn,
        shards: Shards,
        mark: Arc<Mark>,
        live: LiveIndex,
    ) -> Writer {
        Writer {
            rx: Closing::new(rx),
            conn,
            shards,
            mark,
            live,
        }
    }

    /// What tells it, at shutdown, to publish what is queued and end (`run`).
    pub(crate) fn finisher(&self) -> Shutdown {
        self.rx.finisher()
    }

    /// Runs until every handle is dropped or it is told to finish, or shutdown ends the
    /// waiting for Redis.
    pub(crate) async fn run(mut self, stop: Shutdown) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut backoff = Backoff::new(Duration::from_millis(100));
        loop {
            if self.rx.recv_many(&mut buf, BATCH).await == 0 {
                return;
            }
            // A notice no endpoint of its tenant subscribes to would only be read and dropped.
            let live = self.live.snapshot();
            let mut matched = Vec::new();
            buf.retain(|n| {
                matched.clear();
                live.matching(&n.tenant, n.event_type, &mut matched);
                !matched.is_empty()
            });
            drop(live);
            if buf.is_empty() {
                continue;
            }
            loop {
                match self.publish(&buf).await {
                    Ok(()) => break,
                    Err(e) if stop.begun() => {
                        tracing::warn!(error = %e, lost = buf.len(), "operational events not published before shutdown");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, waiting = buf.len(), "publishing operational events failed; trying again");
                        tokio::time::sleep(backoff.next_wait()).await;
                    }
                }
            }
            backoff.reset();
            buf.clear();
        }
    }

    async fn publish(&self, notices: &[Notice]) -> redis::RedisResult<()> {
        // Read each batch: a Redis that lost its data gets a new key, shared by all replicas.
        let key = self.mark.reload().await?;
        let created_at = now_ms() / 1000;
        let mut pipe = redis::pipe();
        for n in notices {
            let raw = envelope_json(&n.id, n.event_type, &n.tenant, created_at, &n.data);
            pipe.cmd("XADD")
                .arg(self.shards.keys_of_tenant(&n.tenant).stream())
                .arg("*")
                .arg("event")
                .arg(&raw)
                .arg(mark::FIELD)
                .arg(mark::sign(&key, raw.as_bytes()))
                .ignore();
            tracing::info!(tenant = %n.tenant, event_type = n.event_type, id = %n.id, "operational event published");
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }
}
