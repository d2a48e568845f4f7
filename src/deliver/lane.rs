//! One endpoint's lane in this replica: its in-flight slots, an adaptive limit on them, and
//! the rule that decides whether a delivery waits in memory for a slot or is parked in Redis.
//!
//! - The limit adapts like TCP's window (AIMD): it starts at 1, grows by one with each 2xx up
//!   to `per_endpoint_in_flight`, and halves on each failure, so a failing endpoint soon uses
//!   one connection instead of sixteen.
//! - A delivery waits in memory only while its expected wait is short: the lane's measured
//!   capacity (slots ÷ latency) times `patience` bounds how many may wait. A fast endpoint
//!   takes bursts in memory (backpressure on the consumer); a slow or hanging one parks its
//!   excess in Redis and never holds memory or the consumer up.
//! - A lane whose attempts take longer than `SLOW_AFTER` (sooner for an endpoint that has
//!   answered fast: `Lane::slow_after`) is *slow*: its attempts count against
//!   the slow budget (see `Budget`) instead of the quick room, so slow endpoints never take
//!   the room quick ones need.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::support::clock::now_ms;

/// Waiters allowed before the lane's latency is known.
const UNMEASURED_WAITERS: usize = 512;
/// An attempt running longer than this is slow: it moves to the slow budget.
pub(crate) const SLOW_AFTER: Duration = Duration::from_secs(1);
/// An endpoint that has answered fast is slow sooner: once an attempt has gone unanswered for
/// this many times its measured latency, but never under `SLOW_SOONEST`. Endpoints that answer
/// within a few ms and then hang all together otherwise held the quick room and the consumer's
/// room for a whole `SLOW_AFTER`, and every other tenant waited that long (twenty-fourth slice
/// of issue 16).
const SLOW_FACTOR: u64 = 20;
/// Half of `SLOW_AFTER`: a fast endpoint's spike of a few hundred ms is still a spike, its
/// deliveries waiting in memory rather than parked in Redis
/// (`isolation::after_a_latency_spike_the_rest_of_a_burst_waits_for_the_backlog_to_drain`,
/// whose 300 ms answers parked 5,980 of 7,468 deliveries at 100 ms here).
const SLOW_SOONEST: Duration = Duration::from_millis(500);
/// A pause in a lane's answers shorter than this is a busy machine's scheduling, not a
/// hanging endpoint: at full speed on two cores a healthy endpoint's answers stop for 4-7 ms
/// now and then, and taking that for its latency cut the waiters a fast lane may hold tenfold,
/// parking the burst in Redis and every delivery queued behind it (issue 16).
const STALL_NOISE: Duration = Duration::from_millis(50);

pub(crate) struct Lane {
    permits: Arc<Semaphore>,
    per_endpoint: usize,
    /// Slots held back by the lane itself to lower its limit below `per_endpoint`.
    held: Mutex<Held>,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    /// Unix ms of the last finished attempt, or of the last start from idle if later: the
    /// moment since which an attempt in flight has kept the lane waiting.
    last_done: AtomicI64,
    /// Moving average of attempt latency in µs; 0 until measured.
    latency_us: AtomicU64,
    /// The last attempt's latency in µs.
    last_us: AtomicU64,
    /// Under a `rate_limit`, the earliest moment the next attempt may start.
    next_slot: Mutex<Option<Instant>>,
    /// Deliveries of this endpoint are parked in Redis: new ones queue behind them.
    backlogged: AtomicBool,
    /// Fresh deliveries waiting in memory for the backlog to drain.
    behind: AtomicUsize,
    /// Wakes them when it has.
    drained: Notify,
}

/// One permit of many slots, not a permit per slot: a fan-out makes a lane per endpoint,
/// each lowered to one slot at once, and a vector of seven permits was seven `Arc` clones
/// and three reallocations per endpoint.
#[derive(Default)]
struct Held {
    permits: Option<OwnedSemaphorePermit>,
    /// Slots still to hold back as soon as in-flight attempts return them.
    owed: usize,
}

impl Held {
    fn count(&self) -> usize {
        self.permits.as_ref().map_or(0, |p| p.num_permits())
    }

    fn keep(&mut self, p: OwnedSemaphorePermit) {
        match &mut self.permits {
            Some(held) => held.merge(p),
            None => self.permits = Some(p),
        }
    }

    /// Gives one held slot back to the lane.
    fn release_one(&mut self) {
        match &mut self.permits {
            Some(held) if held.num_permits() > 1 => drop(held.split(1)),
            _ => self.permits = None,
        }
    }
}

/// An in-flight slot of a lane; returned (or kept back by a lowered limit) on drop.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    lane: Arc<Lane>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.permit.take() {
            let mut held = self.lane.held.lock().expect("lane limit");
            if held.owed > 0 {
                held.owed -= 1;
                held.keep(p);
            }
        }
    }
}

/// What a delivery gets from its lane.
pub(crate) enum Admission {
    Go(Slot),
    /// No slot soon: park the delivery in Redis.
    Park,
}

impl Lane {
    pub(crate) fn new(per_endpoint: usize) -> Arc<Lane> {
        let lane = Arc::new(Lane {
            permits: Arc::new(Semaphore::new(per_endpoint)),
            per_endpoint,
            held: Mutex::new(Held::default()),
            waiting: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicI64::new(now_ms()),
            latency_us: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            next_slot: Mutex::new(None),
            backlogged: AtomicBool::new(false),
            behind: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        // Slow start: one slot until the endpoint has answered.
        lane.lower(per_endpoint.saturating_sub(1));
        lane
    }

    /// The current limit on in-flight attempts.
    pub(crate) fn limit(&self) -> usize {
        let held = self.held.lock().expect("lane limit");
        self.per_endpoint - held.count() - held.owed
    }

    /// Whether the endpoint has answered (or failed) an attempt: its latency is known.
    pub(crate) fn answered(&self) -> bool {
        self.latency_us.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Slots free right now (what the backlog puller may take for this lane).
    pub(crate) fn free(&self) -> usize {
        self.permits
            .available_permits()
            .saturating_sub(self.waiting.load(Ordering::Relaxed))
    }

    fn lower(&self, by: usize) {
        let mut held = self.held.lock().expect("lane limit");
        // Never below one slot.
        let limit = self.per_endpoint - held.count() - held.owed;
        let by = by.min(limit.saturating_sub(1));
        if by == 0 {
            return;
        }
        // What is free now is held at once; the rest is owed by attempts in flight.
        let free = self.permits.available_permits().min(by);
        let taken = match self.permits.clone().try_acquire_many_owned(free as u32) {
            Ok(p) if free > 0 => {
                held.keep(p);
                free
            }
            _ => 0,
        };
        held.owed += by - taken;
    }

    fn raise(&self) {
        let mut held = self.held.lock().expect("lane limit");
        if held.owed > 0 {
            held.owed -= 1;
        } else {
            held.release_one();
        }
    }

    /// Whether this endpoint's attempts are slow: measured so, or stalled with attempts out.
    pub(crate) fn is_slow(&self) -> bool {
        let slow_us = SLOW_AFTER.as_micros() as u64;
        if self.latency_us.load(Ordering::Relaxed) >= slow_us {
            return true;
        }
        self.stalled_ms() >= self.slow_after().as_millis() as u64
    }

    /// How long an attempt may go unanswered before it counts as slow: `SLOW_AFTER`, or
    /// `SLOW_FACTOR` times the latency the endpoint has shown, whichever is shorter (never
    /// under `SLOW_SOONEST`).
    pub(crate) fn slow_after(&self) -> Duration {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => SLOW_AFTER,
            us => Duration::from_micros(us.saturating_mul(SLOW_FACTOR))
                .clamp(SLOW_SOONEST, SLOW_AFTER),
        }
    }

    /// How long attempts in flight have gone without one finishing (0 with none out).
    fn stalled_ms(&self) -> u64 {
        if self.in_flight() == 0 {
            return 0;
        }
        (now_ms() - self.last_done.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Reserves the next start slot under a rate limit of `per_sec` attempts a second (evenly
    /// spaced) and answers how long to wait for it; `None`, reserving nothing, when the slot is
    /// further away than `patience`.
    ///
    /// Hand-written rather than `governor` (which the API's limit uses): governor answers "not
    /// until T" without taking the slot, so waiters would race for it when T comes; a delivery
    /// here owns its slot from the moment it decides to wait, which keeps them in order and the
    /// wait bounded.
    pub(crate) fn reserve(&self, per_sec: u32, patience: Duration) -> Option<Duration> {
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

    /// How many start slots under a rate limit of `per_sec` are free within `patience`: what
    /// the backlog puller may take now. Each one it took beyond them would only be parked
    /// again, a rewrite in Redis for every look at the backlog.
    pub(crate) fn slots_within(&self, per_sec: u32, patience: Duration) -> usize {
        let interval = Duration::from_secs(1) / per_sec.max(1);
        let now = Instant::now();
        let next = self.next_slot.lock().expect("rate slot");
        let first = next.map_or(now, |n| n.max(now));
        match (now + patience).checked_duration_since(first) {
            Some(ahead) => (ahead.as_nanos() / interval.as_nanos().max(1)) as usize + 1,
            None => 0,
        }
    }

    /// Records a finished attempt: its latency, and whether the endpoint answered 2xx.
    pub(crate) fn finished(&self, latency: Duration, succeeded: bool) {
        self.last_done.store(now_ms(), Ordering::Relaxed);
        let sample = latency.as_micros().clamp(1, u64::MAX as u128) as u64;
        self.last_us.store(sample, Ordering::Relaxed);
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.latency_us.store(new.max(1), Ordering::Relaxed);
        if succeeded {
            if self.limit() < self.per_endpoint {
                self.raise();
            }
        } else {
            let limit = self.limit();
            self.lower(limit - limit / 2);
        }
    }

    /// How many deliveries may wait now: what the lane is expected to finish within
    /// `patience`. While attempts are out and nothing finishes, the stall is the latency.
    fn wait_cap(&self, patience: Duration) -> usize {
        self.cap_at(self.latency_us.load(Ordering::Relaxed), patience)
    }

    /// What the lane finishes within `patience` at `latency_us` an attempt, or at the stall
    /// if attempts are out and it is longer.
    fn cap_at(&self, latency_us: u64, patience: Duration) -> usize {
        let stalled_ms = match self.stalled_ms() {
            ms if ms < STALL_NOISE.as_millis() as u64 => 0,
            ms => ms,
        };
        let latency_us = latency_us.max(stalled_ms * 1000);
        if latency_us == 0 {
            return UNMEASURED_WAITERS;
        }
        let per_sec = self.limit() as f64 * 1e6 / latency_us as f64;
        (per_sec * patience.as_secs_f64()) as usize
    }

    /// How many more deliveries the lane can take now: free slots, plus (unless it is slow)
    /// room to wait for one within `patience`.
    pub(crate) fn room(&self, patience: Duration) -> usize {
        // Until it has answered, no more than it can start: a new endpoint may hang.
        if self.is_slow() || self.latency_us.load(Ordering::Relaxed) == 0 {
            return self.free();
        }
        let waiting = self.waiting.load(Ordering::Relaxed);
        self.free() + self.wait_cap(patience).saturating_sub(waiting)
    }

    /// A slot at once, or after a wait expected to last under `patience`; a slow lane never
    /// keeps a delivery waiting in memory.
    pub(crate) async fn admit(self: &Arc<Self>, patience: Duration) -> Admission {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Admission::Go(self.slot(p));
        }
        if self.is_slow() || self.waiting.load(Ordering::Relaxed) >= self.wait_cap(patience) {
            return Admission::Park;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let got = self
            .unless_slow(self.permits.clone().acquire_owned(), patience)
            .await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match got {
            Some(p) => Admission::Go(self.slot(p.expect("lane semaphores are never closed"))),
            None => Admission::Park,
        }
    }

    /// `wait`'s output if it comes within `patience` and before the lane turns slow. Whatever
    /// waits here holds the consumer's room, which a lane that stopped answering must give
    /// back when it turns slow, not when `patience` is over; `wait` is polled throughout (a
    /// semaphore's waiter keeps its place in the queue).
    async fn unless_slow<F: std::future::Future>(
        &self,
        wait: F,
        patience: Duration,
    ) -> Option<F::Output> {
        tokio::pin!(wait);
        let until = tokio::time::Instant::now() + patience;
        loop {
            let check = (tokio::time::Instant::now() + self.slow_after()).min(until);
            match tokio::time::timeout_at(check, wait.as_mut()).await {
                Ok(out) => return Some(out),
                Err(_) if check >= until || self.is_slow() => return None,
                Err(_) => {}
            }
        }
    }

    /// A slot only if one is free now.
    #[cfg(test)]
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let p = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.slot(p))
    }

    fn slot(self: &Arc<Self>, p: OwnedSemaphorePermit) -> Slot {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            // An idle lane is not stalled: its wait starts now.
            self.last_done.fetch_max(now_ms(), Ordering::Relaxed);
        }
        Slot {
            permit: Some(p),
            lane: self.clone(),
        }
    }

    /// Nothing in flight, waiting or parked: the lane can be dropped from the map.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight() == 0
            && self.waiting.load(Ordering::Relaxed) == 0
            && self.behind.load(Ordering::Relaxed) == 0
            && !self.backlogged()
    }

    /// Whether the endpoint has deliveries parked (as far as this replica knows).
    pub(crate) fn backlogged(&self) -> bool {
        self.backlogged.load(Ordering::Relaxed)
    }

    /// Records whether the endpoint has deliveries parked; once it has none, the fresh ones
    /// waiting behind them go on.
    pub(crate) fn set_backlogged(&self, parked: bool) {
        self.backlogged.store(parked, Ordering::Relaxed);
        if !parked {
            self.drained.notify_waiters();
        }
    }

    /// Lets a fresh delivery wait in memory, for at most `patience` and only while the lane is
    /// not slow, for the backlog ahead of it to drain: true once it has (the delivery goes on
    /// to a slot), false when it should be parked behind it instead.
    ///
    /// Parking every fresh delivery behind a backlog let the consumer read as fast as Redis
    /// takes writes, far faster than the lane drains: once a burst had parked a few deliveries
    /// (a latency spike), all the rest went through Redis, at twice the commands and CPU
    /// (issue 16). Waiting holds the consumer's room, so it reads no faster than the lane
    /// goes, as it does for a lane without a backlog, and under the same bound: a lane that is
    /// not slow keeps in memory at most what it is expected to finish within `patience`,
    /// counting the deliveries waiting for a slot.
    pub(crate) async fn wait_behind(&self, patience: Duration) -> bool {
        let average = self.latency_us.load(Ordering::Relaxed);
        if self.is_slow() || average == 0 {
            return false;
        }
        // At the last answer's pace if that is quicker than the average: a lane getting over
        // a spike answers quickly again long before its average says so, and meanwhile every
        // fresh delivery past the average's bound was parked, feeding the backlog.
        let latency = average.min(self.last_us.load(Ordering::Relaxed));
        let held = self.behind.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed);
        if held >= self.cap_at(latency, patience) {
            return false;
        }
        let drained = self.drained.notified();
        tokio::pin!(drained);
        // Listening before the flag is read: a drain in between is not missed.
        drained.as_mut().enable();
        if !self.backlogged() {
            return true;
        }
        self.behind.fetch_add(1, Ordering::Relaxed);
        let _behind = Behind(&self.behind);
        let woken = self.unless_slow(drained, patience).await.is_some();
        woken || !self.backlogged()
    }

    /// Idle, and no attempt started or finished for `quiet`.
    pub(crate) fn idle_for(&self, quiet: Duration) -> bool {
        self.idle() && now_ms() - self.last_done.load(Ordering::Relaxed) >= quiet.as_millis() as i64
    }
}

/// Counts a delivery waiting behind the backlog for as long as it waits (even if dropped).
struct Behind<'a>(&'a AtomicUsize);

impl Drop for Behind<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The slow budget: slow attempts are bounded apart from quick ones, so quick endpoints always
/// find their room (`max_in_flight` of it) however many endpoints hang.
///
/// - A new attempt of a slow lane starts only within `soft` (3/4 of `max_in_flight` by
///   default), and one tenant's within `per_tenant`, so one broken tenant cannot take all of it.
/// - An attempt that turns slow while running moves here (giving its quick room back) while
///   fewer than `hard` are slow, whatever its tenant: it is running anyway.
pub(crate) struct Budget {
    soft: usize,
    hard: usize,
    per_tenant: usize,
    used: Mutex<(usize, std::collections::HashMap<Arc<str>, usize>)>,
}

/// A share of the slow budget; given back on drop.
pub(crate) struct SlowShare {
    budget: Arc<Budget>,
    tenant: Arc<str>,
}

impl Drop for SlowShare {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().expect("slow budget");
        used.0 -= 1;
        if let Some(n) = used.1.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                used.1.remove(&self.tenant);
            }
        }
    }
}

impl Budget {
    pub(crate) fn new(soft: usize, hard: usize, per_tenant: usize) -> Arc<Budget> {
        Arc::new(Budget {
            soft: soft.max(1),
            hard: hard.max(soft).max(1),
            per_tenant: per_tenant.max(1),
            used: Mutex::new((0, Default::default())),
        })
    }

    /// A share for a new slow attempt, within the soft and per-tenant limits.
    pub(crate) fn try_take(self: &Arc<Self>, tenant: &Arc<str>) -> Option<SlowShare> {
        let mut used = self.used.lock().expect("slow budget");
        let mine = used.1.get(tenant).copied().unwrap_or(0);
        if used.0 >= self.soft || mine >= self.per_tenant {
            return None;
        }
        Some(self.grant(&mut used, tenant))
    }

    /// A share for an attempt that turned slow while running, within the hard limit.
    pub(crate) fn take_running(self: &Arc<Self>, tenant: &Arc<str>) -> Option<SlowShare> {
        let mut used = self.used.lock().expect("slow budget");
        if used.0 >= self.hard {
            return None;
        }
        Some(self.grant(&mut used, tenant))
    }

    fn grant(
        self: &Arc<Self>,
        used: &mut (usize, std::collections::HashMap<Arc<str>, usize>),
        tenant: &Arc<str>,
    ) -> SlowShare {
        used.0 += 1;
        *used.1.entry(tenant.clone()).or_insert(0) += 1;
        SlowShare {
            budget: self.clone(),
            tenant: tenant.clone(),
        }
    }

    /// New slow attempts the tenant could start now.
    #[cfg(test)]
    pub(crate) fn room_for(&self, tenant: &str) -> usize {
        let used = self.used.lock().expect("slow budget");
        let mine = used.1.get(tenant).copied().unwrap_or(0);
        self.soft
            .saturating_sub(used.0)
            .min(self.per_tenant.saturating_sub(mine))
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.lock().expect("slow budget").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields until `n` deliveries wait behind `lane`'s backlog; fails past 5 s.
    async fn until_behind(lane: &Lane, n: usize) {
        let start = Instant::now();
        while lane.behind.load(Ordering::Relaxed) < n {
            assert!(start.elapsed() < Duration::from_secs(5), "never waited");
            tokio::task::yield_now().await;
        }
    }

    fn warmed(per_endpoint: usize, latency: Duration) -> Arc<Lane> {
        let lane = Lane::new(per_endpoint);
        for _ in 0..40 {
            lane.finished(latency, true);
        }
        lane
    }

    #[test]
    fn a_fast_lane_lets_many_wait_and_a_slow_one_few() {
        let fast = warmed(8, Duration::from_micros(500));
        assert!(fast.wait_cap(Duration::from_secs(1)) >= 10_000);
        let slow = warmed(8, Duration::from_millis(500));
        assert_eq!(slow.wait_cap(Duration::from_secs(1)), 16);
    }

    #[test]
    fn the_limit_starts_at_one_grows_on_success_and_halves_on_failure() {
        let lane = Lane::new(8);
        assert_eq!(lane.limit(), 1);
        for _ in 0..3 {
            lane.finished(Duration::from_millis(1), true);
        }
        assert_eq!(lane.limit(), 4);
        for _ in 0..10 {
            lane.finished(Duration::from_millis(1), true);
        }
        assert_eq!(lane.limit(), 8);
        lane.finished(Duration::from_millis(1), false);
        assert_eq!(lane.limit(), 4);
        for _ in 0..5 {
            lane.finished(Duration::from_millis(1), false);
        }
        assert_eq!(lane.limit(), 1, "never below one");
        assert_eq!(lane.free(), 1);
    }

    #[test]
    fn a_lane_that_answered_fast_turns_slow_sooner_when_its_answers_stop() {
        assert_eq!(Lane::new(8).slow_after(), SLOW_AFTER, "unmeasured");
        assert_eq!(
            warmed(8, Duration::from_millis(1)).slow_after(),
            SLOW_SOONEST
        );
        let thirty = warmed(8, Duration::from_millis(30)).slow_after();
        assert!(
            (Duration::from_millis(590)..=Duration::from_millis(610)).contains(&thirty),
            "{thirty:?}"
        );
        assert_eq!(
            warmed(8, Duration::from_millis(200)).slow_after(),
            SLOW_AFTER
        );
        // An attempt out and no answer for 650 ms: slow for a 1 ms endpoint, not a 40 ms one.
        for (latency, slow) in [(1, true), (40, false)] {
            let lane = warmed(8, Duration::from_millis(latency));
            let _slot = lane.try_admit().unwrap();
            lane.last_done.store(now_ms() - 650, Ordering::Relaxed);
            assert_eq!(lane.is_slow(), slow, "{latency} ms");
        }
    }

    #[tokio::test]
    async fn waiters_for_a_lane_that_turns_slow_are_parked_then_not_at_the_end_of_patience() {
        let lane = warmed(1, Duration::from_millis(1));
        let _slot = lane.try_admit().unwrap();
        // The attempt out never answers; the waiter comes while the lane still looks healthy.
        lane.last_done.store(now_ms(), Ordering::Relaxed);
        assert!(!lane.is_slow());
        let start = Instant::now();
        let admitted = lane.admit(Duration::from_secs(5)).await;
        assert!(matches!(admitted, Admission::Park));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn deliveries_behind_a_backlog_of_a_lane_that_turns_slow_are_parked_then() {
        let lane = warmed(8, Duration::from_millis(1));
        let _slot = lane.try_admit().unwrap();
        lane.set_backlogged(true);
        // The attempt out never answers, and the backlog never drains.
        lane.last_done.store(now_ms(), Ordering::Relaxed);
        let start = Instant::now();
        assert!(!lane.wait_behind(Duration::from_secs(5)).await);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn an_idle_lane_is_not_taken_for_a_stalled_one() {
        let lane = warmed(8, Duration::from_millis(1));
        lane.last_done.store(now_ms() - 600_000, Ordering::Relaxed);
        assert!(lane.wait_cap(Duration::from_secs(1)) >= 1000);
        assert!(!lane.is_slow());
    }

    #[tokio::test]
    async fn a_lowered_limit_takes_effect_as_attempts_return() {
        let lane = warmed(4, Duration::from_millis(1));
        let slots: Vec<Slot> = (0..4).map(|_| lane.try_admit().unwrap()).collect();
        lane.finished(Duration::from_millis(1), false);
        assert_eq!(lane.limit(), 2);
        drop(slots);
        assert_eq!(lane.free(), 2);
        assert_eq!(lane.in_flight(), 0);
    }

    #[test]
    fn a_rate_limit_spaces_attempts_and_parks_beyond_patience() {
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
    fn the_puller_takes_only_the_slots_that_reserve_would_grant() {
        let lane = Lane::new(8);
        let patience = Duration::from_secs(1);
        assert_eq!(lane.slots_within(4, patience), 5);
        for _ in 0..3 {
            lane.reserve(4, patience).unwrap();
        }
        assert_eq!(lane.slots_within(4, patience), 2);
        lane.reserve(4, patience).unwrap();
        lane.reserve(4, patience).unwrap();
        assert_eq!(lane.slots_within(4, patience), 0, "the next is 1.25 s away");
        assert_eq!(lane.reserve(4, patience), None);
    }

    #[test]
    fn a_new_lane_takes_a_small_burst_before_its_latency_is_known() {
        assert_eq!(
            Lane::new(8).wait_cap(Duration::from_secs(1)),
            UNMEASURED_WAITERS
        );
    }

    #[tokio::test]
    async fn a_slow_lane_parks_instead_of_waiting() {
        let lane = warmed(1, Duration::from_secs(3));
        assert!(lane.is_slow());
        let Admission::Go(_held) = lane.admit(Duration::from_secs(5)).await else {
            panic!("the first delivery gets the slot")
        };
        let started = Instant::now();
        assert!(matches!(
            lane.admit(Duration::from_secs(5)).await,
            Admission::Park
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_lane_idle_for_long_is_not_stalled_when_it_starts_again() {
        let lane = warmed(2, Duration::from_millis(1));
        lane.last_done.store(now_ms() - 60_000, Ordering::Relaxed);
        let _a = lane.try_admit().unwrap();
        let _b = lane.try_admit().unwrap();
        assert!(!lane.is_slow());
        assert!(lane.wait_cap(Duration::from_secs(1)) >= 1000);
    }

    #[test]
    fn a_pause_of_a_few_ms_is_not_taken_for_a_fast_lanes_latency_and_a_long_one_is() {
        let lane = warmed(8, Duration::from_micros(300));
        let _out: Vec<Slot> = (0..8).map(|_| lane.try_admit().unwrap()).collect();
        let patience = Duration::from_secs(1);
        lane.last_done.store(now_ms() - 7, Ordering::Relaxed);
        assert!(
            lane.wait_cap(patience) >= 10_000,
            "{}",
            lane.wait_cap(patience)
        );
        lane.last_done.store(now_ms() - 200, Ordering::Relaxed);
        assert_eq!(lane.wait_cap(patience), 40, "8 slots, 200 ms each");
    }

    #[tokio::test]
    async fn a_fresh_delivery_behind_a_backlog_goes_on_once_it_drains() {
        let lane = warmed(8, Duration::from_millis(1));
        lane.set_backlogged(true);
        let waiting = tokio::spawn({
            let lane = lane.clone();
            async move { lane.wait_behind(Duration::from_secs(30)).await }
        });
        until_behind(&lane, 1).await;
        assert!(
            !lane.idle(),
            "a lane with deliveries behind its backlog is kept"
        );
        lane.set_backlogged(false);
        let drained = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(drained.expect("woken at once").unwrap());
        assert_eq!(lane.behind.load(Ordering::Relaxed), 0);
        assert!(
            lane.wait_behind(Duration::from_secs(30)).await,
            "no backlog: go on"
        );
    }

    #[tokio::test]
    async fn a_backlog_that_does_not_drain_within_patience_parks_the_delivery() {
        let lane = warmed(8, Duration::from_millis(1));
        lane.set_backlogged(true);
        let started = Instant::now();
        assert!(!lane.wait_behind(Duration::from_millis(50)).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(lane.behind.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_slow_or_unmeasured_lane_parks_fresh_deliveries_behind_its_backlog_at_once() {
        let patience = Duration::from_secs(30);
        let new = Lane::new(8);
        new.set_backlogged(true);
        assert!(!new.wait_behind(patience).await, "latency unknown");
        let slow = warmed(8, Duration::from_secs(2));
        slow.set_backlogged(true);
        assert!(!slow.wait_behind(patience).await, "slow");
    }

    #[tokio::test]
    async fn no_more_wait_behind_a_backlog_than_the_lane_finishes_within_patience() {
        // 8 slots, 500 ms each: 16 a second, less those waiting for a slot.
        let lane = warmed(8, Duration::from_millis(500));
        lane.set_backlogged(true);
        lane.waiting.store(6, Ordering::Relaxed);
        let patience = Duration::from_secs(1);
        let waits: Vec<_> = (0..10)
            .map(|_| {
                let lane = lane.clone();
                tokio::spawn(async move { lane.wait_behind(patience).await })
            })
            .collect();
        until_behind(&lane, 10).await;
        let started = Instant::now();
        assert!(!lane.wait_behind(patience).await, "the 17th is parked");
        assert!(started.elapsed() < Duration::from_millis(500), "at once");
        lane.set_backlogged(false);
        for w in waits {
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn behind_a_backlog_a_lane_answering_quickly_again_is_taken_at_its_new_pace() {
        let lane = warmed(8, Duration::from_millis(1));
        for _ in 0..8 {
            lane.finished(Duration::from_millis(300), true); // a spike
        }
        lane.finished(Duration::from_millis(1), true);
        let patience = Duration::from_secs(1);
        assert!(lane.wait_cap(patience) < 100, "{}", lane.wait_cap(patience));
        lane.waiting.store(100, Ordering::Relaxed);
        lane.set_backlogged(true);
        let waiting = tokio::spawn({
            let lane = lane.clone();
            async move { lane.wait_behind(patience).await }
        });
        let start = Instant::now();
        while lane.behind.load(Ordering::Relaxed) == 0 {
            assert!(!waiting.is_finished(), "parked at the average's pace");
            assert!(start.elapsed() < Duration::from_secs(5), "never waited");
            tokio::task::yield_now().await;
        }
        lane.set_backlogged(false);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_stalled_lane_counts_as_slow() {
        let lane = warmed(2, Duration::from_millis(1));
        let _held = lane.try_admit().unwrap();
        assert!(!lane.is_slow());
        lane.last_done.store(now_ms() - 5_000, Ordering::Relaxed);
        assert!(lane.is_slow());
    }

    #[test]
    fn running_attempts_turn_slow_up_to_the_hard_limit_whatever_the_tenant() {
        let budget = Budget::new(2, 3, 1);
        let a: Arc<str> = "a".into();
        let _s = budget.try_take(&a).unwrap();
        assert!(budget.try_take(&a).is_none());
        let _r1 = budget.take_running(&a).unwrap();
        let _r2 = budget
            .take_running(&a)
            .unwrap_or_else(|| panic!("hard limit is 3"));
        assert!(budget.take_running(&a).is_none());
        assert_eq!(budget.room_for("b"), 0);
        assert_eq!(budget.used(), 3);
    }

    #[test]
    fn the_slow_budget_bounds_each_tenant_and_the_whole() {
        let budget = Budget::new(3, 3, 2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let a1 = budget.try_take(&a).unwrap();
        let _a2 = budget.try_take(&a).unwrap();
        assert!(budget.try_take(&a).is_none(), "tenant a is at its share");
        let _b1 = budget.try_take(&b).unwrap();
        assert!(budget.try_take(&b).is_none(), "the whole budget is used");
        drop(a1);
        assert!(budget.try_take(&b).is_some());
    }
}
