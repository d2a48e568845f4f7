//! The dead-letter stream: deliveries whose schedule ran out, listed, replayed and purged.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::retry::queue::{Job, RetryQueue};
use crate::support::clock::{now_ms, rfc3339};

/// Entries read per `XRANGE` while scanning.
const SCAN_CHUNK: usize = 500;
/// Entries one list call scans at most before answering with a cursor.
const SCAN_LIMIT: usize = 20_000;
/// Dead letters a replay or purge reads, moves and removes at a time (bodies included, so
/// kept small).
const REPLAY_CHUNK: usize = 100;

/// A dead letter as the API and `--json` show it (SPEC 5).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its entry id in the dead-letter stream.
    #[schema(example = "1704825600000-0")]
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempts: u32,
    /// Null when no HTTP response came.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub first_attempt_at: String,
    #[schema(format = DateTime)]
    pub dead_at: String,
    /// The body that was (to be) delivered.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
    #[serde(skip)]
    #[schema(ignore)]
    published_at: i64,
}

/// Which dead letters a replay or purge takes.
#[derive(Debug, Clone)]
pub enum Selector {
    Ids(Vec<String>),
    Endpoint(String),
    /// `dead_at` at or after this Unix ms.
    Since(i64),
}

/// Indexes a dead letter under its endpoint; answers the ids beyond the cap (oldest first),
/// removed from the index. The index expires with the retention when set.
const CAP: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over <= 0 then return {} end
local popped = redis.call('ZPOPMIN', KEYS[1], over)
local ids = {}
for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
return ids
"#;
/// Hashed once, not per call.
static CAP_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CAP));

#[derive(Clone)]
pub struct Dlq {
    conn: Conn,
    keys: Keys,
    /// `dlq.retention`; none in tools that only read or replay.
    retention: Option<Duration>,
    /// `dlq.max_per_endpoint`; none in tools that only read or replay.
    max_per_endpoint: Option<u64>,
}

pub struct Page {
    pub letters: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
}

impl Dlq {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Dlq {
            conn,
            keys,
            retention: None,
            max_per_endpoint: None,
        }
    }

    /// Dead letters older than `retention` are removed as new ones come (and by `trim`).
    pub fn with_retention(self, retention: Duration) -> Self {
        Dlq {
            retention: Some(retention),
            ..self
        }
    }

    /// At most `max` dead letters are kept per endpoint; older ones are removed as new come.
    pub fn with_max_per_endpoint(self, max: u64) -> Self {
        Dlq {
            max_per_endpoint: Some(max),
            ..self
        }
    }

    /// Removes the dead letters older than the retention; answers how many.
    pub async fn trim(&self) -> redis::RedisResult<u64> {
        match self.trim_cmd() {
            Some(cmd) => cmd.query_async(&mut self.conn.clone()).await,
            None => Ok(0),
        }
    }

    /// The XTRIM that drops dead letters past the retention, if there is one.
    fn trim_cmd(&self) -> Option<redis::Cmd> {
        let retention = self.retention?;
        let cutoff = now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
        let mut cmd = redis::cmd("XTRIM");
        cmd.arg(self.keys.dlq()).arg("MINID").arg(cutoff.max(0));
        Some(cmd)
    }

    /// Dead-letters a delivery (after its last failed attempt, or unattempted when its
    /// endpoint is disabled or its circuit outlived its schedule). Answers how many expired
    /// dead letters were trimmed on the way.
    pub async fn add(&self, job: &Job) -> redis::RedisResult<u64> {
        let status = job.last_status.map(|s| s.to_string()).unwrap_or_default();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(self.keys.dlq())
            .arg("*")
            .arg("tenant")
            .arg(&job.tenant)
            .arg("endpoint_id")
            .arg(&job.endpoint_id)
            .arg("event_id")
            .arg(&job.event_id)
            .arg("event_type")
            .arg(&job.event_type)
            .arg("attempts")
            .arg(job.attempts)
            .arg("last_status")
            .arg(status)
            .arg("last_error")
            .arg(job.last_error.as_deref().unwrap_or(""))
            .arg("first_attempt_at")
            .arg(job.first_attempt_at)
            .arg("dead_at")
            .arg(now_ms())
            .arg("published_at")
            .arg(job.published_at)
            .arg("body")
            .arg(&job.body);
        // The retention trim rides along in the same round trip.
        let (trimmed, id): (u64, String) = match self.trim_cmd() {
            Some(trim) => {
                redis::pipe()
                    .add_command(trim)
                    .add_command(xadd)
                    .query_async(&mut self.conn.clone())
                    .await?
            }
            None => (0, xadd.query_async(&mut self.conn.clone()).await?),
        };
        Ok(trimmed + self.cap(&job.endpoint_id, &id).await?)
    }

    /// Indexes a new dead letter under its endpoint and removes the endpoint's oldest beyond
    /// `max_per_endpoint`; answers how many were removed. (Ids in the index whose letter is
    /// gone already — replayed, purged, past the retention — are the oldest, so they go first.)
    async fn cap(&self, endpoint_id: &str, id: &str) -> redis::RedisResult<u64> {
        let Some(max) = self.max_per_endpoint else {
            return Ok(0);
        };
        let index = self.keys.dlq_of(endpoint_id);
        let ms: u64 = id
            .split('-')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        // One step, so concurrent dead letters never pop more than the excess.
        let ttl = self.retention.map_or(0, |r| r.as_secs().max(1));
        let over: Vec<String> = CAP_SCRIPT
            .key(&index)
            .arg(id)
            .arg(ms)
            .arg(max)
            .arg(ttl)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if over.is_empty() {
            return Ok(0);
        }
        redis::cmd("XDEL")
            .arg(self.keys.dlq())
            .arg(&over)
            .query_async(&mut self.conn.clone())
            .await
    }

    pub async fn depth(&self) -> redis::RedisResult<u64> {
        redis::cmd("XLEN")
            .arg(self.keys.dlq())
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Oldest first, after `cursor`, filtered by tenant and endpoint.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        endpoint: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<Page> {
        let mut start = cursor
            .map(|c| format!("({c}"))
            .unwrap_or_else(|| "-".into());
        let mut letters = Vec::new();
        let mut scanned = 0;
        loop {
            let chunk = self.range(&start, "+", SCAN_CHUNK).await?;
            let done = chunk.len() < SCAN_CHUNK;
            for dl in chunk {
                scanned += 1;
                start = format!("({}", dl.id);
                if tenant.is_some_and(|t| t != dl.tenant)
                    || endpoint.is_some_and(|e| e != dl.endpoint_id)
                {
                    if scanned >= SCAN_LIMIT {
                        return Ok(Page {
                            letters,
                            next_cursor: Some(start[1..].to_string()),
                        });
                    }
                    continue;
                }
                letters.push(dl);
                if letters.len() == limit {
                    let next = letters.last().map(|l| l.id.clone());
                    return Ok(Page {
                        letters,
                        next_cursor: next,
                    });
                }
            }
            if done {
                return Ok(Page {
                    letters,
                    next_cursor: None,
                });
            }
        }
    }

    /// Moves matching dead letters back into the retry queue with a fresh schedule, a chunk
    /// at a time: memory holds one chunk, whatever the size of the stream.
    pub async fn replay(
        &self,
        tenant: Option<&str>,
        sel: &Selector,
        queue: &RetryQueue,
    ) -> redis::RedisResult<usize> {
        let mut scan = Scan::new(self, tenant, sel).await?;
        let mut replayed = 0;
        while let Some(letters) = scan.next(self).await? {
            let jobs: Vec<Job> = letters.iter().map(replay_job).collect();
            // Queued before removal: a crash in between repeats a replay, never loses one.
            queue.schedule_many(&jobs, now_ms()).await?;
            replayed += self.delete(&letters).await?;
        }
        Ok(replayed)
    }

    pub async fn purge(&self, tenant: Option<&str>, sel: &Selector) -> redis::RedisResult<usize> {
        let mut scan = Scan::new(self, tenant, sel).await?;
        let mut purged = 0;
        while let Some(letters) = scan.next(self).await? {
            purged += self.delete(&letters).await?;
        }
        Ok(purged)
    }

    /// Removes `letters` and their places in the per-endpoint counts, in one round trip.
    async fn delete(&self, letters: &[DeadLetter]) -> redis::RedisResult<usize> {
        if letters.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = letters.iter().map(|l| l.id.as_str()).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("XDEL").arg(self.keys.dlq()).arg(&ids);
        for l in letters {
            pipe.zrem(self.keys.dlq_of(&l.endpoint_id), &l.id).ignore();
        }
        let (removed,): (usize,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(removed)
    }

    /// The dead letters with these ids (those that exist), in one round trip.
    async fn by_ids(&self, ids: &[&String]) -> redis::RedisResult<Vec<DeadLetter>> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XRANGE").arg(self.keys.dlq()).arg(id).arg(id);
        }
        let found: Vec<Vec<(String, HashMap<String, String>)>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter_map(|(id, f)| from_fields(id, f))
            .collect())
    }

    /// The id of the newest entry, if any.
    async fn last_id(&self) -> redis::RedisResult<Option<String>> {
        let newest: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys.dlq())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(newest.into_iter().next().map(|(id, _)| id))
    }

    async fn range(
        &self,
        start: &str,
        end: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<DeadLetter>> {
        let raw: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(self.keys.dlq())
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, f)| from_fields(id, f))
            .collect())
    }
}

/// A fresh delivery of a dead letter.
fn replay_job(dl: &DeadLetter) -> Job {
    Job {
        id: format!("rp:{}:{}", dl.id, dl.endpoint_id),
        tenant: dl.tenant.clone(),
        endpoint_id: dl.endpoint_id.clone(),
        event_id: dl.event_id.clone(),
        event_type: dl.event_type.clone(),
        body: dl.body.get().to_string(),
        attempts: 0,
        first_attempt_at: 0,
        published_at: dl.published_at,
        last_status: None,
        last_error: None,
        deferrals: 0,
        queued_at: now_ms(),
    }
}

/// The dead letters a selector takes for a tenant, read in chunks and filtered as read.
/// A range scan ends at the newest entry when it began, so letters that die again while a
/// replay runs are not replayed a second time by the same call.
struct Scan<'a> {
    tenant: Option<&'a str>,
    endpoint: Option<&'a str>,
    cursor: Cursor<'a>,
}

enum Cursor<'a> {
    Ids(std::slice::Iter<'a, String>),
    /// From `start` (inclusive, or exclusive as `(id`) to `end`.
    Range {
        start: String,
        end: String,
    },
    Done,
}

impl<'a> Scan<'a> {
    async fn new(
        dlq: &Dlq,
        tenant: Option<&'a str>,
        sel: &'a Selector,
    ) -> redis::RedisResult<Self> {
        let range = |start: String, end: Option<String>| match end {
            Some(end) => Cursor::Range { start, end },
            None => Cursor::Done,
        };
        let (endpoint, cursor) = match sel {
            Selector::Ids(ids) => (None, Cursor::Ids(ids.iter())),
            Selector::Endpoint(e) => (Some(e.as_str()), range("-".into(), dlq.last_id().await?)),
            Selector::Since(ms) => (None, range(format!("{ms}-0"), dlq.last_id().await?)),
        };
        Ok(Scan {
            tenant,
            endpoint,
            cursor,
        })
    }

    /// The next non-empty chunk, or none when the scan is over.
    async fn next(&mut self, dlq: &Dlq) -> redis::RedisResult<Option<Vec<DeadLetter>>> {
        loop {
            let chunk = match &mut self.cursor {
                Cursor::Done => return Ok(None),
                Cursor::Ids(ids) => {
                    let some: Vec<&String> = ids
                        .by_ref()
                        .filter(|id| valid_stream_id(id))
                        .take(REPLAY_CHUNK)
                        .collect();
                    if some.is_empty() {
                        self.cursor = Cursor::Done;
                        continue;
                    }
                    dlq.by_ids(&some).await?
                }
                Cursor::Range { start, end } => {
                    let chunk = dlq.range(start, end, REPLAY_CHUNK).await?;
                    match chunk.last() {
                        Some(last) if chunk.len() == REPLAY_CHUNK && last.id != *end => {
                            *start = format!("({}", last.id)
                        }
                        _ => self.cursor = Cursor::Done,
                    }
                    chunk
                }
            };
            let taken: Vec<DeadLetter> = chunk
                .into_iter()
                .filter(|dl| self.tenant.is_none_or(|t| t == dl.tenant))
                .filter(|dl| self.endpoint.is_none_or(|e| e == dl.endpoint_id))
                .collect();
            if !taken.is_empty() {
                return Ok(Some(taken));
            }
        }
    }
}

/// `<ms>-<seq>` or `<ms>`, as XRANGE accepts.
pub fn valid_stream_id(id: &str) -> bool {
    // Each part must fit a u64, or Redis refuses the id with an error.
    let part = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok();
    let mut parts = id.splitn(2, '-');
    let ms_ok = parts.next().is_some_and(part);
    let seq_ok = parts.next().is_none_or(part);
    ms_ok && seq_ok
}

fn from_fields(id: String, mut f: HashMap<String, String>) -> Option<DeadLetter> {
    let mut take = |k: &str| f.remove(k).unwrap_or_default();
    let ms = |s: String| s.parse::<i64>().unwrap_or(0);
    let body = take("body");
    let body = RawValue::from_string(body)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null"));
    let last_error = take("last_error");
    let first = ms(take("first_attempt_at"));
    Some(DeadLetter {
        tenant: take("tenant"),
        endpoint_id: take("endpoint_id"),
        event_id: take("event_id"),
        event_type: take("event_type"),
        attempts: take("attempts").parse().unwrap_or(0),
        last_status: take("last_status").parse().ok(),
        last_error: (!last_error.is_empty()).then_some(last_error),
        first_attempt_at: rfc3339(first),
        dead_at: rfc3339(ms(take("dead_at"))),
        published_at: ms(take("published_at")),
        body,
        id,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_are_checked_before_use() {
        assert!(super::valid_stream_id("1700000000000-0") && super::valid_stream_id("17"));
        for bad in [
            "",
            "-",
            "abc",
            "1-",
            "1-2-3",
            "+",
            "(1-0",
            "98732257723999836500",
            "1-18446744073709551616",
        ] {
            assert!(!super::valid_stream_id(bad), "{bad}");
        }
    }
}
