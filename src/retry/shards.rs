//! Where retry state lives: with `stream.shards` N > 1, each endpoint's jobs, parked backlog,
//! circuit and failure streak live under one shard's hash tag (its *home*: CRC-32 of the
//! endpoint id mod N), so scripts stay in one slot and the retry load spreads over a cluster.
//!
//! Queues that are nobody's home any more — the unsharded `{retry}` after N grew past 1 (or
//! an earlier build kept everything there), shards past N after N shrank — are still read
//! until empty: a delivery taken from one remembers it (`Queue`), leaves it when its fate is
//! written at home, and so nothing waiting there is lost or done twice.

use std::sync::Arc;

use crate::db::keys::Keys;
use crate::db::shards::Shards;

/// One retry queue, by its place in `RetryShards::all`.
pub type Queue = u16;

#[derive(Clone, Debug)]
pub struct RetryShards {
    /// The homes first (0…N−1), then the queues being drained.
    queues: Arc<[Keys]>,
    homes: u32,
}

impl RetryShards {
    /// The homes of `shards`, plus every queue an earlier shard count (`seen`, the highest
    /// `stream.shards` this Redis was used with) may have left jobs in.
    pub fn new(shards: &Shards, seen: u32) -> RetryShards {
        let n = shards.count();
        let base = shards.base();
        let mut queues: Vec<Keys> = shards.all().cloned().collect();
        if n > 1 {
            queues.push(base.shard(0, 1));
        }
        if seen > 1 {
            let first = if n > 1 { n } else { 0 };
            queues.extend((first..seen).map(|i| base.shard(i, seen)));
        }
        RetryShards {
            queues: queues.into(),
            homes: n,
        }
    }

    /// One unsharded queue, with nothing to drain (tools and tests).
    pub fn single(keys: Keys) -> RetryShards {
        RetryShards {
            queues: Arc::from([keys]),
            homes: 1,
        }
    }

    /// The queue an endpoint's retry state lives in.
    pub fn home_of(&self, endpoint_id: &str) -> Queue {
        if self.homes <= 1 {
            return 0;
        }
        (crc32fast::hash(endpoint_id.as_bytes()) % self.homes) as Queue
    }

    /// The keys of an endpoint's home.
    pub fn home(&self, endpoint_id: &str) -> &Keys {
        self.keys(self.home_of(endpoint_id))
    }

    pub fn keys(&self, queue: Queue) -> &Keys {
        &self.queues[usize::from(queue)]
    }

    /// Every queue, homes first.
    pub fn all(&self) -> impl Iterator<Item = (Queue, &Keys)> + '_ {
        self.queues.iter().enumerate().map(|(i, k)| (i as Queue, k))
    }

    /// The homes' keys.
    pub fn homes(&self) -> impl Iterator<Item = &Keys> + '_ {
        self.queues[..self.homes as usize].iter()
    }

    /// Whether a queue is being drained rather than anybody's home.
    pub fn is_drained(&self, queue: Queue) -> bool {
        u32::from(queue) >= self.homes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: u32) -> Shards {
        Shards::new(Keys::new("w:", "events"), n)
    }

    #[test]
    fn unsharded_is_one_queue_under_the_retry_tag() {
        let r = RetryShards::new(&shards(1), 1);
        assert_eq!(r.all().count(), 1);
        assert_eq!(r.home("ep_1").retry_due(), "w:{retry}:due");
    }

    #[test]
    fn an_endpoint_lives_in_the_shard_of_its_id_and_the_old_queue_is_drained() {
        let r = RetryShards::new(&shards(16), 16);
        let home = r.home_of("ep_1");
        assert_eq!(u32::from(home), crc32fast::hash(b"ep_1") % 16);
        assert_eq!(
            r.home("ep_1").circuits(),
            format!("w:retry:{{{home}}}:circuits")
        );
        assert_eq!(r.all().count(), 17);
        assert!(r.is_drained(16) && !r.is_drained(15));
        assert_eq!(r.keys(16).retry_due(), "w:{retry}:due");
    }

    #[test]
    fn shards_left_behind_by_a_larger_count_are_drained() {
        let r = RetryShards::new(&shards(4), 16);
        let drained: Vec<String> = r
            .all()
            .filter(|(q, _)| r.is_drained(*q))
            .map(|(_, k)| k.retry_due())
            .collect();
        assert_eq!(drained.len(), 13);
        assert_eq!(drained[0], "w:{retry}:due");
        assert_eq!(drained[1], "w:retry:{4}:due");
        let back_to_one = RetryShards::new(&shards(1), 4);
        assert_eq!(back_to_one.all().count(), 5);
        assert_eq!(back_to_one.home_of("anything"), 0);
    }
}
