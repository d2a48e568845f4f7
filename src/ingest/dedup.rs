//! The duplicate check (SPEC 1): an event id is delivered once per tenant within
//! `stream.dedup_window` (24 h by default), however many entries carry it. The first entry to
//! carry it owns it; that same entry read again (after a crash or a claim) is still its owner,
//! so it is not taken for a duplicate.
//!
//! Each id is kept as a 128-bit fingerprint of (tenant, id) with a 24-bit tag of its owner
//! entry, in small hashes that Redis stores compactly (`dedup_core.lua`): about 25 bytes an
//! event instead of a key each. A fingerprint never collides in practice (2⁻¹²⁸), so no event
//! is ever taken for a duplicate it is not; two entries whose tags collide (2⁻²⁴) are both
//! delivered, which at-least-once delivery allows.
//!
//! Both are SHA-1 based, which Redis's Lua computes too: at a steady rate a read and its check
//! are one call (`read_checked`, issue 16), the script taking the ids from the events' JSON.
//! The previous layout's ids (SHA-256 fingerprints, in the `dedup_segments_v2` table) are
//! checked as well, in a second call after the read, until that table's last segment expires.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use redis::streams::StreamId;
use redis::Value;
use sha2::{Digest, Sha256};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::Event;
use crate::ingest::read::StreamSettings;
use crate::support::clock;

const CORE: &str = include_str!("dedup_core.lua");

fn script(main: &str) -> redis::Script {
    redis::Script::new(&format!("{CORE}\n{main}"))
}

static CHECK: LazyLock<redis::Script> = LazyLock::new(|| script(include_str!("dedup.lua")));
static READ_CHECKED: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("read_checked.lua")));
static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("dedup_release.lua")));

/// Fields a hash aims at: well below Redis's default `hash-max-listpack-entries` (128), so
/// the unlucky hashes of a segment stay compact too.
const PER_HASH: u64 = 64;

/// The largest event `read_checked.lua` takes apart for its id: Redis parses it (cjson) while
/// every other client waits, so bigger ones are checked after the read, once webhookd has
/// parsed them.
const LUA_PARSE_MAX: usize = 8 * 1024;
/// And at most this much in one call (a burst would hold Redis for milliseconds): the rest
/// are checked after the read too. A steady rate's reads hold a few small events.
const LUA_PARSE_BUDGET: usize = 64 * 1024;

/// `legacy_until` before this process has looked.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct Dedup {
    keys: Keys,
    /// The key names, made once instead of every batch.
    segments: String,
    base: String,
    segments_v2: String,
    base_v2: String,
    window: Duration,
    legacy_until: AtomicU64,
    /// Whether the previous layout's table may hold segments: assumed at start, until a check
    /// finds it gone. Once gone it stays gone (only a build before this one writes it).
    v2: AtomicBool,
}

/// A read's entries and, when the read was checked too (`read_checked`), each one's verdict.
pub(crate) struct Checked {
    pub(crate) entries: Vec<StreamId>,
    pub(crate) verdicts: Option<Vec<Verdict>>,
}

/// What `read_checked.lua` found for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its id (this fingerprint) is claimed for it; if it turns out invalid, `release` it.
    First(Vec<u8>),
    /// Another entry carried its id first.
    Duplicate,
    /// Not checked: to be checked with `first_sightings` once parsed.
    Unchecked,
}

impl Dedup {
    pub(crate) fn new(keys: Keys, window: Duration) -> Dedup {
        Dedup {
            segments: keys.dedup_segments(),
            base: keys.dedup_base(),
            segments_v2: keys.dedup_segments_v2(),
            base_v2: keys.dedup_base_v2(),
            keys,
            window,
            legacy_until: AtomicU64::new(UNKNOWN),
            v2: AtomicBool::new(true),
        }
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis().max(1000) as u64
    }

    /// How long a segment is filled for.
    fn span_ms(&self) -> u64 {
        (self.window_ms() / 4).max(250)
    }

    /// For each (entry, event): true unless another entry carried its id first within the
    /// window.
    pub(crate) async fn first_sightings(
        &self,
        conn: &Conn,
        valid: &[(String, Event)],
    ) -> redis::RedisResult<Vec<bool>> {
        let legacy = self.legacy(conn).await?;
        let with_v2 = self.v2.load(Ordering::Relaxed);
        let mut call = CHECK.key(&self.segments);
        call.key(&self.segments_v2)
            .arg(self.window_ms())
            .arg(self.span_ms())
            .arg(PER_HASH)
            .arg(&self.base)
            .arg(&self.base_v2)
            .arg(u8::from(with_v2))
            .arg(u8::from(legacy));
        for (entry, ev) in valid {
            call.arg(&fingerprint(&ev.tenant, &ev.id)[..])
                .arg(owner_tag(entry));
            if with_v2 {
                call.arg(&fingerprint_v2(&ev.tenant, &ev.id)[..])
                    .arg(owner_tag_v2(entry));
            }
            if legacy {
                call.arg(self.keys.dedup_legacy(&ev.tenant, &ev.id))
                    .arg(entry);
            }
        }
        let mut seen: Vec<u8> = call.invoke_async(&mut conn.clone()).await?;
        let v2 = seen.pop() == Some(1);
        self.v2.store(v2, Ordering::Relaxed);
        Ok(seen.into_iter().map(|s| s == 1).collect())
    }

    /// Whether a read may be checked in the same call (`read_checked`): not while the first
    /// layout's keys may be alive (they are named from the parsed event), nor on a Redis
    /// Cluster when the stream and the check's keys are in different slots (an unsharded
    /// stream). The previous layout is the script's own concern.
    pub(crate) async fn reads_checked(&self, conn: &Conn) -> redis::RedisResult<bool> {
        let split = conn.is_cluster() && self.keys.shard_index().is_none();
        Ok(!split && !self.legacy(conn).await?)
    }

    /// Reads up to `room` new entries and checks them in the same call (verdicts `None` while
    /// the previous layout's ids must be checked too). With `pause`, Redis holds the read that
    /// long first (a blocking read of a key never written, sent with it on `conn`, a
    /// connection of its own), so the pause costs this thread no timer and no wake-up: the
    /// read's reply ends it. Redis sees the timeout when it next wakes: at the rates that
    /// pause, within about a millisecond (idle, at its `hz`, with nothing waiting).
    pub(crate) async fn read_checked(
        &self,
        conn: &Conn,
        settings: &StreamSettings,
        room: usize,
        pause: Option<Duration>,
    ) -> redis::RedisResult<Checked> {
        let mut call = READ_CHECKED.key(self.keys.stream());
        call.key(&self.segments)
            .key(&self.segments_v2)
            .arg(&settings.group)
            .arg(&settings.consumer)
            .arg(room)
            .arg(self.window_ms())
            .arg(self.span_ms())
            .arg(PER_HASH)
            .arg(&self.base)
            .arg(LUA_PARSE_MAX.min(settings.max_event_bytes))
            .arg(u8::from(self.v2.load(Ordering::Relaxed)))
            .arg(LUA_PARSE_BUDGET);
        let reply: Value = match pause {
            Some(pause) => {
                // Whole milliseconds, at least one (`BLOCK 0` waits forever).
                let ms = (pause.as_micros().div_ceil(1000) as u64).max(1);
                let paused: redis::RedisResult<(Value,)> = redis::pipe()
                    .cmd("XREAD")
                    .arg("BLOCK")
                    .arg(ms)
                    .arg("STREAMS")
                    .arg(self.keys.stream_pause())
                    .arg("$")
                    .ignore()
                    .invoke_script(&call)
                    .query_async(&mut conn.clone())
                    .await;
                match paused {
                    Ok((reply,)) => reply,
                    // A pipeline does not load its scripts: the first call loads it, unpaused.
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        call.invoke_async(&mut conn.clone()).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => call.invoke_async(&mut conn.clone()).await?,
        };
        let checked = checked_reply(reply)?;
        if checked.verdicts.is_some() {
            self.v2.store(false, Ordering::Relaxed);
        }
        Ok(checked)
    }

    /// Gives back the ids `read_checked` claimed for `entries` (entry id, fingerprint), which
    /// turned out invalid: a valid entry carrying the same id is then still delivered.
    pub(crate) async fn release(
        &self,
        conn: &Conn,
        entries: &[(String, Vec<u8>)],
    ) -> redis::RedisResult<()> {
        let mut call = RELEASE.key(&self.segments);
        call.arg(self.window_ms())
            .arg(self.span_ms())
            .arg(&self.base);
        for (entry, fp) in entries {
            call.arg(&fp[..]).arg(owner_tag(entry));
        }
        let _: u64 = call.invoke_async(&mut conn.clone()).await?;
        Ok(())
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

/// 128 bits of SHA-1 over (tenant, id), domain-separated from every other use of the hash;
/// `read_checked.lua` makes the same.
fn fingerprint(tenant: &str, id: &str) -> [u8; 16] {
    let mut h = sha1_smol::Sha1::new();
    h.update(b"webhookd dedup v3\0");
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.digest().bytes()[..16]);
    out
}

/// 24 bits naming the owner entry: stored as a small integer, compact in a listpack.
fn owner_tag(entry: &str) -> u32 {
    let d = sha1_smol::Sha1::from(entry.as_bytes()).digest().bytes();
    u32::from_be_bytes([0, d[0], d[1], d[2]])
}

/// The previous layout's fingerprint: 128 bits of SHA-256.
fn fingerprint_v2(tenant: &str, id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"webhookd dedup v2\0");
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// The previous layout's owner tag.
fn owner_tag_v2(entry: &str) -> u32 {
    let d = Sha256::digest(entry.as_bytes());
    u32::from_be_bytes([0, d[0], d[1], d[2]])
}

/// The id to give back for an entry webhookd found invalid (`raw` its event): the one a
/// checked read claimed for it, or, when it is read again (after a crash or a claim), the one
/// such a read may have claimed (its JSON an object with string `tenant` and `id`, small
/// enough for the script). Giving back is only ever done for this entry's own claim.
pub(crate) fn to_give_back(verdict: Verdict, reread: bool, raw: &[u8]) -> Option<Vec<u8>> {
    match verdict {
        Verdict::First(fp) => Some(fp),
        Verdict::Unchecked if reread && raw.len() <= LUA_PARSE_MAX => {
            let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
            let (tenant, id) = (v.get("tenant")?.as_str()?, v.get("id")?.as_str()?);
            Some(fingerprint(tenant, id).to_vec())
        }
        _ => None,
    }
}

/// `read_checked.lua`'s answer: {read, [verdicts, fingerprints]}.
fn checked_reply(reply: Value) -> redis::RedisResult<Checked> {
    let bad = || {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected reply to the checked read",
        ))
    };
    let Value::Array(parts) = reply else {
        return Err(bad());
    };
    let mut parts = parts.into_iter();
    let entries = crate::ingest::reply::stream_entries(parts.next().ok_or_else(bad)?)?;
    let verdicts = match (parts.next(), parts.next()) {
        (Some(Value::Array(seen)), Some(Value::Array(fps))) if seen.len() == entries.len() => {
            let mut out = Vec::with_capacity(seen.len());
            for (seen, fp) in seen.into_iter().zip(fps) {
                out.push(match (seen, fp) {
                    (Value::Int(1), Value::BulkString(fp)) if fp.len() == 16 => Verdict::First(fp),
                    (Value::Int(0), _) => Verdict::Duplicate,
                    (Value::Int(-1), _) => Verdict::Unchecked,
                    _ => return Err(bad()),
                });
            }
            Some(out)
        }
        (None, None) => None,
        _ => return Err(bad()),
    };
    Ok(Checked { entries, verdicts })
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
    fn an_invalid_entry_gives_back_its_own_claim_only() {
        let raw = br#"{"id":"e1","tenant":"t1","type":"x"}"#;
        let fp = fingerprint("t1", "e1").to_vec();
        assert_eq!(
            to_give_back(Verdict::First(vec![7; 16]), false, raw),
            Some(vec![7; 16]),
            "what the checked read claimed"
        );
        assert_eq!(
            to_give_back(Verdict::Unchecked, true, raw),
            Some(fp),
            "read again: what a checked read would have claimed"
        );
        assert_eq!(to_give_back(Verdict::Unchecked, false, raw), None);
        assert_eq!(to_give_back(Verdict::Duplicate, true, raw), None);
        assert_eq!(to_give_back(Verdict::Unchecked, true, b"not json"), None);
        let big = format!(
            r#"{{"id":"e1","tenant":"t1","pad":"{}"}}"#,
            "x".repeat(LUA_PARSE_MAX)
        );
        assert_eq!(
            to_give_back(Verdict::Unchecked, true, big.as_bytes()),
            None,
            "too big for the script to have claimed"
        );
    }

    #[test]
    fn an_owner_tag_is_24_bits_and_stable() {
        assert_eq!(owner_tag("1-0"), owner_tag("1-0"));
        assert_ne!(owner_tag("1-0"), owner_tag("2-0"));
        assert!(owner_tag("1704825600000-17") < 1 << 24);
    }
}
