//! The first layout of the duplicate check (one key per id, named from the event), read
//! beside the current one until its last key expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::support::clock;

/// `until` before this process has looked.
const UNKNOWN: u64 = u64::MAX;

pub(super) struct Legacy {
    /// Unix ms until which the first layout's keys may live.
    until: AtomicU64,
}

impl Default for Legacy {
    fn default() -> Legacy {
        Legacy {
            until: AtomicU64::new(UNKNOWN),
        }
    }
}

impl Legacy {
    /// True while ids the first layout remembered may still be in their window. The first
    /// replica of this build to start looks for such keys and, if there are any, marks the
    /// window they live in; each replica reads the mark once.
    pub(super) async fn active(
        &self,
        conn: &Conn,
        keys: &Keys,
        window: Duration,
    ) -> redis::RedisResult<bool> {
        // The earlier layout knew one unsharded stream only.
        if keys.shard_index().is_some() {
            return Ok(false);
        }
        let until = match self.until.load(Ordering::Relaxed) {
            UNKNOWN => self.find(conn, keys, window).await?,
            until => until,
        };
        Ok((clock::now_ms() as u64) < until)
    }

    /// Unix ms until which the previous layout's keys may live (0: there are none).
    async fn find(&self, conn: &Conn, keys: &Keys, window: Duration) -> redis::RedisResult<u64> {
        let mut c = conn.clone();
        let version: Option<String> = redis::cmd("GET")
            .arg(keys.dedup_version())
            .query_async(&mut c)
            .await?;
        if version.is_none() {
            if any_key(conn, keys).await? {
                let _: () = redis::cmd("SET")
                    .arg(keys.dedup_legacy_mark())
                    .arg(1)
                    .arg("PX")
                    .arg(window.as_millis().max(1) as u64)
                    .query_async(&mut c)
                    .await?;
            }
            let _: () = redis::cmd("SET")
                .arg(keys.dedup_version())
                .arg(2)
                .query_async(&mut c)
                .await?;
        }
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.dedup_legacy_mark())
            .query_async(&mut c)
            .await?;
        let until = if ttl > 0 {
            clock::now_ms() as u64 + ttl as u64
        } else {
            0
        };
        self.until.store(until, Ordering::Relaxed);
        Ok(until)
    }
}

/// Whether any key of the previous layout exists (stops at the first).
async fn any_key(conn: &Conn, keys: &Keys) -> redis::RedisResult<bool> {
    let pattern = keys.dedup_legacy_pattern();
    let mut c = conn.clone();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("string")
            .query_async(&mut c)
            .await?;
        if !found.is_empty() {
            return Ok(true);
        }
        if next == 0 {
            return Ok(false);
        }
        cursor = next;
    }
}
