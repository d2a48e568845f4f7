//! The retry queue in Redis: a sorted set of delivery ids by due time plus a hash of the
//! deliveries themselves (both under the `{retry}` hash tag).

use serde::{Deserialize, Serialize};

use crate::db::conn::Conn;
use crate::db::keys::Keys;

/// A delivery as it waits in the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms of the first attempt (0 before any).
    pub first_attempt_at: i64,
    /// Unix ms the event was published (for the event-to-delivery histogram).
    pub published_at: i64,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Times handed back unattempted because the endpoint was saturated (older builds).
    #[serde(default)]
    pub deferrals: u32,
    /// Unix ms its schedule began to count while it had no attempt (0: older builds).
    #[serde(default)]
    pub queued_at: i64,
}

/// Takes due ids and leases them (moves their score to the lease end) in one step, so two
/// replicas never take the same delivery; an expired lease makes it due again.
const TAKE_DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local lease = {}
for i, id in ipairs(ids) do
  lease[#lease + 1] = ARGV[3]
  lease[#lease + 1] = id
end
redis.call('ZADD', KEYS[1], unpack(lease))
local jobs = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = jobs[i] or ''
end
return out
"#;

/// Moves an unreadable job from the queue to the quarantine hash.
const QUARANTINE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then
  redis.call('HSET', KEYS[3], ARGV[1], raw)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
"#;
/// Hashed once, not per call.
static QUARANTINE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(QUARANTINE));

/// What one take of due deliveries found.
pub struct Taken {
    pub jobs: Vec<Job>,
    /// Jobs this build could not read, moved to the quarantine.
    pub quarantined: usize,
}

#[derive(Clone)]
pub struct RetryQueue {
    conn: Conn,
    keys: Keys,
    take_due: redis::Script,
}

impl RetryQueue {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        RetryQueue {
            conn,
            keys,
            take_due: redis::Script::new(TAKE_DUE),
        }
    }

    /// Puts (or replaces) a delivery, due at `due_ms`.
    pub async fn schedule(&self, job: &Job, due_ms: i64) -> redis::RedisResult<()> {
        self.schedule_many(std::slice::from_ref(job), due_ms).await
    }

    pub async fn schedule_many(&self, jobs: &[Job], due_ms: i64) -> redis::RedisResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in jobs {
            pipe.hset(
                self.keys.retry_jobs(),
                &job.id,
                serde_json::to_string(job).expect("jobs serialize"),
            )
            .ignore()
            .zadd(self.keys.retry_due(), &job.id, due_ms)
            .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Takes up to `limit` due deliveries, leased until `lease_until_ms`.
    pub async fn take_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_until_ms: i64,
    ) -> redis::RedisResult<Taken> {
        let raw: Vec<String> = self
            .take_due
            .key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_until_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut jobs = Vec::with_capacity(raw.len() / 2);
        let mut unreadable = Vec::new();
        for pair in raw.chunks_exact(2) {
            match serde_json::from_str::<Job>(&pair[1]) {
                Ok(job) => jobs.push(job),
                Err(_) => unreadable.push(pair[0].clone()),
            }
        }
        let quarantined = unreadable.len();
        if quarantined > 0 {
            // Never deleted: another build may read it, and an operator can look at it.
            tracing::warn!(
                count = quarantined,
                ids = ?unreadable,
                "retry jobs this build cannot read set aside in the retry quarantine"
            );
            for id in unreadable {
                self.quarantine(&id).await?;
            }
        }
        Ok(Taken { jobs, quarantined })
    }

    /// Moves a job out of the queue into the quarantine hash, as it is (an id without a job
    /// leaves the queue; there is nothing to keep).
    async fn quarantine(&self, id: &str) -> redis::RedisResult<()> {
        QUARANTINE_SCRIPT
            .key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .key(self.keys.retry_quarantine())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Removes a delivery that succeeded, was dead-lettered, or lost its endpoint.
    pub async fn complete(&self, id: &str) -> redis::RedisResult<()> {
        redis::pipe()
            .atomic()
            .zrem(self.keys.retry_due(), id)
            .ignore()
            .hdel(self.keys.retry_jobs(), id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
    }

    /// Which of these delivery ids are already queued.
    pub async fn contains(&self, ids: &[String]) -> redis::RedisResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hexists(self.keys.retry_jobs(), id);
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    pub async fn depth(&self) -> redis::RedisResult<u64> {
        redis::cmd("ZCARD")
            .arg(self.keys.retry_due())
            .query_async(&mut self.conn.clone())
            .await
    }
}
