//! Parked deliveries: a backlog per endpoint in Redis, for deliveries that cannot be attempted
//! now (the endpoint's circuit is open, or it is saturated).
//!
//! A parked delivery is written once — its job in the retry queue's hash, its id in the
//! endpoint's park set scored by the moment its schedule runs out — and then costs nothing
//! until it is pulled: by the probe of an open circuit, by the endpoint's lane when a slot
//! frees, or by the sweep that dead-letters what waited past its schedule. An index of
//! endpoints with a backlog, scored by when a replica should next look, keeps every scan
//! bounded. An endpoint's backlog lives in its home queue (`shards`), with its jobs and
//! circuit: each script stays in one slot.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::db::conn::Conn;
use crate::retry::bodies::{self, Stored};
use crate::retry::job::Job;
use crate::retry::shards::{Queue, RetryShards};

/// Park requests written per transaction.
const BATCH: usize = 512;
/// Park requests waiting for the writer before parkers wait too.
const BACKLOG: usize = 4096;

/// Moves up to ARGV[2] of an endpoint's parked deliveries, oldest deadline first, into the
/// due set leased until ARGV[3], unless its circuit is open (ARGV[4] = 1: the endpoint is
/// gone, so its circuit is cleared and everything may go). Answers whether the backlog is
/// now empty, then id/job/body triples.
const TAKE_PARKED: &str = r#"
local ep = ARGV[1]
if ARGV[4] == '1' then
  redis.call('HDEL', KEYS[5], ep)
  redis.call('HDEL', KEYS[6], ep)
elseif redis.call('HEXISTS', KEYS[5], ep) == 1 then
  return {0}
end
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
local out = {0}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('ZADD', KEYS[2], ARGV[3], id)
  local raw, body = read_job(KEYS[3], KEYS[7], id)
  out[#out + 1] = id
  out[#out + 1] = raw
  out[#out + 1] = body
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[4], ep)
  out[1] = 1
end
return out
"#;

/// For an open circuit whose probe is due: leases the oldest parked delivery as the probe and
/// marks the circuit half open until the lease ends. Answers `closed`, `wait`, `empty`, or
/// `probe` with the id, job and body.
const TAKE_PROBE: &str = r#"
local ep, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[1], ep)
if not raw then return {'closed'} end
local c = cjson.decode(raw)
if c.state == 'open' and c.probe_at > now then
  redis.call('ZADD', KEYS[2], c.probe_at, ep)
  return {'wait'}
end
if c.state == 'half_open' and c.probe_until > now then
  redis.call('ZADD', KEYS[2], c.probe_until, ep)
  return {'wait'}
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0)
if #first == 0 then
  c.state = 'open'
  c.probe_until = 0
  redis.call('HSET', KEYS[1], ep, cjson.encode(c))
  redis.call('ZADD', KEYS[2], now + c.interval_ms, ep)
  return {'empty'}
end
local id = first[1]
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], lease, id)
c.state = 'half_open'
c.probe_until = lease
redis.call('HSET', KEYS[1], ep, cjson.encode(c))
redis.call('ZADD', KEYS[2], lease, ep)
local raw, body = read_job(KEYS[5], KEYS[6], id)
return {'probe', id, raw, body}
"#;

/// Leases up to ARGV[2] parked deliveries whose schedule ran out by ARGV[1].
const TAKE_EXPIRED: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[3], id)
  local raw, body = read_job(KEYS[3], KEYS[4], id)
  out[#out + 1] = id
  out[#out + 1] = raw
  out[#out + 1] = body
end
return out
"#;

/// Parks a batch: per delivery its id, endpoint, deadline, whether it leaves the due set
/// (1/0), and its job, body ref and body (all '' when the stored job stands). ARGV[1] is
/// what an endpoint's park key is named from; everything shares its home's slot.
const PARK: &str = r#"
for i = 2, #ARGV, 7 do
  local id, ep = ARGV[i], ARGV[i + 1]
  if ARGV[i + 4] ~= '' then
    put_job(KEYS[1], KEYS[2], KEYS[3], id, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6])
  end
  if ARGV[i + 3] == '1' then
    redis.call('ZREM', KEYS[4], id)
  end
  redis.call('ZADD', ARGV[1] .. ep, ARGV[i + 2], id)
  redis.call('ZADD', KEYS[5], 'NX', 0, ep)
end
"#;

/// One delivery to park.
#[derive(Debug, Clone)]
pub(crate) struct ParkRequest {
    pub(crate) id: String,
    pub(crate) endpoint_id: Arc<str>,
    /// Unix ms its schedule runs out.
    pub(crate) deadline: i64,
    /// The job to store, when the stored one is missing or stale.
    pub(crate) job: Option<Stored>,
    /// It is in the due set of its home now (leased) and leaves it.
    pub(crate) from_due: bool,
}

/// What a probe take found.
pub(crate) enum Probe {
    /// The circuit closed meanwhile.
    Closed,
    /// Not yet: another replica probes, or the time has not come.
    Wait,
    /// Nothing parked to probe with.
    Empty,
    /// The delivery to probe with (`None`: its job could not be read).
    Take(Option<Box<Job>>),
}

type Reply = oneshot::Sender<redis::RedisResult<()>>;

#[derive(Clone)]
pub(crate) struct ParkQueue {
    conn: Conn,
    shards: RetryShards,
    tx: mpsc::Sender<(ParkRequest, Reply)>,
    take_parked: Arc<redis::Script>,
    take_probe: Arc<redis::Script>,
    take_expired: Arc<redis::Script>,
}

/// Writes park requests in batches, one transaction each.
pub(crate) struct ParkWriter {
    conn: Conn,
    shards: RetryShards,
    rx: mpsc::Receiver<(ParkRequest, Reply)>,
    park: redis::Script,
}

pub(crate) fn channel(conn: Conn, shards: RetryShards) -> (ParkQueue, ParkWriter) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (
        ParkQueue {
            conn: conn.clone(),
            shards: shards.clone(),
            tx,
            take_parked: Arc::new(bodies::script(TAKE_PARKED)),
            take_probe: Arc::new(bodies::script(TAKE_PROBE)),
            take_expired: Arc::new(bodies::script(TAKE_EXPIRED)),
        },
        ParkWriter {
            conn,
            shards,
            rx,
            park: bodies::script(PARK),
        },
    )
}

impl ParkQueue {
    /// Parks one delivery; answers once its transaction landed.
    pub(crate) async fn park(&self, req: ParkRequest) -> redis::RedisResult<()> {
        let (tx, rx) = oneshot::channel();
        let closed = || redis::RedisError::from((redis::ErrorKind::Io, "park writer stopped"));
        self.tx.send((req, tx)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub(crate) fn shards(&self) -> &RetryShards {
        &self.shards
    }

    /// Endpoints whose backlog in `queue` wants a look now (drain, probe or sweep).
    pub(crate) async fn ready(
        &self,
        queue: Queue,
        now_ms: i64,
        offset: usize,
        limit: usize,
    ) -> redis::RedisResult<Vec<String>> {
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.shards.keys(queue).parked_index())
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(offset)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Leases up to `n` of the endpoint's deliveries parked in `queue`; true with them when
    /// that backlog is now empty. Nothing while its circuit is open, unless `gone`.
    pub(crate) async fn take(
        &self,
        queue: Queue,
        endpoint_id: &str,
        n: usize,
        lease_until: i64,
        gone: bool,
    ) -> redis::RedisResult<(bool, Vec<(String, Option<Job>)>)> {
        let keys = self.shards.keys(queue);
        let mut raw: Vec<redis::Value> = self
            .take_parked
            .key(keys.parked(endpoint_id))
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.parked_index())
            .key(keys.circuits())
            .key(keys.breaker_failures())
            .key(keys.retry_bodies())
            .arg(endpoint_id)
            .arg(n)
            .arg(lease_until)
            .arg(if gone { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        let emptied = matches!(raw.first(), Some(redis::Value::Int(1)));
        let rest: Vec<String> = redis::from_redis_value(redis::Value::Array(raw.split_off(1)))?;
        Ok((emptied, bodies::jobs_of(&rest)))
    }

    pub(crate) async fn take_probe(
        &self,
        endpoint_id: &str,
        now_ms: i64,
        lease_until: i64,
    ) -> redis::RedisResult<Probe> {
        let keys = self.shards.home(endpoint_id);
        let raw: Vec<String> = self
            .take_probe
            .key(keys.circuits())
            .key(keys.parked_index())
            .key(keys.parked(endpoint_id))
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.retry_bodies())
            .arg(endpoint_id)
            .arg(now_ms)
            .arg(lease_until)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match raw.first().map(String::as_str) {
            Some("probe") if raw.len() == 4 => {
                Probe::Take(bodies::load(&raw[2], raw[3].clone()).map(Box::new))
            }
            Some("wait") => Probe::Wait,
            Some("empty") => Probe::Empty,
            _ => Probe::Closed,
        })
    }

    /// Leases parked deliveries (at home) whose schedule ran out, to be dead-lettered.
    pub(crate) async fn take_expired(
        &self,
        endpoint_id: &str,
        now_ms: i64,
        limit: usize,
        lease_until: i64,
    ) -> redis::RedisResult<Vec<(String, Option<Job>)>> {
        let keys = self.shards.home(endpoint_id);
        let raw: Vec<String> = self
            .take_expired
            .key(keys.parked(endpoint_id))
            .key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.retry_bodies())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_until)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(bodies::jobs_of(&raw))
    }

    /// Deliveries parked at home for each of these endpoints.
    pub(crate) async fn depths<'a>(
        &self,
        endpoint_ids: impl Iterator<Item = &'a str>,
    ) -> redis::RedisResult<Vec<u64>> {
        let mut pipe = redis::pipe();
        for id in endpoint_ids {
            pipe.zcard(self.shards.home(id).parked(id));
        }
        pipe.query_async(&mut self.conn.clone()).await
    }
}

impl ParkWriter {
    /// Runs until every `ParkQueue` is dropped.
    pub(crate) async fn run(mut self) {
        let mut buf = Vec::with_capacity(BATCH);
        while self.rx.recv_many(&mut buf, BATCH).await > 0 {
            let r = self.write(&buf).await;
            for (_, reply) in buf.drain(..) {
                let _ = reply.send(r.clone());
            }
        }
    }

    /// One script call per home the batch names (each request's home reckoned once).
    async fn write(&self, buf: &[(ParkRequest, Reply)]) -> redis::RedisResult<()> {
        let mut by_home: Vec<(Queue, &ParkRequest)> = buf
            .iter()
            .map(|(req, _)| (self.shards.home_of(&req.endpoint_id), req))
            .collect();
        by_home.sort_by_key(|(home, _)| *home);
        for group in by_home.chunk_by(|a, b| a.0 == b.0) {
            let keys = self.shards.keys(group[0].0);
            let mut call = self.park.prepare_invoke();
            call.key(keys.retry_jobs())
                .key(keys.retry_bodies())
                .key(keys.retry_body_refs())
                .key(keys.retry_due())
                .key(keys.parked_index())
                .arg(keys.parked(""));
            for (_, req) in group {
                call.arg(&req.id)
                    .arg(&*req.endpoint_id)
                    .arg(req.deadline)
                    .arg(u8::from(req.from_due));
                match &req.job {
                    Some(job) => job.args(&mut call),
                    None => {
                        call.arg("").arg("").arg("");
                    }
                }
            }
            call.invoke_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }
}
