//! When each retry queue is looked at next. A queue that yields work is looked at again soon;
//! one that stays empty is looked at less and less often, down to a pace that keeps the whole
//! set of queues at about `per_second` looks, so idle shards cost Redis little however many
//! there are.

use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Looks {
    next: Vec<Instant>,
    wait: Vec<Duration>,
    base: Duration,
    longest: Duration,
}

impl Looks {
    /// `queues` looked at every `base` while they yield, and every `base` × `queues` (at most
    /// a second) while they are empty.
    pub(crate) fn new(queues: usize, base: Duration) -> Looks {
        let longest = (base * queues.max(1) as u32)
            .min(Duration::from_secs(1))
            .max(base);
        let now = Instant::now();
        Looks {
            next: vec![now; queues],
            wait: vec![base; queues],
            base,
            longest,
        }
    }

    pub(crate) fn due(&self, queue: usize, now: Instant) -> bool {
        self.next[queue] <= now
    }

    /// The queue yielded work: look again after `again` (zero: at once).
    pub(crate) fn yielded(&mut self, queue: usize, now: Instant, again: Duration) {
        self.wait[queue] = self.base;
        self.next[queue] = now + again;
    }

    /// The queue had nothing: look again later, twice as late as last time, up to the longest.
    pub(crate) fn empty(&mut self, queue: usize, now: Instant) {
        self.next[queue] = now + self.wait[queue];
        self.wait[queue] = (self.wait[queue] * 2).min(self.longest);
    }

    /// The queue's next work is due at `at`: look then if that is sooner than planned.
    pub(crate) fn not_after(&mut self, queue: usize, at: Instant) {
        self.next[queue] = self.next[queue].min(at);
    }

    /// Work may be waiting: look now at every queue that yielded at its last look (those
    /// backing off keep their pace, so a busy replica's wake-ups do not poll idle shards).
    pub(crate) fn wake(&mut self) {
        let now = Instant::now();
        for (next, wait) in self.next.iter_mut().zip(&self.wait) {
            if *wait == self.base {
                *next = now;
            }
        }
    }

    /// The next time any queue is due.
    pub(crate) fn earliest(&self) -> Instant {
        self.next.iter().min().copied().unwrap_or_else(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_empty_queue_backs_off_to_the_pace_of_the_whole_set() {
        let mut looks = Looks::new(16, 100 * MS);
        let t = Instant::now();
        let mut at = t;
        let mut waits = Vec::new();
        for _ in 0..6 {
            looks.empty(0, at);
            waits.push(looks.next[0] - at);
            at = looks.next[0];
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000].map(|m| m * MS));
        looks.yielded(0, at, Duration::from_secs(5));
        looks.empty(1, at);
        looks.wake();
        let now = Instant::now();
        assert!(looks.due(0, now), "a queue that yielded last is woken");
        assert!(!looks.due(1, now), "one backing off keeps its pace");
        looks.empty(0, at);
        assert_eq!(looks.next[0] - at, 100 * MS, "yielding reset the back-off");
    }

    #[test]
    fn one_queue_keeps_the_base_pace() {
        let mut looks = Looks::new(1, 100 * MS);
        let t = Instant::now();
        looks.empty(0, t);
        looks.empty(0, t);
        assert_eq!(looks.next[0] - t, 100 * MS);
        looks.wake();
        assert!(looks.due(0, Instant::now()));
    }
}
