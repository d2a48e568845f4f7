//! Reading the stream through the consumer group: new entries, this consumer's own pending
//! ones after a restart, and entries a dead consumer left pending.

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId};

use crate::db::conn::Conn;
use crate::db::keys::Keys;

#[derive(Clone)]
pub(crate) struct StreamSettings {
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) batch: usize,
    pub(crate) block: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) max_event_bytes: usize,
    /// The invalid stream keeps at most this many entries.
    pub(crate) invalid_max_len: u64,
    pub(crate) dedup_window: Duration,
}

pub(crate) struct Reader {
    /// A connection of its own: `XREADGROUP BLOCK` would stall a shared one.
    blocking: Conn,
    conn: Conn,
    keys: Keys,
    settings: StreamSettings,
}

pub(crate) fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

impl Reader {
    pub(crate) fn new(blocking: Conn, conn: Conn, keys: Keys, settings: StreamSettings) -> Reader {
        Reader {
            blocking,
            conn,
            keys,
            settings,
        }
    }

    pub(crate) fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// The consumer's own connection, for reads that wait.
    pub(crate) fn blocking(&self) -> &Conn {
        &self.blocking
    }

    /// The shared (non-blocking) connection.
    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Creates the group (from the start of the stream) and the stream if absent.
    pub(crate) async fn ensure_group(&self) -> redis::RedisResult<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream())
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") && !e.to_string().contains("BUSYGROUP") => {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Reads up to `room` entries: new ones (`>`, waiting up to `block`), or this consumer's
    /// own pending ones after `from`.
    pub(crate) async fn read(&self, from: &str, room: usize) -> redis::RedisResult<Vec<StreamId>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(room);
        if from == ">" {
            cmd.arg("BLOCK").arg(self.settings.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys.stream()).arg(from);
        let reply: redis::Value = cmd.query_async(&mut self.blocking.clone()).await?;
        crate::ingest::reply::stream_entries(reply)
    }

    /// Takes over entries that a dead consumer left pending longer than `claim_idle`, except
    /// those `ours` says this replica is working on; also answers the ids of entries whose data
    /// was trimmed away meanwhile (nothing left to deliver: they only need acknowledging).
    pub(crate) async fn autoclaim(
        &self,
        room: usize,
        ours: impl Fn(&str) -> bool,
    ) -> redis::RedisResult<(Vec<StreamId>, Vec<String>)> {
        let mut cursor = "0-0".to_string();
        let (mut claimed, mut gone) = (Vec::new(), Vec::new());
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream())
                .arg(&self.settings.group)
                .arg(&self.settings.consumer)
                .arg(self.settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(room)
                .query_async(&mut self.conn.clone())
                .await?;
            gone.extend(reply.deleted_ids);
            claimed.extend(reply.claimed.into_iter().filter(|e| !ours(&e.id)));
            cursor = reply.next_stream_id;
            if cursor == "0-0" || claimed.len() >= room {
                break;
            }
        }
        if !claimed.is_empty() {
            tracing::info!(
                count = claimed.len(),
                "claimed entries left pending by another consumer"
            );
        }
        Ok((claimed, gone))
    }
}
