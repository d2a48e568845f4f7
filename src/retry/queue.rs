//! The retry queue in Redis: a sorted set of delivery ids by due time plus a hash of the
//! deliveries themselves and their bodies, once each (`bodies`), all under their queue's hash
//! tag; one queue per shard (`shards`), a delivery's in its endpoint's home.

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::retry::bodies::{self, Stored};
use crate::retry::job::Job;
use crate::retry::shards::{Queue, RetryShards};

/// Takes due ids and leases them (moves their score to the lease end) in one step, so two
/// replicas never take the same delivery; an expired lease makes it due again. Answers
/// id/job/body triples (`bodies`), or when nothing is due, when the next one is (if any).
const TAKE_DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {first[2]}
end
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
    /// When nothing was due: Unix ms the next delivery in the queue is (`None`: it is empty).
    pub next_due: Option<i64>,
}

#[derive(Clone)]
pub struct RetryQueue {
    conn: Conn,
    shards: RetryShards,
}

impl RetryQueue {
    pub fn new(conn: Conn, shards: RetryShards) -> Self {
        RetryQueue { conn, shards }
    }

    pub fn shards(&self) -> &RetryShards {
        &self.shards
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Puts (or replaces) a delivery in its endpoint's home, due at `due_ms`.
    pub async fn schedule(&self, job: &Job, due_ms: i64) -> redis::RedisResult<()> {
        self.schedule_many(std::slice::from_ref(job), due_ms).await
    }

    /// As `schedule`, for a delivery taken from `from`: once it is queued at home it leaves
    /// a queue being drained.
    pub(crate) async fn reschedule(
        &self,
        job: &Job,
        due_ms: i64,
        from: Option<Queue>,
    ) -> redis::RedisResult<()> {
        self.schedule(job, due_ms).await?;
        self.leave(&job.id, &job.endpoint_id, from).await
    }

    /// Removes a delivery from the queue it was taken from, when that is not its home (its
    /// fate was just written there).
    pub(crate) async fn leave(
        &self,
        id: &str,
        endpoint_id: &str,
        from: Option<Queue>,
    ) -> redis::RedisResult<()> {
        match from {
            Some(q) if q != self.shards.home_of(endpoint_id) => self.complete(q, id).await,
            _ => Ok(()),
        }
    }

    pub async fn schedule_many(&self, jobs: &[Job], due_ms: i64) -> redis::RedisResult<()> {
        let mut by_home: Vec<(Queue, Vec<&Job>)> = Vec::new();
        for job in jobs {
            let home = self.shards.home_of(&job.endpoint_id);
            match by_home.iter_mut().find(|(q, _)| *q == home) {
                Some((_, js)) => js.push(job),
                None => by_home.push((home, vec![job])),
            }
        }
        for (home, jobs) in by_home {
            let keys = self.shards.keys(home);
            let mut call = SCRIPTS[PUT].prepare_invoke();
            call.key(keys.retry_due())
                .key(keys.retry_jobs())
                .key(keys.retry_bodies())
                .key(keys.retry_body_refs())
                .arg(due_ms);
            for job in jobs {
                call.arg(&job.id);
                Stored::of(job).args(&mut call);
            }
            call.invoke_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// Takes up to `limit` due deliveries from one queue, leased until `lease_until_ms`.
    pub async fn take_due(
        &self,
        queue: Queue,
        now_ms: i64,
        limit: usize,
        lease_until_ms: i64,
    ) -> redis::RedisResult<Taken> {
        let keys = self.shards.keys(queue);
        let raw: Vec<String> = SCRIPTS[TAKE]
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.retry_bodies())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_until_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if raw.len() < 3 {
            return Ok(Taken {
                jobs: Vec::new(),
                quarantined: 0,
                next_due: raw
                    .first()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|s| s as i64),
            });
        }
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
                self.quarantine(keys, &id).await?;
            }
        }
        Ok(Taken {
            jobs,
            quarantined,
            next_due: None,
        })
    }

    /// Moves a job out of the queue into the quarantine hash, as it is (an id without a job
    /// leaves the queue; there is nothing to keep).
    async fn quarantine(&self, keys: &Keys, id: &str) -> redis::RedisResult<()> {
        SCRIPTS[SET_ASIDE]
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.retry_quarantine())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Puts the quarantined jobs this build can read back in their queue, due now, looking at
    /// about `limit` of them per queue; answers how many came back. A build that could not
    /// read a job (an older one, meeting a job stored by reference during a rolling upgrade)
    /// set it aside; a newer one takes it back.
    pub(crate) async fn restore_quarantined(&self, limit: usize) -> redis::RedisResult<usize> {
        let mut restored = 0;
        for (_, keys) in self.shards.all() {
            restored += self.restore_from(keys, limit).await?;
        }
        if restored > 0 {
            tracing::info!(
                count = restored,
                "quarantined retry jobs this build can read are queued again"
            );
        }
        Ok(restored)
    }

    async fn restore_from(&self, keys: &Keys, limit: usize) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let (_, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(keys.retry_quarantine())
            .arg(0)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        let mut restored = 0;
        for (id, raw) in pairs {
            let body = match bodies::ref_of(&raw) {
                Some(r) => redis::cmd("HGET")
                    .arg(keys.retry_bodies())
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
                .key(keys.retry_due())
                .key(keys.retry_jobs())
                .key(keys.retry_quarantine())
                .arg(&id)
                .arg(crate::support::clock::now_ms())
                .invoke_async(&mut conn)
                .await?;
            restored += usize::from(back);
        }
        Ok(restored)
    }

    /// Removes a delivery that succeeded, was dead-lettered, or lost its endpoint from the
    /// queue it was taken from.
    pub async fn complete(&self, queue: Queue, id: &str) -> redis::RedisResult<()> {
        let keys = self.shards.keys(queue);
        SCRIPTS[DONE]
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.retry_bodies())
            .key(keys.retry_body_refs())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Which of these deliveries (id, endpoint id) are already queued: at home, or in a queue
    /// being drained.
    pub async fn contains(&self, ids: &[(String, &str)]) -> redis::RedisResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let drained: Vec<&Keys> = self
            .shards
            .all()
            .filter(|(q, _)| self.shards.is_drained(*q))
            .map(|(_, k)| k)
            .collect();
        let mut pipe = redis::pipe();
        for (id, endpoint) in ids {
            pipe.hexists(self.shards.home(endpoint).retry_jobs(), id);
            for keys in &drained {
                pipe.hexists(keys.retry_jobs(), id);
            }
        }
        let found: Vec<bool> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(found
            .chunks(1 + drained.len())
            .map(|c| c.iter().any(|f| *f))
            .collect())
    }

    /// Deliveries waiting in every queue.
    pub async fn depth(&self) -> redis::RedisResult<u64> {
        let mut pipe = redis::pipe();
        // Every job it holds: scheduled, and parked behind a busy, limited or open-circuit
        // endpoint (counting only the schedule showed 0 beside 46,000 parked deliveries).
        for (_, keys) in self.shards.all() {
            pipe.hlen(keys.retry_jobs());
        }
        let each: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(each.iter().sum())
    }
}
