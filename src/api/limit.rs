//! The API's rate limit: a token bucket per tenant token, per replica (`http.rate_limit`
//! requests a second, with a burst of the same size). A bucket is a few bytes and there is one
//! per token in use, so the map stays as small as the set of tokens an admin created.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones are dropped.
const PRUNE_AT: usize = 10_000;

pub(crate) struct RateLimit {
    per_sec: f64,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `per_sec` 0 turns the limit off.
    pub(crate) fn new(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec: per_sec as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the caller's bucket; when it is empty, how long until it is not.
    pub(crate) fn check(&self, key: &[u8; 32]) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &[u8; 32], now: Instant) -> Result<(), Duration> {
        if self.per_sec == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limit buckets");
        if buckets.len() >= PRUNE_AT {
            // A full bucket is the same as none.
            let full = self.per_sec;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * full < full);
        }
        let b = buckets.entry(*key).or_insert(Bucket {
            tokens: self.per_sec,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.per_sec;
        b.tokens = (b.tokens + refill).min(self.per_sec);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_then_one_a_tick() {
        let limit = RateLimit::new(5);
        let (k, t0) = ([1u8; 32], Instant::now());
        for _ in 0..5 {
            assert!(limit.check_at(&k, t0).is_ok());
        }
        let wait = limit.check_at(&k, t0).unwrap_err();
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200));
        assert!(limit.check_at(&k, t0 + Duration::from_millis(200)).is_ok());
        assert!(
            limit.check_at(&[2u8; 32], t0).is_ok(),
            "each token has its own bucket"
        );
    }

    #[test]
    fn zero_is_off() {
        let limit = RateLimit::new(0);
        for _ in 0..1000 {
            assert!(limit.check(&[0u8; 32]).is_ok());
        }
    }
}
