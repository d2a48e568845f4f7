//! The duplicate check (SPEC 1): an event id is delivered once per tenant within
//! `stream.dedup_window` (24 h by default), however many entries carry it. The first entry to
//! carry it owns it; that same entry read again (after a crash or a claim) is still its owner,
//! so it is not taken for a duplicate.
//!
//! Each id is kept as a 128-bit fingerprint of (tenant, id) with a 24-bit tag of its owner
//! entry, in small hashes that Redis stores compactly (`dedup.lua`): about 25 bytes an event
//! instead of a key each. A fingerprint never collides in practice (2⁻¹²⁸), so no event is ever
//! taken for a duplicate it is not; two entries whose tags collide (2⁻²⁴) are both delivered,
//! which at-least-once delivery allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::Event;
use crate::support::clock;

static CHECK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("dedup.lua")));

/// Fields a hash aims at: well below Redis's default `hash-max-listpack-entries` (128), so
/// the unlucky hashes of a segment stay compact too.
const PER_HASH: u64 = 64;

/// `legacy_until` before this process has looked.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct Dedup {
    keys: Keys,
    /// `keys.dedup_segments()` and `keys.dedup_base()`, named once instead of every batch.
    segments: String,
    base: String,
    window: Duration,
    legacy_until: AtomicU64,
}

impl Dedup {
    pub(crate) fn new(keys: Keys, window: Duration) -> Dedup {
        Dedup {
            segments: keys.dedup_segments(),
            base: keys.dedup_base(),
            keys,
            window,
            legacy_until: AtomicU64::new(UNKNOWN),
        }
    }

    /// For each (entry, event): true unless another entry carried its id first within the
    /// window.
    pub(crate) async fn first_sightings(
        &self,
        conn: &Conn,
        valid: &[(String, Event)],
    ) -> redis::RedisResult<Vec<bool>> {
        let legacy = self.legacy(conn).await?;
        let window = self.window.as_millis().max(1000) as u64;
        let mut call = CHECK.key(&self.segments);
        call.arg(window)
            .arg((window / 4).max(250))
            .arg(PER_HASH)
            .arg(&self.base)
            .arg(u8::from(legacy));
        for (entry, ev) in valid {
            call.arg(&fingerprint(&ev.tenant, &ev.id)[..])
                .arg(owner_tag(entry));
            if legacy {
                call.arg(self.keys.dedup_legacy(&ev.tenant, &ev.id))
                    .arg(entry);
            }
        }
        let seen: Vec<u8> = call.invoke_async(&mut conn.clone()).await?;
        Ok(seen.into_iter().map(|s| s == 1).collect())
    }

    /// True while ids the previous layout remembered (one key each) may still be in their
    /// window. The first replica of this build to start looks for such keys and, if there
    /// are any, marks the window they live in; each replica reads the mark once.
    async fn legacy(&self, conn: &Conn) -> redis::RedisResult<bool> {
        // The earlier layout knew one unsharded stream only.
        if self.keys.shard_index().is_some() {
            return Ok(false);
        }
        let until = match self.legacy_until.load(Ordering::Relaxed) {
            UNKNOWN => self.find_legacy(conn).await?,
            until => until,
        };
        Ok((clock::now_ms() as u64) < until)
    }

    /// Unix ms until which the previous layout's keys may live (0: there are none).
    async fn find_legacy(&self, conn: &Conn) -> redis::RedisResult<u64> {
        let mut c = conn.clone();
        let version: Option<String> = redis::cmd("GET")
            .arg(self.keys.dedup_version())
            .query_async(&mut c)
            .await?;
        if version.is_none() {
            if self.any_legacy_key(conn).await? {
                let _: () = redis::cmd("SET")
                    .arg(self.keys.dedup_legacy_mark())
                    .arg(1)
                    .arg("PX")
                    .arg(self.window.as_millis().max(1) as u64)
                    .query_async(&mut c)
                    .await?;
            }
            let _: () = redis::cmd("SET")
                .arg(self.keys.dedup_version())
                .arg(2)
                .query_async(&mut c)
                .await?;
        }
        let ttl: i64 = redis::cmd("PTTL")
            .arg(self.keys.dedup_legacy_mark())
            .query_async(&mut c)
            .await?;
        let until = if ttl > 0 {
            clock::now_ms() as u64 + ttl as u64
        } else {
            0
        };
        self.legacy_until.store(until, Ordering::Relaxed);
        Ok(until)
    }

    /// Whether any key of the previous layout exists (stops at the first).
    async fn any_legacy_key(&self, conn: &Conn) -> redis::RedisResult<bool> {
        let pattern = self.keys.dedup_legacy_pattern();
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
}

/// 128 bits of SHA-256 over (tenant, id), domain-separated from every other use of the hash.
fn fingerprint(tenant: &str, id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"webhookd dedup v2\0");
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// 24 bits naming the owner entry: stored as a small integer, compact in a listpack.
fn owner_tag(entry: &str) -> u32 {
    let d = Sha256::digest(entry.as_bytes());
    u32::from_be_bytes([0, d[0], d[1], d[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_tenants_and_ids_apart() {
        assert_eq!(fingerprint("t", "a"), fingerprint("t", "a"));
        assert_ne!(fingerprint("t", "a"), fingerprint("t", "b"));
        assert_ne!(fingerprint("t", "a"), fingerprint("u", "a"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }

    #[test]
    fn an_owner_tag_is_24_bits_and_stable() {
        assert_eq!(owner_tag("1-0"), owner_tag("1-0"));
        assert_ne!(owner_tag("1-0"), owner_tag("2-0"));
        assert!(owner_tag("1704825600000-17") < 1 << 24);
    }
}
