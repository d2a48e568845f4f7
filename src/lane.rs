//! One endpoint's lane: its in-flight permits, and the rule that decides whether a delivery
//! waits in memory for a permit or is deferred to the retry queue.
//!
//! A delivery waits only while its expected wait is short: the lane's capacity
//! (`per_endpoint_in_flight` ÷ latency) times `patience` bounds how many may wait. A fast
//! endpoint thus takes bursts in memory and slows the consumer down (backpressure), while a
//! slow or hanging one sheds its excess to Redis and never holds up other endpoints.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::now_ms;

/// Waiters allowed before the lane's latency is known.
const UNMEASURED_WAITERS: usize = 512;

pub struct Lane {
    permits: Arc<Semaphore>,
    per_endpoint: usize,
    waiting: AtomicUsize,
    /// Unix ms of the last finished attempt (or the lane's creation).
    last_done: AtomicI64,
    /// Moving average of attempt latency in µs; 0 until measured.
    latency_us: AtomicU64,
    /// Under a `rate_limit`, the earliest moment the next attempt may start.
    next_slot: Mutex<Option<Instant>>,
}

/// What a delivery gets from its lane.
pub enum Admission {
    Go(OwnedSemaphorePermit),
    /// Expected wait too long: hand the delivery to the retry queue.
    Defer,
}

impl Lane {
    pub fn new(per_endpoint: usize) -> Lane {
        Lane {
            permits: Arc::new(Semaphore::new(per_endpoint)),
            per_endpoint,
            waiting: AtomicUsize::new(0),
            last_done: AtomicI64::new(now_ms()),
            latency_us: AtomicU64::new(0),
            next_slot: Mutex::new(None),
        }
    }

    /// Reserves the next start slot under a rate limit of `per_sec` attempts a second (evenly
    /// spaced) and answers how long to wait for it; `None`, reserving nothing, when the slot is
    /// further away than `patience`.
    pub fn reserve(&self, per_sec: u32, patience: Duration) -> Option<Duration> {
        let interval = Duration::from_secs(1) / per_sec.max(1);
        let now = Instant::now();
        let mut next = self.next_slot.lock().expect("rate slot");
        let slot = next.map_or(now, |n| n.max(now));
        let wait = slot - now;
        if wait > patience {
            return None;
        }
        *next = Some(slot + interval);
        Some(wait)
    }

    /// Records a finished attempt.
    pub fn finished(&self, latency: Duration) {
        self.last_done.store(now_ms(), Ordering::Relaxed);
        let sample = latency.as_micros().clamp(1, u64::MAX as u128) as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.latency_us.store(new.max(1), Ordering::Relaxed);
    }

    /// How many deliveries may wait now: what the lane is expected to finish within
    /// `patience`. While saturated with nothing finishing, the stall itself is the latency.
    fn wait_cap(&self, patience: Duration) -> usize {
        let stalled_ms = (now_ms() - self.last_done.load(Ordering::Relaxed)).max(0) as u64;
        let latency_us = self
            .latency_us
            .load(Ordering::Relaxed)
            .max(stalled_ms * 1000);
        if latency_us == 0 {
            return UNMEASURED_WAITERS;
        }
        let per_sec = self.per_endpoint as f64 * 1e6 / latency_us as f64;
        (per_sec * patience.as_secs_f64()) as usize
    }

    /// A permit at once, or after a wait expected to last under `patience`. With `persist`, a
    /// waiter keeps waiting as long as the endpoint keeps finishing attempts.
    pub async fn admit(&self, patience: Duration, persist: bool) -> Admission {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Admission::Go(p);
        }
        if self.waiting.load(Ordering::Relaxed) >= self.wait_cap(patience) {
            return Admission::Defer;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let got = self.wait(patience, persist).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match got {
            Some(p) => Admission::Go(p),
            None => Admission::Defer,
        }
    }

    async fn wait(&self, patience: Duration, persist: bool) -> Option<OwnedSemaphorePermit> {
        loop {
            match tokio::time::timeout(patience, self.permits.clone().acquire_owned()).await {
                Ok(p) => return Some(p.expect("lane semaphores are never closed")),
                Err(_) => {
                    let idle = now_ms() - self.last_done.load(Ordering::Relaxed);
                    if !persist || idle > patience.as_millis() as i64 {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_lane_lets_many_wait_and_a_slow_one_few() {
        let fast = Lane::new(8);
        for _ in 0..20 {
            fast.finished(Duration::from_micros(500));
        }
        assert!(fast.wait_cap(Duration::from_secs(1)) >= 10_000);
        let slow = Lane::new(8);
        for _ in 0..20 {
            slow.finished(Duration::from_millis(500));
        }
        assert_eq!(slow.wait_cap(Duration::from_secs(1)), 16);
    }

    #[test]
    fn a_rate_limit_spaces_attempts_and_defers_beyond_patience() {
        let lane = Lane::new(8);
        let patience = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..5).map(|_| lane.reserve(4, patience).unwrap()).collect();
        assert!(waits[0] < Duration::from_millis(5));
        assert!(waits[4] >= Duration::from_millis(990) && waits[4] <= Duration::from_secs(1));
        assert_eq!(
            lane.reserve(4, patience),
            None,
            "a sixth slot is 1.25 s away"
        );
    }

    #[test]
    fn a_new_lane_takes_a_burst_before_its_latency_is_known() {
        assert_eq!(
            Lane::new(8).wait_cap(Duration::from_secs(1)),
            UNMEASURED_WAITERS
        );
    }

    #[tokio::test]
    async fn a_saturated_lane_that_finishes_nothing_defers() {
        let lane = Lane::new(1);
        let Admission::Go(_held) = lane.admit(Duration::from_millis(50), true).await else {
            panic!("the first delivery gets the permit")
        };
        lane.last_done.store(now_ms() - 5_000, Ordering::Relaxed);
        assert!(matches!(
            lane.admit(Duration::from_millis(50), true).await,
            Admission::Defer
        ));
    }
}
