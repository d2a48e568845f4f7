//! One dead-letter stream, with its per-endpoint indexes: adding, trimming and listing
//! (`scan` replays and purges).

use std::collections::HashMap;
use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::retry::job::Job;
use crate::support::clock::now_ms;

use crate::retry::dlq::letter::{from_fields, DeadLetter};

/// Entries read per `XRANGE` while scanning.
pub(super) const SCAN_CHUNK: usize = 500;
/// Entries one list call scans at most before answering with a cursor.
pub(super) const SCAN_LIMIT: usize = 20_000;
/// Dead letters a replay or purge reads, moves and removes at a time (bodies included, so
/// kept small).
pub(super) const REPLAY_CHUNK: usize = 100;

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

/// One dead-letter stream, with its per-endpoint indexes.
#[derive(Clone)]
pub(crate) struct LetterStream {
    pub(super) conn: Conn,
    pub(super) keys: Keys,
    /// `dlq.retention`; none in tools that only read or replay.
    retention: Option<Duration>,
    /// `dlq.max_per_endpoint`; none in tools that only read or replay.
    max_per_endpoint: Option<u64>,
}

pub struct Page {
    pub letters: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
    /// Entries read to fill it.
    pub(crate) scanned: usize,
}

impl LetterStream {
    pub(crate) fn new(conn: Conn, keys: Keys) -> Self {
        LetterStream {
            conn,
            keys,
            retention: None,
            max_per_endpoint: None,
        }
    }

    /// Dead letters older than `retention` are removed as new ones come (and by `trim`).
    pub(crate) fn with_retention(self, retention: Duration) -> Self {
        LetterStream {
            retention: Some(retention),
            ..self
        }
    }

    /// At most `max` dead letters are kept per endpoint; older ones are removed as new come.
    pub(crate) fn with_max_per_endpoint(self, max: u64) -> Self {
        LetterStream {
            max_per_endpoint: Some(max),
            ..self
        }
    }

    pub(super) fn retention(&self) -> Option<Duration> {
        self.retention
    }

    /// Removes the dead letters older than the retention; answers how many.
    pub(crate) async fn trim(&self) -> redis::RedisResult<u64> {
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
    pub(crate) async fn add(&self, job: &Job) -> redis::RedisResult<u64> {
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
        self.index_added(&job.tenant, &id).await;
        Ok(trimmed + self.cap(&job.tenant, &job.endpoint_id, &id).await?)
    }

    /// Indexes a new dead letter under its endpoint and removes the endpoint's oldest beyond
    /// `max_per_endpoint`; answers how many were removed. (Ids in the index whose letter is
    /// gone already — replayed, purged, past the retention — are the oldest, so they go first.)
    async fn cap(&self, tenant: &str, endpoint_id: &str, id: &str) -> redis::RedisResult<u64> {
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
        let mut pipe = redis::pipe();
        pipe.cmd("XDEL").arg(self.keys.dlq()).arg(&over);
        self.unindex_ids(&mut pipe, tenant, &over);
        let (removed,): (u64,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(removed)
    }

    /// Asks for an endpoint's dead letters within the retention, from its index.
    pub(super) fn count_of(&self, pipe: &mut redis::Pipeline, endpoint_id: &str) {
        let from = self
            .retention
            .map_or(0, |r| now_ms() - r.as_millis() as i64);
        pipe.zcount(self.keys.dlq_of(endpoint_id), from.max(0), "+inf");
    }

    pub(crate) async fn depth(&self) -> redis::RedisResult<u64> {
        redis::cmd("XLEN")
            .arg(self.keys.dlq())
            .query_async(&mut self.conn.clone())
            .await
    }

    /// The shard it belongs to (`None`: unsharded).
    pub(crate) fn shard(&self) -> Option<u32> {
        self.keys.shard_index()
    }

    /// Oldest first, after `cursor`, filtered by tenant and endpoint, reading at most
    /// `scan_limit` entries.
    pub(crate) async fn list(
        &self,
        tenant: Option<&str>,
        endpoint: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
        scan_limit: usize,
    ) -> redis::RedisResult<Page> {
        if let Some(t) = tenant {
            if let Some(page) = self.list_indexed(t, endpoint, cursor, limit).await? {
                return Ok(page);
            }
        }
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
                    if scanned >= scan_limit {
                        return Ok(Page {
                            letters,
                            next_cursor: Some(start[1..].to_string()),
                            scanned,
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
                        scanned,
                    });
                }
            }
            if done {
                return Ok(Page {
                    letters,
                    next_cursor: None,
                    scanned,
                });
            }
        }
    }

    pub(super) async fn range(
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
