//! The dead letters of every shard (SPEC 1, 5): one stream per shard, `{prefix}dlq:{<i>}`, a
//! letter's id `<i>:<entry id>`; with one shard the stream `{prefix}dlq` and plain entry ids.
//! A delivery is dead-lettered on its tenant's shard, so a tenant's letters and an
//! endpoint's index share one hash tag.

use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::shards::{letter_id, parse_letter_id, Shards};
use crate::registry::Store;
use crate::retry::dlq::letter::{valid_stream_id, Selector};
use crate::retry::dlq::scan::Replayed;
use crate::retry::dlq::stream::{LetterStream, Page, SCAN_LIMIT};
use crate::retry::job::Job;
use crate::retry::queue::RetryQueue;

#[derive(Clone)]
pub struct Dlq {
    streams: Vec<LetterStream>,
    shards: Shards,
}

impl Dlq {
    pub fn new(conn: Conn, shards: &Shards) -> Self {
        Dlq {
            streams: shards
                .all()
                .map(|keys| LetterStream::new(conn.clone(), keys.clone()))
                .collect(),
            shards: shards.clone(),
        }
    }

    /// The first of `ids` that names no dead letter this setup can hold: not a stream id, a
    /// shard it does not have, or no shard where there are several (a shard where there is
    /// one). Such ids are refused, not counted as nothing replayed.
    pub fn misnamed<'a, S: AsRef<str>>(&self, ids: &'a [S]) -> Option<&'a str> {
        misnamed(self.streams.len(), ids)
    }

    /// Dead letters older than `retention` are removed as new ones come (and by `trim`).
    pub fn with_retention(self, retention: Duration) -> Self {
        self.map(|s| s.with_retention(retention))
    }

    /// At most `max` dead letters are kept per endpoint; older ones are removed as new come.
    pub fn with_max_per_endpoint(self, max: u64) -> Self {
        self.map(|s| s.with_max_per_endpoint(max))
    }

    fn map(self, f: impl Fn(LetterStream) -> LetterStream) -> Self {
        Dlq {
            streams: self.streams.into_iter().map(f).collect(),
            shards: self.shards,
        }
    }

    /// Indexes under their tenants the dead letters no replica of this build indexed yet
    /// (`tenant_index`).
    pub async fn index_new(&self) -> redis::RedisResult<()> {
        for s in &self.streams {
            s.index_new().await?;
        }
        Ok(())
    }

    /// Removes the dead letters older than the retention; answers how many.
    pub async fn trim(&self) -> redis::RedisResult<u64> {
        let mut n = 0;
        for s in &self.streams {
            n += s.trim().await?;
        }
        Ok(n)
    }

    /// Dead-letters a delivery on its tenant's shard; answers how many expired or excess
    /// dead letters were trimmed on the way.
    pub async fn add(&self, job: &Job) -> redis::RedisResult<u64> {
        self.streams[self.shards.of_tenant(&job.tenant) as usize]
            .add(job)
            .await
    }

    pub async fn depth(&self) -> redis::RedisResult<u64> {
        let mut n = 0;
        for s in &self.streams {
            n += s.depth().await?;
        }
        Ok(n)
    }

    /// Each endpoint's dead letters (given with its tenant, whose shard holds them), counted
    /// from the endpoints' indexes in one round trip.
    pub async fn depths(&self, endpoints: &[(&str, &str)]) -> redis::RedisResult<Vec<u64>> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (tenant, endpoint) in endpoints {
            self.streams[self.shards.of_tenant(tenant) as usize].count_of(&mut pipe, endpoint);
        }
        pipe.query_async(&mut self.streams[0].conn.clone()).await
    }

    /// Oldest first within a shard, shard after shard, after `cursor` (a letter id), filtered
    /// by tenant and endpoint. Reads at most `SCAN_LIMIT` entries in all, answering with a
    /// cursor where it stopped.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        endpoint: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<Page> {
        let (first, mut after) = match cursor.map(parse_letter_id) {
            Some((shard, entry)) => (shard.unwrap_or(0) as usize, Some(entry)),
            None => (0, None),
        };
        let mut letters = Vec::new();
        let mut scanned = 0;
        for s in self.streams.iter().skip(first) {
            let page = s
                .list(
                    tenant,
                    endpoint,
                    after.take(),
                    limit - letters.len(),
                    SCAN_LIMIT - scanned,
                )
                .await?;
            scanned += page.scanned;
            letters.extend(page.letters.into_iter().map(|mut dl| {
                dl.id = letter_id(s.shard(), &dl.id);
                dl
            }));
            if let Some(next) = page.next_cursor {
                return Ok(Page {
                    letters,
                    next_cursor: Some(letter_id(s.shard(), &next)),
                    scanned,
                });
            }
        }
        Ok(Page {
            letters,
            next_cursor: None,
            scanned,
        })
    }

    /// Moves matching dead letters back into the retry queue with a fresh schedule.
    pub async fn replay(
        &self,
        tenant: Option<&str>,
        sel: &Selector,
        queue: &RetryQueue,
        store: &Store,
    ) -> redis::RedisResult<Replayed> {
        let mut n = Replayed::default();
        for (s, sel) in self.per_stream(sel) {
            n += s.replay(tenant, &sel, queue, store).await?;
        }
        Ok(n)
    }

    pub async fn purge(&self, tenant: Option<&str>, sel: &Selector) -> redis::RedisResult<usize> {
        let mut n = 0;
        for (s, sel) in self.per_stream(sel) {
            n += s.purge(tenant, &sel).await?;
        }
        Ok(n)
    }

    /// Each stream with what the selector takes from it: ids go to the shard they name (an
    /// id without one names the only stream of an unsharded setup).
    fn per_stream(&self, sel: &Selector) -> Vec<(&LetterStream, Selector)> {
        let Selector::Ids(ids) = sel else {
            return self.streams.iter().map(|s| (s, sel.clone())).collect();
        };
        let sharded = self.shards.count() > 1;
        let mut per: Vec<Vec<String>> = vec![Vec::new(); self.streams.len()];
        for id in ids {
            match parse_letter_id(id) {
                (Some(i), entry) if (i as usize) < per.len() && sharded => {
                    per[i as usize].push(entry.to_string())
                }
                (None, entry) if !sharded => per[0].push(entry.to_string()),
                _ => {}
            }
        }
        self.streams
            .iter()
            .zip(per)
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s, Selector::Ids(ids)))
            .collect()
    }
}

/// `Dlq::misnamed` for a setup of `streams` dead-letter streams (one per shard).
fn misnamed<S: AsRef<str>>(streams: usize, ids: &[S]) -> Option<&str> {
    ids.iter()
        .map(AsRef::as_ref)
        .find(|id| match parse_letter_id(id) {
            (Some(i), entry) => streams < 2 || i as usize >= streams || !valid_stream_id(entry),
            (None, entry) => streams > 1 || !valid_stream_id(entry),
        })
}

#[cfg(test)]
mod tests {
    use super::misnamed;

    #[test]
    fn an_id_must_name_a_letter_this_setup_can_hold() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(misnamed(1, &ids(&["1-0", "17"])), None);
        assert_eq!(misnamed(1, &ids(&["1-0", "0:1-0"])), Some("0:1-0"));
        assert_eq!(misnamed(1, &ids(&["bogus"])), Some("bogus"));
        assert_eq!(misnamed(4, &ids(&["0:1-0", "3:5-2"])), None);
        assert_eq!(misnamed(4, &ids(&["1-0"])), Some("1-0"), "no shard");
        assert_eq!(
            misnamed(4, &ids(&["4:1-0"])),
            Some("4:1-0"),
            "no such shard"
        );
        assert_eq!(misnamed(4, &ids(&["2:x"])), Some("2:x"));
    }
}
