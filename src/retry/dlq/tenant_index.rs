//! Each tenant's dead letters, indexed (`<dlq>:tenant:<tenant>`: ids zero-padded, all at score
//! 0, so their order is the stream's), so that a tenant's list reads its own letters. It
//! scanned the whole stream, 20,000 entries a page: a tenant whose letters came after
//! another's 460,000 got 23 empty pages, and a first page saying it had none.
//!
//! Letters are indexed as they are added, and dropped from the index with them (replay,
//! purge, the per-endpoint cap). What the index may miss — letters added before this build,
//! or by a replica of an earlier one during an upgrade — is caught up every minute from the
//! stream (`index_new`), from where the last catch-up ended; until one has reached the end,
//! lists scan as before. Ids it holds whose letter is gone (past the retention, or removed
//! by an earlier build) are dropped when a list meets them.

use std::collections::HashMap;

use redis::Pipeline;

use crate::retry::dlq::letter::{from_fields, DeadLetter};
use crate::retry::dlq::stream::{LetterStream, Page};
use crate::support::clock::now_ms;

/// Stream entries read per step of a catch-up.
const CATCH_UP_CHUNK: usize = 500;
/// Index entries one list call reads at most before answering with a cursor.
const LIST_BUDGET: usize = 2000;

/// `<ms>-<seq>` as an index member: both parts zero-padded to 20 digits.
fn padded(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some(format!(
        "{:020}-{:020}",
        ms.parse::<u64>().ok()?,
        seq.parse::<u64>().ok()?
    ))
}

/// An index member back as the stream id.
fn unpadded(member: &str) -> Option<String> {
    let (ms, seq) = member.split_once('-')?;
    Some(format!(
        "{}-{}",
        ms.parse::<u64>().ok()?,
        seq.parse::<u64>().ok()?
    ))
}

impl LetterStream {
    /// Adds to `pipe` the indexing of letter `id` of `tenant`.
    pub(super) fn index_letter(&self, pipe: &mut Pipeline, tenant: &str, id: &str) {
        let Some(member) = padded(id) else {
            return;
        };
        let key = self.keys.dlq_tenant(tenant);
        pipe.zadd(&key, &member, 0).ignore();
        if let Some(retention) = self.retention() {
            pipe.expire(&key, retention.as_secs().max(1) as i64)
                .ignore();
        }
    }

    /// Indexes a letter just added, and drops from its tenant's index what is past the
    /// retention, in one round trip. Neither may fail the letter, which is written: a
    /// catch-up indexes what this missed, and a list drops what is gone. (`ZREMRANGEBYLEX`
    /// is not in the ACL of builds before this one: Redis still runs the rest of the
    /// pipeline, and ids past the retention wait for a list.)
    pub(super) async fn index_added(&self, tenant: &str, id: &str) {
        let mut pipe = redis::pipe();
        self.index_letter(&mut pipe, tenant, id);
        if let Some(retention) = self.retention() {
            let cutoff = now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
            if let Some(floor) = padded(&cutoff.max(0).to_string()) {
                pipe.cmd("ZREMRANGEBYLEX")
                    .arg(self.keys.dlq_tenant(tenant))
                    .arg("-")
                    .arg(format!("({floor}"))
                    .ignore();
            }
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            tracing::debug!(error = %e, "indexing a dead letter by tenant failed");
        }
    }

    /// Adds to `pipe` the removal of `letters` from their tenants' indexes.
    pub(super) fn unindex(&self, pipe: &mut Pipeline, letters: &[DeadLetter]) {
        for l in letters {
            self.unindex_ids(pipe, &l.tenant, std::slice::from_ref(&l.id));
        }
    }

    /// Adds to `pipe` the removal of letters `ids` from `tenant`'s index.
    pub(super) fn unindex_ids(&self, pipe: &mut Pipeline, tenant: &str, ids: &[String]) {
        let members: Vec<String> = ids.iter().filter_map(|id| padded(id)).collect();
        if !members.is_empty() {
            pipe.zrem(self.keys.dlq_tenant(tenant), members).ignore();
        }
    }

    /// Indexes the letters added since the last catch-up; answers whether it reached the
    /// end of the stream (lists use the index from the first time it does).
    pub(crate) async fn index_new(&self) -> redis::RedisResult<bool> {
        let state = self.keys.dlq_index_state();
        let mut c = self.conn.clone();
        let from: Option<String> = redis::cmd("HGET")
            .arg(&state)
            .arg("up_to")
            .query_async(&mut c)
            .await?;
        let mut start = from.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        loop {
            let raw: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(self.keys.dlq())
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(CATCH_UP_CHUNK)
                .query_async(&mut c)
                .await?;
            let done = raw.len() < CATCH_UP_CHUNK;
            let mut pipe = redis::pipe();
            if let Some((last, _)) = raw.last() {
                start = format!("({last}");
                pipe.hset(&state, "up_to", last).ignore();
            }
            for (id, fields) in raw {
                if let Some(tenant) = fields.get("tenant") {
                    self.index_letter(&mut pipe, tenant, &id);
                }
            }
            if done {
                pipe.hset(&state, "caught_up", 1).ignore();
            }
            let _: () = pipe.query_async(&mut c).await?;
            if done {
                return Ok(true);
            }
        }
    }

    /// `tenant`'s letters after `cursor` from its index (filtered by `endpoint`), or `None`
    /// while the index has not caught up with the stream once.
    pub(super) async fn list_indexed(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<Option<Page>> {
        let mut c = self.conn.clone();
        let caught_up: Option<String> = redis::cmd("HGET")
            .arg(self.keys.dlq_index_state())
            .arg("caught_up")
            .query_async(&mut c)
            .await?;
        if caught_up.is_none() {
            return Ok(None);
        }
        let key = self.keys.dlq_tenant(tenant);
        let mut after = cursor.and_then(padded);
        let (mut letters, mut read) = (Vec::new(), 0);
        let chunk = (limit * 2).clamp(50, 500);
        loop {
            let from = after.as_ref().map_or("-".to_string(), |a| format!("({a}"));
            let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(&key)
                .arg(&from)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(chunk)
                .query_async(&mut c)
                .await?;
            let done = members.len() < chunk;
            read += members.len();
            let ids: Vec<String> = members.iter().filter_map(|m| unpadded(m)).collect();
            let found = self.letters(&ids).await?;
            let mut gone = Vec::new();
            for (member, letter) in members.iter().zip(found) {
                after = Some(member.clone());
                match letter {
                    None => gone.push(member.clone()),
                    Some(l) if endpoint.is_some_and(|e| e != l.endpoint_id) => {}
                    Some(l) => letters.push(l),
                }
                if letters.len() == limit {
                    break;
                }
            }
            if !gone.is_empty() {
                let _: () = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&gone)
                    .query_async(&mut c)
                    .await?;
            }
            let next = || after.as_deref().and_then(unpadded);
            if letters.len() == limit || (!done && read >= LIST_BUDGET) {
                let next_cursor = next();
                return Ok(Some(Page {
                    letters,
                    next_cursor,
                    scanned: read,
                }));
            }
            if done {
                return Ok(Some(Page {
                    letters,
                    next_cursor: None,
                    scanned: read,
                }));
            }
        }
    }

    /// Each of `ids`' letter, or `None` where it is gone, in one round trip.
    pub(super) async fn letters(
        &self,
        ids: &[impl AsRef<str>],
    ) -> redis::RedisResult<Vec<Option<DeadLetter>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let id = id.as_ref();
            pipe.cmd("XRANGE").arg(self.keys.dlq()).arg(id).arg(id);
        }
        let found: Vec<Vec<(String, HashMap<String, String>)>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        Ok(found
            .into_iter()
            .map(|mut one| one.pop().and_then(|(id, f)| from_fields(id, f)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_ids_sort_as_the_stream_does() {
        let ids = ["1-2", "1-10", "2-0", "10-0", "1733000000000-3"];
        let mut members: Vec<String> = ids.iter().map(|i| padded(i).unwrap()).collect();
        members.sort();
        let back: Vec<String> = members.iter().map(|m| unpadded(m).unwrap()).collect();
        assert_eq!(back, ["1-2", "1-10", "2-0", "10-0", "1733000000000-3"]);
        assert_eq!(padded("17"), padded("17-0"));
        assert_eq!(padded("x-1"), None);
    }
}
