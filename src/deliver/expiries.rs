//! When the attempt-log writer last set a key's expiry: once a minute is enough for keys that
//! live 25 hours (a Redis that lost them gets the expiry again within the minute), where a
//! fan-out's batch would otherwise send an `EXPIRE` per key every time.

use std::time::{Duration, Instant};

/// When each key's expiry was last set, by an hour (the operator view's keys) or a key's name.
pub(crate) struct Expiries<K = i64> {
    set: foldhash::HashMap<K, Instant>,
    /// Entries older than a minute are dropped once a minute, not on every look (a batch to
    /// 10,000 endpoints looks 10,000 times).
    pruned: Instant,
}

impl<K> Default for Expiries<K> {
    fn default() -> Self {
        Expiries {
            set: foldhash::HashMap::default(),
            pruned: Instant::now(),
        }
    }
}

const EXPIRE_EVERY: Duration = Duration::from_secs(60);

impl<K: std::hash::Hash + Eq> Expiries<K> {
    /// Whether the expiry of `key` (an hour, or a key's name) is due to be (re)set now; notes
    /// that it is being set. The key is copied only then, not on every look.
    pub(crate) fn due<Q>(&mut self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        if now.duration_since(self.pruned) >= EXPIRE_EVERY {
            self.set
                .retain(|_, at| now.duration_since(*at) < EXPIRE_EVERY);
            self.pruned = now;
        }
        if self
            .set
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < EXPIRE_EVERY)
        {
            return false;
        }
        self.set.insert(key.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hours_expiry_is_set_once_a_minute() {
        let mut e = Expiries::default();
        assert!(e.due(&3600) && !e.due(&3600) && e.due(&7200));
    }
}
