//! The retry schedule: when a failed delivery is attempted again (SPEC 5).

use std::time::Duration;

/// Delay before the next attempt, after `attempts_done` attempts failed; `None` once the
/// schedule is spent. `unit` is a random number in [0, 1) that places the jitter.
/// `Retry-After` is honored: never earlier than it asks, capped at the longest delay.
pub(crate) fn next_delay(
    schedule: &[Duration],
    attempts_done: u32,
    jitter: f64,
    unit: f64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = *schedule.get((attempts_done as usize).checked_sub(1)?)?;
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    let mut delay = base.mul_f64(factor.max(0.0));
    if let Some(asked) = retry_after {
        delay = delay.max(capped_wait(schedule, asked));
    }
    Some(delay)
}

/// A `Retry-After` wait as webhookd honours it: at most the schedule's longest delay, so a
/// receiver's header cannot hold a delivery (or its endpoint's circuit) past its schedule.
pub(crate) fn capped_wait(schedule: &[Duration], asked: Duration) -> Duration {
    asked.min(schedule.iter().max().copied().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_schedule() -> Vec<Duration> {
        [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }

    #[test]
    fn a_schedule_of_n_delays_means_one_plus_n_attempts() {
        let s = default_schedule();
        for done in 1..=7 {
            assert!(
                next_delay(&s, done, 0.0, 0.5, None).is_some(),
                "after attempt {done}"
            );
        }
        assert_eq!(next_delay(&s, 8, 0.0, 0.5, None), None);
        assert_eq!(next_delay(&[], 1, 0.2, 0.5, None), None);
    }

    #[test]
    fn delays_follow_the_schedule() {
        let s = default_schedule();
        assert_eq!(
            next_delay(&s, 1, 0.0, 0.9, None),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_delay(&s, 2, 0.0, 0.9, None),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            next_delay(&s, 7, 0.0, 0.9, None),
            Some(Duration::from_secs(36_000))
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let s = default_schedule();
        let lo = next_delay(&s, 2, 0.2, 0.0, None).unwrap();
        let hi = next_delay(&s, 2, 0.2, 0.999_999, None).unwrap();
        assert_eq!(lo, Duration::from_secs(240));
        assert!(hi > Duration::from_secs(359) && hi <= Duration::from_secs(360));
    }

    #[test]
    fn retry_after_is_honored_but_capped_at_the_longest_delay() {
        let s = default_schedule();
        let d = next_delay(&s, 1, 0.2, 0.0, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let d = next_delay(&s, 1, 0.0, 0.5, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(
            d,
            Duration::from_secs(5),
            "never earlier than the schedule either"
        );
        let d = next_delay(&s, 1, 0.0, 0.5, Some(Duration::from_secs(999_999))).unwrap();
        assert_eq!(d, Duration::from_secs(36_000));
        let d = next_delay(&s, 1, 0.0, 0.5, Some(Duration::MAX)).unwrap();
        assert_eq!(d, Duration::from_secs(36_000));
    }
}
