//! Replaying and purging dead letters by a selector (ids, an endpoint, a time), a chunk at a
//! time: memory holds one chunk, whatever the size of the stream.

use std::collections::HashMap;

use crate::db::shards::letter_id;
use crate::ids::DeliveryId;
use crate::registry::Store;
use crate::retry::dlq::letter::{valid_stream_id, DeadLetter, Selector};
use crate::retry::dlq::stream::{LetterStream, REPLAY_CHUNK};
use crate::retry::job::Job;
use crate::retry::queue::RetryQueue;
use crate::support::clock::now_ms;

/// What a replay did, as the API and the portal show it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Letters moved back to the retry queue with a fresh schedule.
    pub replayed: usize,
    /// Letters the selector took whose endpoint was deleted: left in place, to read or purge.
    pub endpoint_deleted: usize,
}

impl std::ops::AddAssign for Replayed {
    fn add_assign(&mut self, other: Replayed) {
        self.replayed += other.replayed;
        self.endpoint_deleted += other.endpoint_deleted;
    }
}

impl LetterStream {
    /// Moves matching dead letters back into the retry queue with a fresh schedule, a chunk
    /// at a time: memory holds one chunk, whatever the size of the stream. A letter whose
    /// endpoint was deleted stays where it is: a delivery to no endpoint would be dropped
    /// unseen, and the letter is still there to read or purge.
    pub(crate) async fn replay(
        &self,
        tenant: Option<&str>,
        sel: &Selector,
        queue: &RetryQueue,
        store: &Store,
    ) -> redis::RedisResult<Replayed> {
        let mut scan = Scan::new(self, tenant, sel).await?;
        let mut count = Replayed::default();
        while let Some(letters) = scan.next(self).await? {
            let live = store
                .existing(letters.iter().map(|l| l.endpoint_id.as_str()))
                .await?;
            let (letters, orphans): (Vec<DeadLetter>, Vec<DeadLetter>) = letters
                .into_iter()
                .partition(|l| live.contains(l.endpoint_id.as_str()));
            count.endpoint_deleted += orphans.len();
            let jobs: Vec<Job> = letters
                .iter()
                .map(|l| replay_job(self.shard(), l))
                .collect();
            // Queued before removal: a crash in between repeats a replay, never loses one.
            queue.schedule_many(&jobs, now_ms()).await?;
            count.replayed += self.delete(&letters).await?;
        }
        Ok(count)
    }

    pub(crate) async fn purge(
        &self,
        tenant: Option<&str>,
        sel: &Selector,
    ) -> redis::RedisResult<usize> {
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
        self.unindex(&mut pipe, letters);
        let (removed,): (usize,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(removed)
    }

    /// The dead letters with these ids (those that exist), in one round trip.
    async fn by_ids(&self, ids: &[&String]) -> redis::RedisResult<Vec<DeadLetter>> {
        Ok(self.letters(ids).await?.into_iter().flatten().collect())
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
}

/// A fresh delivery of a dead letter (named after its id, shard included).
fn replay_job(shard: Option<u32>, dl: &DeadLetter) -> Job {
    Job {
        id: DeliveryId::replay(&letter_id(shard, &dl.id), &dl.endpoint_id).to_string(),
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
        trace: None,
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
        dlq: &LetterStream,
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
    async fn next(&mut self, dlq: &LetterStream) -> redis::RedisResult<Option<Vec<DeadLetter>>> {
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
