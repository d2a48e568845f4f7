//! The API's rate limit: per tenant token, per replica (`http.rate_limit` requests a second,
//! with a burst of the same size), through `governor`'s keyed GCRA limiter. A key is a token
//! digest and there is one per token in use; past `PRUNE_AT` keys, those back to a full
//! burst (indistinguishable from new) are dropped, so the map stays as small as the set of
//! tokens in active use.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Keys kept before those with a full burst are dropped.
const PRUNE_AT: usize = 10_000;

type Keyed<C> = RateLimiter<
    [u8; 32],
    DefaultKeyedStateStore<[u8; 32]>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

pub(crate) struct RateLimit<C: Clock = DefaultClock> {
    /// `None`: the limit is off.
    limiter: Option<Keyed<C>>,
}

impl RateLimit {
    /// `per_sec` 0 turns the limit off.
    pub(crate) fn new(per_sec: u32) -> RateLimit {
        RateLimit::with_clock(per_sec, DefaultClock::default())
    }
}

impl<C: Clock> RateLimit<C> {
    fn with_clock(per_sec: u32, clock: C) -> RateLimit<C> {
        let limiter = NonZeroU32::new(per_sec)
            .map(|n| RateLimiter::dashmap_with_clock(Quota::per_second(n), clock));
        RateLimit { limiter }
    }

    /// Takes one request from the caller's allowance; when it has none, how long until it has.
    pub(crate) fn check(&self, key: &[u8; 32]) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= PRUNE_AT {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

/// Request bodies a token may be sending at once. A body is held in memory until it is
/// complete, and one tenant token holding 600 half-sent 1 MiB bodies pinned 660 MB: now it
/// holds at most this many `http.max_body_bytes`, and each for at most `BODY_TIMEOUT`.
pub(crate) const BODIES_PER_TOKEN: usize = 8;
/// How long a request body may take to arrive.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(20);

/// The bodies being received, per token digest (an entry only while one is).
#[derive(Default)]
pub(crate) struct BodyReads {
    held: std::sync::Mutex<std::collections::HashMap<[u8; 32], usize>>,
}

/// One body being received; dropping it frees its place.
pub(crate) struct BodyRead<'a> {
    reads: &'a BodyReads,
    key: [u8; 32],
}

impl BodyReads {
    /// A place for one more body of the token `key`, unless it has `BODIES_PER_TOKEN`.
    pub(crate) fn take(&self, key: [u8; 32]) -> Option<BodyRead<'_>> {
        let mut held = self.held.lock().expect("body reads");
        let n = held.entry(key).or_default();
        if *n >= BODIES_PER_TOKEN {
            return None;
        }
        *n += 1;
        Some(BodyRead { reads: self, key })
    }
}

impl Drop for BodyRead<'_> {
    fn drop(&mut self) {
        let mut held = self.reads.held.lock().expect("body reads");
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_then_one_a_tick() {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::with_clock(5, clock.clone());
        let k = [1u8; 32];
        for _ in 0..5 {
            assert!(limit.check(&k).is_ok());
        }
        let wait = limit.check(&k).unwrap_err();
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200));
        clock.advance(Duration::from_millis(200));
        assert!(limit.check(&k).is_ok());
        assert!(
            limit.check(&[2u8; 32]).is_ok(),
            "each token has its own allowance"
        );
    }

    #[test]
    fn zero_is_off() {
        let limit = RateLimit::new(0);
        for _ in 0..1000 {
            assert!(limit.check(&[0u8; 32]).is_ok());
        }
    }

    #[test]
    fn idle_keys_are_dropped_once_there_are_many() {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::with_clock(1, clock.clone());
        for i in 0..PRUNE_AT as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            assert!(limit.check(&k).is_ok());
        }
        clock.advance(Duration::from_secs(2));
        assert!(limit.check(&[0xff; 32]).is_ok());
        assert!(
            limit.limiter.as_ref().unwrap().len() <= 2,
            "the idle keys are gone"
        );
    }

    #[test]
    fn a_token_receives_a_bounded_number_of_bodies_at_once() {
        let reads = super::BodyReads::default();
        let held: Vec<_> = (0..super::BODIES_PER_TOKEN)
            .map(|_| reads.take([1; 32]).expect("room"))
            .collect();
        assert!(reads.take([1; 32]).is_none(), "one too many");
        assert!(reads.take([2; 32]).is_some(), "another token has its own");
        drop(held);
        assert!(reads.take([1; 32]).is_some());
        assert_eq!(
            reads.held.lock().unwrap().len(),
            0,
            "entries go when unused"
        );
    }
}
