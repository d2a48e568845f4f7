//! The circuit breaker: one state per endpoint, shared by every replica through Redis.
//!
//! The circuits hash (`Keys::circuits`) of an endpoint's home queue (`retry::shards`) holds a
//! record only for endpoints whose circuit is not closed; an absent field means closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::MAX_PROBE_INTERVAL;
use crate::db::conn::Conn;
use crate::ops::metrics::Metrics;
use crate::retry::RetryShards;
use crate::support::clock::now_ms;
use crate::support::shutdown::Shutdown;

/// The three states SPEC 6 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A circuit that is not closed, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Circuit {
    pub state: State,
    /// Consecutive failed attempts when it opened (or last failed a probe).
    pub failures: u32,
    /// Unix ms it opened.
    pub opened_at: i64,
    /// Unix ms the next probe may start.
    pub probe_at: i64,
    /// The wait before the next probe after this one fails (doubles, up to 5 minutes).
    pub interval_ms: i64,
    /// While half open: Unix ms the probe's lease ends.
    #[serde(default)]
    pub probe_until: i64,
    #[serde(default)]
    pub last_error: String,
}

/// The circuit state of one endpoint, as every replica sees it.
pub(crate) async fn state(
    conn: &Conn,
    shards: &RetryShards,
    endpoint_id: &str,
) -> redis::RedisResult<State> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(shards.home(endpoint_id).circuits())
        .arg(endpoint_id)
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<Circuit>(&r).ok())
        .map_or(State::Closed, |c| c.state))
}

/// Counts a failed attempt; opens the circuit at the threshold, or reopens it (with a doubled
/// wait) when the failed attempt was the probe. Answers the streak and what changed.
const FAILED: &str = r#"
local ep, now = ARGV[1], tonumber(ARGV[2])
local threshold, probe_ms, retry_after = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = redis.call('HINCRBY', KEYS[2], ep, 1)
local raw = redis.call('HGET', KEYS[1], ep)
if raw then
  if ARGV[7] ~= '1' then return {n, 'open'} end
  local c = cjson.decode(raw)
  c.interval_ms = math.min(c.interval_ms * 2, tonumber(ARGV[8]))
  c.state = 'open'
  c.failures = n
  c.probe_at = now + math.max(c.interval_ms, retry_after)
  c.probe_until = 0
  c.last_error = ARGV[6]
  redis.call('HSET', KEYS[1], ep, cjson.encode(c))
  redis.call('ZADD', KEYS[3], c.probe_at, ep)
  return {n, 'reopened'}
end
if threshold == 0 or n < threshold then return {n, ''} end
local c = {state = 'open', failures = n, opened_at = now,
  probe_at = now + math.max(probe_ms, retry_after), interval_ms = probe_ms,
  probe_until = 0, last_error = ARGV[6]}
redis.call('HSET', KEYS[1], ep, cjson.encode(c))
redis.call('ZADD', KEYS[3], c.probe_at, ep)
return {n, 'opened'}
"#;

/// A 2xx: the streak ends and an open circuit closes; its parked backlog is due at once.
/// Answers when the circuit had opened, or -1 if it was closed.
const SUCCEEDED: &str = r#"
local ep = ARGV[1]
redis.call('HDEL', KEYS[2], ep)
local raw = redis.call('HGET', KEYS[1], ep)
if not raw then return -1 end
redis.call('HDEL', KEYS[1], ep)
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[3], 0, ep)
else
  redis.call('ZREM', KEYS[3], ep)
end
return cjson.decode(raw).opened_at
"#;

/// How often each replica re-reads every circuit and streak: every 250 ms with up to 4 home
/// queues, less often with more (two reads per home each time), at least once a second.
fn refresh_every(homes: usize) -> Duration {
    (Duration::from_millis(62) * homes.max(4) as u32).min(Duration::from_secs(1))
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Reopened,
    /// Closed after being open this long (ms).
    Closed(i64),
}

/// This replica's view of every circuit, and the scripts that change them.
pub(crate) struct Breaker {
    conn: Conn,
    shards: RetryShards,
    threshold: u32,
    probe: Duration,
    open: ArcSwap<HashMap<Arc<str>, Circuit>>,
    /// Endpoints with a failure streak, as last read plus what this replica added since
    /// (with the refresh generation it was added in).
    streaks: Mutex<HashMap<Arc<str>, u64>>,
    generation: AtomicU64,
    failed: redis::Script,
    succeeded: redis::Script,
    metrics: Arc<Metrics>,
}

impl Breaker {
    pub(crate) fn new(
        conn: Conn,
        shards: RetryShards,
        threshold: u32,
        probe: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Breaker> {
        Arc::new(Breaker {
            conn,
            shards,
            threshold,
            probe,
            open: ArcSwap::from_pointee(HashMap::new()),
            streaks: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            failed: redis::Script::new(FAILED),
            succeeded: redis::Script::new(SUCCEEDED),
            metrics,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.threshold > 0
    }

    /// The endpoint's state as this replica last saw it.
    pub(crate) fn state(&self, endpoint_id: &str) -> State {
        self.open
            .load()
            .get(endpoint_id)
            .map_or(State::Closed, |c| c.state)
    }

    /// Whether the endpoint's last attempt failed (a failure streak its circuit has not yet
    /// answered by opening), as this replica last saw it; false with the breaker off.
    pub(crate) fn failing(&self, endpoint_id: &str) -> bool {
        self.streaks
            .lock()
            .expect("breaker streaks")
            .contains_key(endpoint_id)
    }

    /// Whether deliveries to the endpoint must wait (anything but a probe).
    pub(crate) fn blocks(&self, endpoint_id: &str) -> bool {
        self.state(endpoint_id) != State::Closed
    }

    /// Every circuit that is not closed, as this replica last saw them.
    pub(crate) fn not_closed(&self) -> Vec<(Arc<str>, Circuit)> {
        self.open
            .load()
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect()
    }

    /// The endpoint's circuit, if it is not closed.
    pub(crate) fn circuit(&self, endpoint_id: &str) -> Option<Circuit> {
        self.open.load().get(endpoint_id).cloned()
    }

    /// Records a failed attempt (not a 2xx).
    pub(crate) async fn record_failure(
        &self,
        endpoint_id: &Arc<str>,
        error: &str,
        retry_after: Option<Duration>,
        probe: bool,
    ) -> redis::RedisResult<Transition> {
        if !self.enabled() {
            return Ok(Transition::None);
        }
        let now = now_ms();
        let keys = self.shards.home(endpoint_id);
        let (_, change): (u32, String) = self
            .failed
            .key(keys.circuits())
            .key(keys.breaker_failures())
            .key(keys.parked_index())
            .arg(&**endpoint_id)
            .arg(now)
            .arg(self.threshold)
            .arg(self.probe.as_millis() as u64)
            .arg(retry_after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .arg(error)
            .arg(if probe { "1" } else { "0" })
            .arg(MAX_PROBE_INTERVAL.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.streaks
            .lock()
            .expect("breaker streaks")
            .insert(endpoint_id.clone(), self.generation.load(Ordering::Acquire));
        let t = match change.as_str() {
            "opened" => Transition::Opened,
            "reopened" => Transition::Reopened,
            // Opened by another replica: learn it now rather than at the next refresh.
            "open" => {
                if !self.blocks(endpoint_id) {
                    self.note_open(endpoint_id, error, now);
                }
                return Ok(Transition::None);
            }
            _ => return Ok(Transition::None),
        };
        self.note_open(endpoint_id, error, now);
        self.metrics.circuit_transition("open");
        tracing::info!(endpoint = %endpoint_id, error, reopened = t == Transition::Reopened, "circuit open");
        Ok(t)
    }

    /// Records a 2xx. Writes to Redis only when there is a streak or a circuit to end.
    pub(crate) async fn record_success(
        &self,
        endpoint_id: &Arc<str>,
    ) -> redis::RedisResult<Transition> {
        if !self.enabled() {
            return Ok(Transition::None);
        }
        let streak = self
            .streaks
            .lock()
            .expect("breaker streaks")
            .contains_key(endpoint_id);
        if !streak && !self.blocks(endpoint_id) {
            return Ok(Transition::None);
        }
        let keys = self.shards.home(endpoint_id);
        let opened_at: i64 = self
            .succeeded
            .key(keys.circuits())
            .key(keys.breaker_failures())
            .key(keys.parked_index())
            .key(keys.parked(endpoint_id))
            .arg(&**endpoint_id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.streaks
            .lock()
            .expect("breaker streaks")
            .remove(endpoint_id);
        if opened_at < 0 {
            return Ok(Transition::None);
        }
        self.forget(endpoint_id);
        self.metrics.circuit_transition("closed");
        let open_for = now_ms() - opened_at;
        tracing::info!(endpoint = %endpoint_id, open_for_ms = open_for, "circuit closed");
        Ok(Transition::Closed(open_for))
    }

    /// A probe was taken: half open until its lease ends (set in Redis by the taker).
    pub(crate) fn note_half_open(&self, endpoint_id: &Arc<str>, probe_until: i64) {
        self.update(endpoint_id, |c| {
            c.state = State::HalfOpen;
            c.probe_until = probe_until;
        });
        self.metrics.circuit_transition("half_open");
    }

    fn note_open(&self, endpoint_id: &Arc<str>, error: &str, now: i64) {
        let probe = self.probe.as_millis() as i64;
        let mut map = HashMap::clone(&self.open.load());
        let c = map.entry(endpoint_id.clone()).or_insert_with(|| Circuit {
            state: State::Open,
            failures: self.threshold,
            opened_at: now,
            probe_at: now + probe,
            interval_ms: probe,
            probe_until: 0,
            last_error: String::new(),
        });
        c.state = State::Open;
        c.last_error = error.to_string();
        self.open.store(Arc::new(map));
        self.metrics
            .circuits_open
            .set(self.open.load().len() as i64);
    }

    fn update(&self, endpoint_id: &Arc<str>, f: impl FnOnce(&mut Circuit)) {
        let mut map = HashMap::clone(&self.open.load());
        if let Some(c) = map.get_mut(endpoint_id) {
            f(c);
            self.open.store(Arc::new(map));
        }
    }

    fn forget(&self, endpoint_id: &str) {
        let mut map = HashMap::clone(&self.open.load());
        if map.remove(endpoint_id).is_some() {
            self.metrics.circuits_open.set(map.len() as i64);
            self.open.store(Arc::new(map));
        }
    }

    /// Re-reads every circuit and streak (bounded by the endpoints that have one), each from
    /// its endpoint's home: what an earlier shard count left elsewhere is stale.
    pub(crate) async fn refresh(&self) -> redis::RedisResult<()> {
        let started = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let mut pipe = redis::pipe();
        for keys in self.shards.homes() {
            pipe.hgetall(keys.circuits()).hkeys(keys.breaker_failures());
        }
        let read: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut map: HashMap<Arc<str>, Circuit> = HashMap::new();
        let mut streaks: Vec<String> = Vec::new();
        for (home, pair) in read.chunks(2).enumerate() {
            let at_home = |id: &String| usize::from(self.shards.home_of(id)) == home;
            let circuits: HashMap<String, String> = redis::from_redis_value(pair[0].clone())?;
            let failing: Vec<String> = redis::from_redis_value(pair[1].clone())?;
            map.extend(
                circuits
                    .into_iter()
                    .filter(|(id, _)| at_home(id))
                    .filter_map(|(id, raw)| {
                        Some((Arc::from(id), serde_json::from_str(&raw).ok()?))
                    }),
            );
            streaks.extend(failing.into_iter().filter(|id| at_home(id)));
        }
        self.metrics.circuits_open.set(map.len() as i64);
        self.open.store(Arc::new(map));
        let mut local = self.streaks.lock().expect("breaker streaks");
        local.retain(|_, g| *g >= started);
        for id in streaks {
            local.entry(Arc::from(id)).or_insert(started);
        }
        Ok(())
    }

    /// Keeps this replica's view fresh (other replicas open and close circuits too).
    pub(crate) async fn run(self: Arc<Self>, stop: Shutdown) {
        if !self.enabled() {
            return;
        }
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reading circuit states failed");
            }
            if !stop.sleep(refresh_every(self.shards.homes().count())).await {
                return;
            }
        }
    }
}
