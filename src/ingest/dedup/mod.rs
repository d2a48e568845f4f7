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
//! A backlog's batches are checked with plain commands instead (`plain`), which cost Redis a
//! third to a half less; entries read again are settled by the script.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::Event;
use crate::ingest::read::StreamSettings;

use checked::{checked_reply, LUA_PARSE_MAX};
use ids::{fingerprint, fingerprint_v2, owner_tag, owner_tag_v2};
use legacy::Legacy;
use plain::{Found, Plain, Table};

pub(crate) use checked::{to_give_back, Checked, Verdict};

mod checked;
mod ids;
mod legacy;
mod plain;

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

/// At most this much in one call (a burst would hold Redis for milliseconds): the rest
/// are checked after the read too. A steady rate's reads hold a few small events.
const LUA_PARSE_BUDGET: usize = 64 * 1024;

/// A batch of at least this many ids is checked with plain commands (plain.rs); a
/// smaller one in one script call, which needs no view of the segment table.
const PLAIN_FROM: usize = 8;

pub(crate) struct Dedup {
    keys: Keys,
    /// The key names, made once instead of every batch.
    segments: String,
    base: String,
    segments_v2: String,
    base_v2: String,
    window: Duration,
    legacy: Legacy,
    /// Whether the previous layout's table may hold segments: assumed at start, until a check
    /// finds it gone. Once gone it stays gone (only a build before this one writes it).
    v2: AtomicBool,
    plain: Plain,
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
            legacy: Legacy::default(),
            v2: AtomicBool::new(true),
            plain: Plain::default(),
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
    /// window. Entries read again (`reread`: after a crash, a failed check, or claimed from a
    /// stopped replica) are settled: a check of them may have written unverified (see
    /// plain.rs).
    pub(crate) async fn first_sightings(
        &self,
        conn: &Conn,
        valid: &[(String, Event)],
        reread: bool,
    ) -> redis::RedisResult<Vec<bool>> {
        let legacy = self.legacy(conn).await?;
        let with_v2 = self.v2.load(Ordering::Relaxed);
        let current = !legacy && !with_v2;
        let ids: Vec<([u8; 16], u32)> = valid
            .iter()
            .map(|(entry, ev)| (fingerprint(&ev.tenant, &ev.id), owner_tag(entry)))
            .collect();
        if current && !reread && ids.len() >= PLAIN_FROM {
            let table = Table {
                key: &self.segments,
                base: &self.base,
                window_ms: self.window_ms(),
                span_ms: self.span_ms(),
                per: PER_HASH,
            };
            if let Some(found) = self.plain.check(conn, &table, &ids).await? {
                return self.settled(conn, &ids, found).await;
            }
        }
        let mut call = self.check_call(with_v2, legacy, reread);
        for ((entry, ev), (fp, tag)) in valid.iter().zip(&ids) {
            call.arg(&fp[..]).arg(tag);
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

    /// `dedup.lua`'s call, before the ids.
    fn check_call(
        &self,
        with_v2: bool,
        legacy: bool,
        settle: bool,
    ) -> redis::ScriptInvocation<'static> {
        let mut call = CHECK.key(&self.segments);
        call.key(&self.segments_v2)
            .arg(self.window_ms())
            .arg(self.span_ms())
            .arg(PER_HASH)
            .arg(&self.base)
            .arg(&self.base_v2)
            .arg(u8::from(with_v2))
            .arg(u8::from(legacy))
            .arg(u8::from(settle));
        call
    }

    /// The plain check's findings, with those it left unsettled settled by the script.
    async fn settled(
        &self,
        conn: &Conn,
        ids: &[([u8; 16], u32)],
        found: Vec<Found>,
    ) -> redis::RedisResult<Vec<bool>> {
        let mut call = self.check_call(false, false, true);
        let mut open = 0;
        for (f, (fp, tag)) in found.iter().zip(ids) {
            if *f == Found::Unsettled {
                call.arg(&fp[..]).arg(tag);
                open += 1;
            }
        }
        let mut settled = if open == 0 {
            Vec::new().into_iter()
        } else {
            let mut seen: Vec<u8> = call.invoke_async(&mut conn.clone()).await?;
            seen.truncate(open);
            seen.into_iter()
        };
        Ok(found
            .into_iter()
            .map(|f| match f {
                Found::Decided(first) => first,
                Found::Unsettled => settled.next() == Some(1),
            })
            .collect())
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

    /// True while ids the first layout remembered (one key each) may still be in their
    /// window.
    async fn legacy(&self, conn: &Conn) -> redis::RedisResult<bool> {
        self.legacy.active(conn, &self.keys, self.window).await
    }
}
