//! Ordered delivery per key (SPEC 6 `ordering_key`): deliveries to an endpoint whose key has
//! the same value, from the same stream shard, are attempted one at a time in stream order.
//!
//! Fan-out never attempts an ordered delivery itself: it stores the job in its endpoint's home
//! queue and adds its id to the key's queue (a sorted set scored by the stream entry), which is
//! its fate, so the entry may be acknowledged. A key's head is released into the due set, and
//! from there taken and attempted like any retry (retries, parking and dead letters included);
//! when its job is gone (delivered or dead-lettered) the next one becomes the head. A head is
//! released only when every earlier entry of its shard has been fanned out, that is when no
//! entry before it is still pending in the consumer group: replicas read a shard's entries in
//! parallel, and an earlier entry still being fanned out elsewhere must not be overtaken.
//! Everything is in Redis, so this holds across replicas, kill -9 and restarts.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::retry::bodies::{self, Stored};
use crate::retry::job::Job;
use crate::retry::shards::{Queue, RetryShards};

/// Stores jobs and queues each under its key: KEYS = jobs, bodies, refs, active, released,
/// then one key queue per job; ARGV = now, then id, job, body ref, body, score per job.
/// A delivery read again (its entry claimed after a crash) is left out when it is stored
/// already, or when its key has released a later one: it was then delivered already, and
/// queueing it again would put it back at the head, or hold the key on a released mark.
const ENQUEUE: &str = r#"
for i = 0, (#ARGV - 1) / 5 - 1 do
  local a, q = 2 + i * 5, KEYS[6 + i]
  local id, score = ARGV[2 + i * 5], tonumber(ARGV[6 + i * 5])
  local skip = redis.call('HEXISTS', KEYS[1], id) == 1
  local released = redis.call('HGET', KEYS[5], q)
  if not skip and released then
    local at = redis.call('ZSCORE', q, released)
    skip = released == id or (at and tonumber(at) > score)
  end
  if not skip then
    put_job(KEYS[1], KEYS[2], KEYS[3], id, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    redis.call('ZADD', q, score, id)
    redis.call('ZADD', KEYS[4], 'NX', ARGV[1], q)
  end
end
"#;

/// Advances key queues: a head whose job is gone is done; the next head is released into the
/// due set (once) when its score is at most its shard's watermark. KEYS = due, jobs, released,
/// active, then the key queues; ARGV = now, then one watermark per key queue. Answers how
/// many heads it released.
const PROMOTE: &str = r#"
local n = 0
for i = 5, #KEYS do
  local q = KEYS[i]
  while true do
    local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #head == 0 then
      redis.call('ZREM', KEYS[4], q)
      redis.call('HDEL', KEYS[3], q)
      break
    end
    local id = head[1]
    if redis.call('HEXISTS', KEYS[2], id) == 0 then
      redis.call('ZREM', q, id)
    else
      if redis.call('HGET', KEYS[3], q) ~= id and tonumber(head[2]) <= tonumber(ARGV[i - 3]) then
        redis.call('HSET', KEYS[3], q, id)
        redis.call('ZADD', KEYS[1], ARGV[1], id)
        n = n + 1
      end
      break
    end
  end
end
return n
"#;

static SCRIPTS: std::sync::LazyLock<[redis::Script; 2]> =
    std::sync::LazyLock::new(|| [bodies::script(ENQUEUE), redis::Script::new(PROMOTE)]);

/// Key queues advanced per script call.
const PROMOTE_BATCH: isize = 100;

/// The scalar at `path` in a delivered body (parsed): a string as it is, a number or boolean
/// as its JSON text; `None` (unordered) for anything else or nothing there.
pub(crate) fn key_of(body: &serde_json::Value, path: &[Box<str>]) -> Option<String> {
    let mut at = body;
    for seg in path {
        at = at.get(&**seg)?;
    }
    match at {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An entry id (`ms-seq`) as a score that keeps stream order (exact while a millisecond holds
/// fewer than 1,000 entries of one shard).
pub(crate) fn entry_score(entry: &str) -> f64 {
    let mut parts = entry.split('-');
    let ms: f64 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0.0);
    let seq: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ms * 1000.0 + seq.min(999.0)
}

/// One ordered delivery to queue: its job, its shard's stream label, its key, its entry.
pub(crate) struct Ordered<'a> {
    pub(crate) job: Job,
    /// The stream it came from: its shard index, or `-` for the unsharded stream.
    pub(crate) stream: String,
    pub(crate) key: &'a str,
    pub(crate) entry: &'a str,
}

/// A key queue's name names its stream (for the watermark), its key and its endpoint.
fn queue_name(keys: &Keys, stream: &str, key: &str, endpoint: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex = crate::support::hex::encode(&digest[..8]);
    format!("{}{stream}:{hex}:{endpoint}", keys.order_prefix())
}

/// The stream label of a key queue's name.
fn stream_of<'a>(keys: &Keys, queue: &'a str) -> Option<&'a str> {
    queue.strip_prefix(&keys.order_prefix())?.split(':').next()
}

#[derive(Clone)]
pub(crate) struct OrderQueue {
    conn: Conn,
    shards: RetryShards,
}

impl OrderQueue {
    pub(crate) fn new(conn: Conn, shards: RetryShards) -> OrderQueue {
        OrderQueue { conn, shards }
    }

    /// Queues ordered deliveries under their keys, at their endpoints' homes. A delivery
    /// already stored (an entry read again) is left as it is.
    pub(crate) async fn enqueue(&self, items: &[Ordered<'_>]) -> redis::RedisResult<()> {
        let mut by_home: HashMap<Queue, Vec<&Ordered>> = HashMap::new();
        for it in items {
            by_home
                .entry(self.shards.home_of(&it.job.endpoint_id))
                .or_default()
                .push(it);
        }
        let now = crate::support::clock::now_ms();
        for (home, items) in by_home {
            let keys = self.shards.keys(home);
            let mut call = SCRIPTS[0].prepare_invoke();
            call.key(keys.retry_jobs())
                .key(keys.retry_bodies())
                .key(keys.retry_body_refs())
                .key(keys.order_active())
                .key(keys.order_released())
                .arg(now);
            for it in &items {
                call.key(queue_name(keys, &it.stream, it.key, &it.job.endpoint_id));
                call.arg(&it.job.id);
                Stored::of(&it.job).args(&mut call);
                call.arg(entry_score(it.entry));
            }
            call.invoke_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// A batch of the key queues of one retry queue that hold deliveries, from `offset`; the
    /// caller moves the offset on, so every key is looked at in turn however many there are
    /// and however many of them are stuck. Answers the batch and the next offset.
    pub(crate) async fn active(
        &self,
        queue: Queue,
        offset: isize,
    ) -> redis::RedisResult<(Vec<String>, isize)> {
        let batch: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.shards.keys(queue).order_active())
            .arg(offset)
            .arg(offset + PROMOTE_BATCH - 1)
            .query_async(&mut self.conn.clone())
            .await?;
        let next = if batch.len() < PROMOTE_BATCH as usize {
            0
        } else {
            offset + PROMOTE_BATCH
        };
        Ok((batch, next))
    }

    /// The stream label a key queue of this retry queue was named with.
    pub(crate) fn stream_of<'a>(&self, queue: Queue, name: &'a str) -> Option<&'a str> {
        stream_of(self.shards.keys(queue), name)
    }

    /// Advances `active` key queues of one retry queue; answers how many heads became due.
    /// `marks` gives, per stream label, the score up to which every entry of that stream has
    /// been fanned out (the oldest pending entry's: its own deliveries are queued already).
    pub(crate) async fn promote(
        &self,
        queue: Queue,
        active: &[String],
        marks: &HashMap<String, f64>,
    ) -> redis::RedisResult<usize> {
        let keys = self.shards.keys(queue);
        let mut call = SCRIPTS[1].prepare_invoke();
        call.key(keys.retry_due())
            .key(keys.retry_jobs())
            .key(keys.order_released())
            .key(keys.order_active())
            .arg(crate::support::clock::now_ms());
        for q in active {
            call.key(q);
            let w = stream_of(keys, q)
                .and_then(|l| marks.get(l).copied())
                .unwrap_or(f64::NEG_INFINITY);
            // Lua's numbers take no "inf"; anything past every score will do.
            call.arg(match w {
                w if w == f64::INFINITY => "1e300".to_string(),
                w if w == f64::NEG_INFINITY => "-1".to_string(),
                w => format!("{w}"),
            });
        }
        call.invoke_async(&mut self.conn.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<Box<str>> {
        p.split('.').map(Box::from).collect()
    }

    #[test]
    fn a_key_is_a_scalar_at_its_path() {
        let body: serde_json::Value = serde_json::from_str(
            r#"{"id":"e","data":{"uid":"m-1","n":7,"ok":true,"x":null,"o":{"a":1}}}"#,
        )
        .unwrap();
        let body = &body;
        assert_eq!(key_of(body, &path("data.uid")).as_deref(), Some("m-1"));
        assert_eq!(key_of(body, &path("data.n")).as_deref(), Some("7"));
        assert_eq!(key_of(body, &path("data.ok")).as_deref(), Some("true"));
        for none in ["data.x", "data.o", "data.missing", "data.uid.deeper"] {
            assert_eq!(key_of(body, &path(none)), None, "{none}");
        }
    }

    #[test]
    fn entry_scores_keep_stream_order() {
        let ids = [
            "1700000000000-0",
            "1700000000000-1",
            "1700000000000-999",
            "1700000000001-0",
        ];
        let scores: Vec<f64> = ids.iter().map(|i| entry_score(i)).collect();
        assert!(scores.windows(2).all(|w| w[0] < w[1]), "{scores:?}");
        assert_eq!(entry_score("1700000000000-5") as i64, 1_700_000_000_000_005);
    }

    #[test]
    fn a_queue_name_carries_its_stream() {
        let keys = Keys::new("p:", "events");
        let q = queue_name(&keys, "3", "m-1", "ep:odd");
        assert_eq!(stream_of(&keys, &q), Some("3"));
        assert_ne!(q, queue_name(&keys, "3", "m-2", "ep:odd"));
    }
}
