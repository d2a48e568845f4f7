//! Endpoint records in Redis. Every change also appends the endpoint id to a change log
//! stream in the same transaction, which every replica tails to refresh its index.

use std::time::Duration;

use redis::AsyncCommands;

use super::model::EndpointRecord;
use crate::db::conn::Conn;
use crate::db::keys::Keys;

/// Change-log entries kept; a replica further behind than this reloads everything.
const LOG_MAXLEN: usize = 10_000;
/// Records a full load asks for per `HSCAN` page. One `HGETALL` of the whole registry made
/// Redis build a reply of tens of MB for 100,000 endpoints, keeping every other client waiting
/// meanwhile, broke on a `client-output-buffer-limit` for normal clients, and held the reply
/// three times over in this replica (the reply, its strings, the records).
const PAGE: usize = 500;

/// HSET only when the stored record's `updated_at` is the expected one (a compare-and-set:
/// the caller read that version); with ARGV[4] set, also index and announce the change.
const REPLACE_UNCHANGED: &str = r#"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return -1 end
if tonumber(cjson.decode(raw).updated_at) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[1])
end
return 1
"#;
/// Hashed once, not per call.
static REPLACE_UNCHANGED_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(REPLACE_UNCHANGED));

/// Read-modify-write rounds before an update gives up (each lost round means another writer
/// changed the record in between, so this many in a row is pathological).
const UPDATE_ROUNDS: usize = 32;

/// What [`Store::update`] did.
pub enum Updated {
    /// No such record.
    Missing,
    /// The change asked for no write; the record as stored.
    Unchanged(EndpointRecord),
    /// Written; the record as stored now.
    Written(EndpointRecord),
    /// Others wrote it between each read and write, `UPDATE_ROUNDS` times: nothing written.
    Contended,
}

#[derive(Clone)]
pub struct Store {
    conn: Conn,
    keys: Keys,
}

/// One page of a tenant's endpoints.
pub struct Page {
    pub records: Vec<EndpointRecord>,
    pub next_cursor: Option<String>,
}

impl Store {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Store { conn, keys }
    }

    /// The change-log entry every replica's index refresher picks up.
    fn announce(&self, id: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.endpoints_log())
            .arg("MAXLEN")
            .arg("~")
            .arg(LOG_MAXLEN)
            .arg("*")
            .arg("id")
            .arg(id);
        cmd
    }

    /// Creates or replaces a record, and announces the change.
    pub async fn put(&self, rec: &EndpointRecord) -> redis::RedisResult<()> {
        let json = serde_json::to_string(rec).expect("records serialize");
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset(self.keys.endpoints(), &rec.id, json)
            .ignore()
            .zadd(self.keys.tenant_endpoints(&rec.tenant), &rec.id, 0)
            .ignore()
            .add_command(self.announce(&rec.id))
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Writes `rec` only if the stored record still has `updated_at` (nobody changed it since
    /// it was read); true if written. Used to re-seal secrets without losing a concurrent
    /// change; the record keeps its `updated_at`, so replicas need not re-index it.
    pub async fn replace_unchanged(&self, rec: &EndpointRecord) -> redis::RedisResult<bool> {
        Ok(self.compare_and_set(rec, rec.updated_at, false).await? == 1)
    }

    /// Writes `rec` if the stored one still has `updated_at` `expected`: 1 written, 0 changed
    /// meanwhile, -1 gone.
    async fn compare_and_set(
        &self,
        rec: &EndpointRecord,
        expected: i64,
        announce: bool,
    ) -> redis::RedisResult<i64> {
        let json = serde_json::to_string(rec).expect("records serialize");
        REPLACE_UNCHANGED_SCRIPT
            .key(self.keys.endpoints())
            .key(self.keys.tenant_endpoints(&rec.tenant))
            .key(self.keys.endpoints_log())
            .arg(&rec.id)
            .arg(expected)
            .arg(json)
            .arg(if announce {
                LOG_MAXLEN.to_string()
            } else {
                String::new()
            })
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Reads record `id`, lets `change` modify it (true: write it) and writes it only if no
    /// one else wrote it in between, else starts again from the newer record. So a PATCH, a
    /// rotation and an automatic disable racing each other all keep their changes. The
    /// written record's `updated_at` moves forward (at least by 1 ms, so each write is a new
    /// version).
    pub async fn update<E: From<redis::RedisError>>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut EndpointRecord) -> Result<bool, E>,
    ) -> Result<Updated, E> {
        for round in 0..UPDATE_ROUNDS {
            if round > 0 {
                // Writers that keep colliding take turns: without a pause, fifty PATCHes of
                // one endpoint at once left some with no turn in all their rounds.
                let most = 1u64 << round.min(4);
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % (most + 1))).await;
            }
            let Some(mut rec) = self.get(id).await? else {
                return Ok(Updated::Missing);
            };
            let read = rec.updated_at;
            if !change(&mut rec)? {
                return Ok(Updated::Unchanged(rec));
            }
            rec.updated_at = crate::support::clock::now_ms().max(read + 1);
            match self.compare_and_set(&rec, read, true).await? {
                1 => return Ok(Updated::Written(rec)),
                -1 => return Ok(Updated::Missing),
                _ => continue,
            }
        }
        Ok(Updated::Contended)
    }

    /// Marks this Redis as holding the registry; false if the mark was missing (a new Redis,
    /// or one that lost its data).
    pub async fn mark(&self) -> redis::RedisResult<bool> {
        let set: bool = redis::cmd("SET")
            .arg(self.keys.registry_mark())
            .arg(crate::support::clock::now_ms())
            .arg("NX")
            .query_async::<Option<String>>(&mut self.conn.clone())
            .await?
            .is_some();
        Ok(!set)
    }

    /// Whether the mark `mark` set is still there.
    pub async fn marked(&self) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(self.keys.registry_mark())
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Removes a record; true when it existed.
    pub async fn delete(&self, tenant: &str, id: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let (removed,): (i64,) = redis::pipe()
            .atomic()
            .hdel(self.keys.endpoints(), id)
            .zrem(self.keys.tenant_endpoints(tenant), id)
            .ignore()
            .hdel(self.keys.failing_since(), id)
            .ignore()
            .add_command(self.announce(id))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    /// Forgets an endpoint's failure streak, so a re-enabled endpoint starts afresh.
    pub async fn reset_failures(&self, id: &str) -> redis::RedisResult<()> {
        redis::cmd("HDEL")
            .arg(self.keys.failing_since())
            .arg(id)
            .query_async(&mut self.conn.clone())
            .await
    }

    pub async fn get(&self, id: &str) -> redis::RedisResult<Option<EndpointRecord>> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.hget(self.keys.endpoints(), id).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Which of `ids` have a record, in one round trip.
    pub async fn existing<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> redis::RedisResult<std::collections::HashSet<String>> {
        let ids: std::collections::BTreeSet<&str> = ids.into_iter().collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hexists(self.keys.endpoints(), id);
        }
        let there: Vec<bool> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(ids
            .into_iter()
            .zip(there)
            .filter(|(_, t)| *t)
            .map(|(id, _)| id.to_string())
            .collect())
    }

    pub async fn get_many(
        &self,
        ids: &[String],
    ) -> redis::RedisResult<Vec<(String, Option<EndpointRecord>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raws: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.endpoints())
            .arg(ids)
            .query_async(&mut conn)
            .await?;
        Ok(ids
            .iter()
            .cloned()
            .zip(
                raws.into_iter()
                    .map(|r| r.and_then(|r| serde_json::from_str(&r).ok())),
            )
            .collect())
    }

    /// A tenant's endpoints in id order, after `cursor` (an id), at most `limit`.
    pub async fn list(
        &self,
        tenant: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> redis::RedisResult<Page> {
        let mut conn = self.conn.clone();
        let min = match cursor {
            Some(c) => format!("({c}"),
            None => "-".to_string(),
        };
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.tenant_endpoints(tenant))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut conn)
            .await?;
        let more = ids.len() > limit;
        let ids: Vec<String> = ids.into_iter().take(limit).collect();
        let records: Vec<EndpointRecord> = self
            .get_many(&ids)
            .await?
            .into_iter()
            .filter_map(|(_, r)| r)
            .collect();
        let next_cursor = if more { ids.last().cloned() } else { None };
        Ok(Page {
            records,
            next_cursor,
        })
    }

    /// How many endpoints a tenant has, and how many of them sort up to `cursor` (an id).
    pub async fn count(
        &self,
        tenant: &str,
        cursor: Option<&str>,
    ) -> redis::RedisResult<(u64, u64)> {
        let key = self.keys.tenant_endpoints(tenant);
        let mut pipe = redis::pipe();
        pipe.zcard(&key);
        pipe.cmd("ZLEXCOUNT")
            .arg(&key)
            .arg("-")
            .arg(cursor.map_or("-".to_string(), |c| format!("[{c}")));
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// One page of the registry's records, from `cursor` (0 to start); the next cursor is 0
    /// after the last page. `HSCAN` may return a record twice, and one changed during the scan
    /// as it was or as it is; the change log read after a full load puts that right.
    pub async fn page(&self, cursor: u64) -> redis::RedisResult<(u64, Vec<EndpointRecord>)> {
        let mut conn = self.conn.clone();
        let (next, raw): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(self.keys.endpoints())
            .arg(cursor)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        let records = raw
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        Ok((next, records))
    }

    /// The newest change-log id ("0-0" when empty), read before a full load.
    pub async fn log_head(&self) -> redis::RedisResult<String> {
        let mut conn = self.conn.clone();
        let v: redis::Value = redis::cmd("XREVRANGE")
            .arg(self.keys.endpoints_log())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::FromRedisValue::from_redis_value(v)?;
        Ok(entries
            .into_iter()
            .next()
            .map(|e| e.0)
            .unwrap_or_else(|| "0-0".into()))
    }

    /// Endpoint ids changed after `after`, and the new cursor.
    pub async fn changes(&self, after: &str) -> redis::RedisResult<(Vec<String>, String)> {
        let mut conn = self.conn.clone();
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.keys.endpoints_log())
            .arg(after)
            .query_async(&mut conn)
            .await?;
        let mut ids = Vec::new();
        let mut cursor = after.to_string();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(id) = entry.get::<String>("id") {
                    ids.push(id);
                }
                cursor = entry.id;
            }
        }
        Ok((ids, cursor))
    }
}
