//! How webhookd waits between tries against Redis (through `backon`): exponential from a
//! minimum, doubling to at most 5 s, never giving up on its own; the caller stops trying when
//! webhookd shuts down.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The longest wait between two tries.
pub(crate) const MAX: Duration = Duration::from_secs(5);

/// The policy, for `backon::Retryable::retry`.
pub(crate) fn policy(min: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(MAX)
        .without_max_times()
}

/// A loop's waits: each failure takes the next (longer) one, a success starts again.
pub(crate) struct Backoff {
    min: Duration,
    waits: ExponentialBackoff,
}

impl Backoff {
    pub(crate) fn new(min: Duration) -> Self {
        Backoff {
            min,
            waits: policy(min).build(),
        }
    }

    /// How long to wait after this failure.
    pub(crate) fn next_wait(&mut self) -> Duration {
        self.waits.next().unwrap_or(MAX)
    }

    pub(crate) fn reset(&mut self) {
        self.waits = policy(self.min).build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_seconds_and_start_again_after_a_reset() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let waits: Vec<u128> = (0..8).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }
}
