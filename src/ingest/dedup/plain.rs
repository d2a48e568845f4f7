//! The duplicate check of a backlog's batch as plain commands (issue 16's twenty-third
//! slice): the same segments `dedup_core.lua` keeps, probed and written by `HGET`/`HSETNX`
//! instead of by the script. Each `redis.call` costs Redis about 3,600 instructions of
//! conversion before its command runs, and the script's own Lua as much again: sent plainly,
//! a new id costs Redis 47 % fewer instructions in a new deployment and 33 % fewer in one a
//! day old (BENCHMARKS.md).
//!
//! Plain commands cannot look before they write, so a batch takes two pipelines, against
//! what this replica last learnt of the segment table (its `View`): the probes of the older
//! segments, then the writes of the ids none held, in the newest, ending with
//! `dedup_book.lua`, which counts them and answers the table as it is then. While no replica
//! opened a newer segment before the writes ran, the answers are what the script's would have
//! been: an id an older segment holds is its owner's there, else the `HSETNX` in the newest
//! segment decides, as it does for every writer. If one did, the writes are unverified and
//! the script settles them (`claim`'s `settle`: the newest segment decides, so a replica that
//! wrote the id there after looking in the older ones before this write still wins, or finds
//! this one's claim there). Ids whose `HSETNX` found a field are settled the same way (their
//! owner is to be read: rare, duplicates and entries read again).

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use redis::Value;

use crate::db::conn::Conn;

static BOOK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("dedup_book.lua")));

/// A view older than this is read again before plain commands use it: its time estimate
/// (whether the newest segment is past its span) is kept short.
const FRESH_MS: u128 = 1000;
/// Plain commands stop this long before the newest segment's span ends: the script opens
/// the next one.
const SPAN_MARGIN_MS: u64 = 1000;

/// One live segment as the table records it.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    id: String,
    start: u64,
    count: u64,
    n: u64,
}

/// The segment table as `dedup_book.lua` last answered it.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Oldest first; the last is the one being filled.
    segs: Vec<Segment>,
    redis_ms: u64,
    at: Instant,
}

/// What a batch's plain commands found for each id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found {
    /// A first sighting (1) or a duplicate (0), as the script would answer.
    Decided(bool),
    /// To be settled by the script.
    Unsettled,
}

/// The segments a check is made against, where Redis keeps them.
pub(crate) struct Table<'a> {
    pub(crate) key: &'a str,
    pub(crate) base: &'a str,
    pub(crate) window_ms: u64,
    pub(crate) span_ms: u64,
    pub(crate) per: u64,
}

/// The plain check, with what it last learnt of the segment table.
#[derive(Default)]
pub(crate) struct Plain {
    view: Mutex<Option<View>>,
    expiring: Mutex<Expiring>,
}

/// The hashes of the newest segment that have their expiry: those this replica wrote a
/// claim to with a `PEXPIREAT … NX` after it. A hash is new at its first write, whoever makes
/// it, and its writer gives it its expiry in the same call or pipeline; it is deleted only
/// when that expiry comes, since the claim this replica wrote (a valid entry's) is never
/// given back while the segment is being filled (`dedup_release.lua` removes invalid
/// entries' claims; a settled claim is taken back from older segments only). So one expiry
/// a hash is enough, not one a write. Forgotten on any error: Redis may have lost hashes (a
/// failover).
#[derive(Default)]
struct Expiring {
    segment: String,
    bits: Vec<u64>,
}

impl Expiring {
    /// Whether hash `b` of segment `id` (of `n` hashes) is still to get its expiry; from now
    /// on it is taken to have it.
    fn first(&mut self, id: &str, n: u64, b: u64) -> bool {
        if self.segment != id {
            self.segment = id.to_string();
            self.bits = vec![0; n.div_ceil(64) as usize];
        }
        let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
        let first = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        first
    }

    fn forget(&mut self) {
        self.segment.clear();
        self.bits = Vec::new();
    }
}

impl Plain {
    /// For each (fingerprint, owner tag) what plain commands found, or `None` when the
    /// script is to check the batch (the newest segment is full or near its span's end).
    pub(crate) async fn check(
        &self,
        conn: &Conn,
        table: &Table<'_>,
        ids: &[([u8; 16], u32)],
    ) -> redis::RedisResult<Option<Vec<Found>>> {
        let fresh = self.view.lock().expect("dedup view").take();
        let view = match fresh.filter(View::fresh) {
            Some(v) => v,
            None => book(conn, table).await?,
        };
        let k = ids.len() as u64;
        let Some(plan) = view.plan(k, table) else {
            return Ok(None);
        };
        let mut found: Vec<Option<Found>> = vec![None; ids.len()];
        let mut key = String::with_capacity(64);
        if !plan.older.is_empty() {
            let mut pipe = redis::Pipeline::with_capacity(ids.len() * plan.older.len());
            for (fp, _) in ids {
                plan.probe(&mut pipe, &mut key, fp);
            }
            let owners: Vec<Value> = pipe.query_async(&mut conn.clone()).await?;
            let per = plan.older.len();
            if owners.len() != per * ids.len() {
                return Err(unexpected());
            }
            for ((f, (_, tag)), owners) in found.iter_mut().zip(ids).zip(owners.chunks(per)) {
                *f = plan.owner(owners, *tag);
            }
        }
        let mut pipe = redis::Pipeline::with_capacity(2 * ids.len() + 1);
        // Per write, whether it carries the hash's expiry (a second answer).
        let mut writes: Vec<bool> = Vec::with_capacity(ids.len());
        {
            let mut expiring = self.expiring.lock().expect("dedup expiries");
            for (f, (fp, tag)) in found.iter().zip(ids) {
                if f.is_none() {
                    let bucket = hash_of(fp) % plan.cur.1;
                    let expire = expiring.first(&plan.cur_id, plan.cur.1, bucket);
                    plan.write(&mut pipe, &mut key, bucket, fp, *tag, expire);
                    writes.push(expire);
                }
            }
        }
        pipe.invoke_script(&book_call(table, &plan.cur_id, writes.len()));
        let answers: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut conn.clone()).await;
        if answers.is_err() {
            self.expiring.lock().expect("dedup expiries").forget();
        }
        let mut answers = match answers {
            Ok(answers) => answers,
            // A pipeline does not load its scripts (Redis restarted, or failed over): the
            // writes ran, unverified, and the script settles them.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                return Ok(Some(settle_all(found)));
            }
            Err(e) => return Err(e),
        };
        let after = answers.pop().and_then(View::parse).ok_or_else(unexpected)?;
        let verified = after.newest_is(&plan.cur_id);
        *self.view.lock().expect("dedup view") = Some(after);
        let expected = writes.len() + writes.iter().filter(|&&e| e).count();
        if answers.len() != expected {
            return Err(unexpected());
        }
        // Each write's HSETNX; a PEXPIREAT's answer is not needed.
        let mut answers = answers.into_iter();
        let mut writes = writes.into_iter();
        let mut claimed = move || {
            let claim = answers.next();
            if writes.next() == Some(true) {
                answers.next();
            }
            claim
        };
        Ok(Some(
            found
                .into_iter()
                .map(|f| match f {
                    Some(f) => f,
                    None => match claimed() {
                        Some(Value::Int(1)) if verified => Found::Decided(true),
                        _ => Found::Unsettled,
                    },
                })
                .collect(),
        ))
    }
}

/// `dedup_book.lua`'s call: counts `added` ids written to segment `cur` ('' for none), and
/// answers the table's live segments.
fn book_call(table: &Table<'_>, cur: &str, added: usize) -> redis::ScriptInvocation<'static> {
    let mut call = BOOK.key(table.key);
    call.arg(table.window_ms)
        .arg(table.span_ms)
        .arg(cur)
        .arg(added);
    call
}

/// The table's live segments, read on their own.
async fn book(conn: &Conn, table: &Table<'_>) -> redis::RedisResult<View> {
    let reply: Value = book_call(table, "", 0)
        .invoke_async(&mut conn.clone())
        .await?;
    View::parse(reply).ok_or_else(unexpected)
}

fn settle_all(found: Vec<Option<Found>>) -> Vec<Found> {
    found
        .into_iter()
        .map(|f| f.unwrap_or(Found::Unsettled))
        .collect()
}

fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply to the duplicate check",
    ))
}

/// The pipeline's parameters: which hashes to probe and write.
struct Plan {
    older: Vec<(String, u64)>,
    cur: (String, u64),
    cur_id: String,
    expire_at: u64,
}

impl View {
    /// The book script's answer: {time, id, record, …}.
    pub(crate) fn parse(reply: Value) -> Option<View> {
        let Value::Array(parts) = reply else {
            return None;
        };
        let mut parts = parts.into_iter();
        let redis_ms = match parts.next()? {
            Value::Int(ms) => u64::try_from(ms).ok()?,
            _ => return None,
        };
        let mut segs = Vec::new();
        while let Some(id) = parts.next() {
            let (id, record) = (text(id)?, text(parts.next()?)?);
            let mut f = record.split(' ').map(str::parse::<u64>);
            let (start, count, n) = (f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?);
            if f.next().is_some() || n == 0 || id.parse::<u64>().is_err() {
                return None;
            }
            segs.push(Segment {
                id,
                start,
                count,
                n,
            });
        }
        segs.sort_by_key(|s| s.id.parse::<u64>().unwrap_or(0));
        Some(View {
            segs,
            redis_ms,
            at: Instant::now(),
        })
    }

    /// The hashes `k` new ids go to, if the newest segment takes them without the script:
    /// it is within its span and has room (`per` fields a hash). Otherwise the script checks
    /// the batch (and opens the next segment).
    fn plan(&self, k: u64, table: &Table<'_>) -> Option<Plan> {
        let (base, span) = (table.base, table.span_ms);
        let cur = self.segs.last()?;
        let now = self.redis_ms + self.at.elapsed().as_millis() as u64;
        if now + SPAN_MARGIN_MS >= cur.start + span || cur.count + k > cur.n * table.per {
            return None;
        }
        let older = self.segs[..self.segs.len() - 1]
            .iter()
            .map(|s| (format!("{base}{}:", s.id), s.n))
            .collect();
        Some(Plan {
            older,
            cur: (format!("{base}{}:", cur.id), cur.n),
            cur_id: cur.id.clone(),
            expire_at: cur.start + span + table.window_ms,
        })
    }

    fn fresh(&self) -> bool {
        self.at.elapsed().as_millis() <= FRESH_MS
    }

    /// Whether `self` (the table after a batch's commands) still has the batch's segment as
    /// its newest: then no replica opened a newer one before they ran.
    pub(crate) fn newest_is(&self, id: &str) -> bool {
        self.segs.last().is_some_and(|s| s.id == id)
    }
}

impl Plan {
    /// An id's probes of the older segments. (Each command is made at its size: the one
    /// made by `redis::cmd` grows its buffers as its arguments come, three times or more.)
    fn probe(&self, pipe: &mut redis::Pipeline, key: &mut String, fp: &[u8; 16]) {
        let h = hash_of(fp);
        for (prefix, n) in &self.older {
            hash_name(key, prefix, h % n);
            let mut c = redis::Cmd::with_capacity(3, 32 + key.len() + fp.len());
            c.arg("HGET").arg(key.as_str()).arg(&fp[..]);
            pipe.add_command(c);
        }
    }

    /// What an id's probes found: its owner's verdict, or `None` if no older segment has it.
    fn owner(&self, owners: &[Value], tag: u32) -> Option<Found> {
        let tag = tag.to_string();
        owners.iter().find_map(|owner| match owner {
            Value::Nil => None,
            Value::BulkString(owner) => Some(Found::Decided(owner == tag.as_bytes())),
            _ => Some(Found::Unsettled),
        })
    }

    /// An id's claim in hash `bucket` of the newest segment and, with `expire`, that hash's
    /// expiry (a second answer).
    fn write(
        &self,
        pipe: &mut redis::Pipeline,
        key: &mut String,
        bucket: u64,
        fp: &[u8; 16],
        tag: u32,
        expire: bool,
    ) {
        hash_name(key, &self.cur.0, bucket);
        let mut c = redis::Cmd::with_capacity(4, 48 + key.len() + fp.len());
        c.arg("HSETNX").arg(key.as_str()).arg(&fp[..]).arg(tag);
        pipe.add_command(c);
        if !expire {
            return;
        }
        // NX: only a new hash gets its expiry, and an existing one's is not written again (a
        // write of an expiry is replicated).
        let mut c = redis::Cmd::with_capacity(4, 64 + key.len());
        c.arg("PEXPIREAT")
            .arg(key.as_str())
            .arg(self.expire_at)
            .arg("NX");
        pipe.add_command(c);
    }
}

/// The first four bytes of a fingerprint: which hash of a segment holds it (`hash_of` in
/// dedup_core.lua).
fn hash_of(fp: &[u8; 16]) -> u64 {
    u64::from(u32::from_be_bytes([fp[0], fp[1], fp[2], fp[3]]))
}

/// `<prefix><bucket>` in plain digits (`key_of` in dedup_core.lua), into `key`.
fn hash_name(key: &mut String, prefix: &str, bucket: u64) {
    use std::fmt::Write;
    key.clear();
    key.push_str(prefix);
    let _ = write!(key, "{bucket}");
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn view(now: i64, segs: &[(&str, &str)]) -> View {
        let mut parts = vec![Value::Int(now)];
        for (id, record) in segs {
            parts.push(bulk(id));
            parts.push(bulk(record));
        }
        View::parse(Value::Array(parts)).expect("a view")
    }

    fn table(span_ms: u64) -> Table<'static> {
        Table {
            key: "t",
            base: "b:",
            window_ms: 86_400_000,
            span_ms,
            per: 64,
        }
    }

    #[test]
    fn a_view_plans_the_newest_segment_while_it_has_room_and_time() {
        let v = view(10_000, &[("200", "5000 10 4"), ("100", "1000 256 4")]);
        let plan = v.plan(6, &table(21_600_000)).expect("room");
        assert_eq!(plan.cur_id, "200", "the newest, whatever the reply's order");
        assert_eq!(plan.cur, ("b:200:".to_string(), 4));
        assert_eq!(plan.older, vec![("b:100:".to_string(), 4)]);
        assert_eq!(plan.expire_at, 5000 + 21_600_000 + 86_400_000);
        assert!(v.plan(4 * 64 - 9, &table(21_600_000)).is_none(), "no room");
        assert!(v.plan(1, &table(5000)).is_none(), "past its span");
        assert!(view(1, &[]).plan(1, &table(5000)).is_none(), "no segment");
        assert!(v.newest_is("200") && !v.newest_is("100"));
    }

    #[test]
    fn a_malformed_table_is_no_view() {
        assert!(View::parse(Value::Array(vec![Value::Int(1), bulk("1"), bulk("x 1 1")])).is_none());
        assert!(View::parse(Value::Array(vec![Value::Int(1), bulk("1"), bulk("1 1 0")])).is_none());
        assert!(View::parse(Value::Array(vec![Value::Int(1), bulk("1")])).is_none());
        assert!(View::parse(Value::Nil).is_none());
    }

    #[test]
    fn an_older_segments_owner_decides() {
        let v = view(10_000, &[("2", "5000 0 4"), ("1", "1000 9 4")]);
        let plan = v.plan(1, &table(21_600_000)).expect("room");
        let tag = 77;
        assert_eq!(
            plan.owner(&[Value::Nil], tag),
            None,
            "none: the write decides"
        );
        assert_eq!(
            plan.owner(&[bulk("77")], tag),
            Some(Found::Decided(true)),
            "its own"
        );
        assert_eq!(plan.owner(&[bulk("78")], tag), Some(Found::Decided(false)));
        assert_eq!(
            plan.owner(&[Value::Nil, bulk("78"), bulk("77")], tag),
            Some(Found::Decided(false)),
            "the oldest that has it"
        );
    }

    #[test]
    fn a_hash_is_named_as_the_script_names_it() {
        let mut key = "left over".to_string();
        hash_name(
            &mut key,
            "d:{dedup}:v3:17:",
            hash_of(&[1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) % 4096,
        );
        assert_eq!(key, "d:{dedup}:v3:17:772");
    }
}
