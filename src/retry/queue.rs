//! The retry queue in Redis: a sorted set of delivery ids by due time plus a hash of the
//! deliveries themselves and their bodies, once each (`bodies`), all under the `{retry}` hash
//! tag.

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::retry::bodies::{self, Stored};
use crate::retry::job::Job;

/// Takes due ids and leases them (moves their score to the lease end) in one step, so two
/// replicas never take the same delivery; an expired lease makes it due again. Answers
/// id/job/body triples (`bodies`).
const TAKE_DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local lease = {}
for i, id in ipairs(ids) do
  lease[#lease + 1] = ARGV[3]
  lease[#lease + 1] = id
end
redis.call('ZADD', KEYS[1], unpack(lease))
local out = {}
for i, id in ipairs(ids) do
  local raw, body = read_job(KEYS[2], KEYS[3], id)
  out[#out + 1] = id
  out[#out + 1] = raw
  out[#out + 1] = body
end
return out
"#;

/// Stores jobs due at ARGV[1]: id, job, body ref, body for each.
const SCHEDULE: &str = r#"
for i = 2, #ARGV, 4 do
  put_job(KEYS[2], KEYS[3], KEYS[4], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
end
"#;

/// Removes a job and its place in the due set.
const COMPLETE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
drop_job(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
"#;

/// Moves an unreadable job from the queue to the quarantine hash, as it is: its body, if it
/// names one, stays counted, so it is kept for whoever looks at the quarantine.
const QUARANTINE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then
  redis.call('HSET', KEYS[3], ARGV[1], raw)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
"#;

/// Puts a quarantined job back, due at ARGV[2], unless its id was queued again meanwhile. Its
/// body, if it names one, was kept counted while it waited.
const RESTORE: &str = r#"
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

/// Hashed once, not per call.
static SCRIPTS: std::sync::LazyLock<[redis::Script; 5]> = std::sync::LazyLock::new(|| {
    [
        bodies::script(TAKE_DUE),
        bodies::script(SCHEDULE),
        bodies::script(COMPLETE),
        redis::Script::new(QUARANTINE),
        redis::Script::new(RESTORE),
    ]
});
const TAKE: usize = 0;
const PUT: usize = 1;
const DONE: usize = 2;
const SET_ASIDE: usize = 3;
const PUT_BACK: usize = 4;

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
}

impl RetryQueue {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        RetryQueue { conn, keys }
    }

    /// Puts (or replaces) a delivery, due at `due_ms`.
    pub async fn schedule(&self, job: &Job, due_ms: i64) -> redis::RedisResult<()> {
        self.schedule_many(std::slice::from_ref(job), due_ms).await
    }

    pub async fn schedule_many(&self, jobs: &[Job], due_ms: i64) -> redis::RedisResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut call = SCRIPTS[PUT].prepare_invoke();
        call.key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .key(self.keys.retry_bodies())
            .key(self.keys.retry_body_refs())
            .arg(due_ms);
        for job in jobs {
            call.arg(&job.id);
            Stored::of(job).args(&mut call);
        }
        call.invoke_async(&mut self.conn.clone()).await
    }

    /// Takes up to `limit` due deliveries, leased until `lease_until_ms`.
    pub async fn take_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_until_ms: i64,
    ) -> redis::RedisResult<Taken> {
        let raw: Vec<String> = SCRIPTS[TAKE]
            .key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .key(self.keys.retry_bodies())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_until_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut jobs = Vec::with_capacity(raw.len() / 3);
        let mut unreadable = Vec::new();
        for (id, job) in bodies::jobs_of(&raw) {
            match job {
                Some(job) => jobs.push(job),
                None => unreadable.push(id),
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
        SCRIPTS[SET_ASIDE]
            .key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .key(self.keys.retry_quarantine())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Puts the quarantined jobs this build can read back in the queue, due now, looking at
    /// about `limit` of them; answers how many came back. A build that could not read a job
    /// (an older one, meeting a job stored by reference during a rolling upgrade) set it
    /// aside; a newer one takes it back.
    pub(crate) async fn restore_quarantined(&self, limit: usize) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let (_, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(self.keys.retry_quarantine())
            .arg(0)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        let mut restored = 0;
        for (id, raw) in pairs {
            let body = match bodies::ref_of(&raw) {
                Some(r) => redis::cmd("HGET")
                    .arg(self.keys.retry_bodies())
                    .arg(r)
                    .query_async::<Option<String>>(&mut conn)
                    .await?
                    .unwrap_or_default(),
                None => String::new(),
            };
            if bodies::load(&raw, body).is_none() {
                continue;
            }
            let back: u8 = SCRIPTS[PUT_BACK]
                .key(self.keys.retry_due())
                .key(self.keys.retry_jobs())
                .key(self.keys.retry_quarantine())
                .arg(&id)
                .arg(crate::support::clock::now_ms())
                .invoke_async(&mut conn)
                .await?;
            restored += usize::from(back);
        }
        if restored > 0 {
            tracing::info!(
                count = restored,
                "quarantined retry jobs this build can read are queued again"
            );
        }
        Ok(restored)
    }

    /// Removes a delivery that succeeded, was dead-lettered, or lost its endpoint.
    pub async fn complete(&self, id: &str) -> redis::RedisResult<()> {
        SCRIPTS[DONE]
            .key(self.keys.retry_due())
            .key(self.keys.retry_jobs())
            .key(self.keys.retry_bodies())
            .key(self.keys.retry_body_refs())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
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
