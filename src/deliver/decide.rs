//! The dispatcher's decisions, apart from their effects (waits, writes, metrics), so each rule
//! can be read and tested on its own: what happens to a delivery before an attempt, what an
//! attempt's answer means, and what follows a failed one.

use std::time::Duration;

use crate::deliver::attempt::Outcome;
use crate::retry::next_delay;

/// Why a delivery was parked (the label of `webhookd_deliveries_parked_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Its endpoint's circuit is open.
    Circuit,
    /// Its endpoint has parked deliveries already; it queues behind them.
    Backlog,
    /// Its rate-limit slot is more than `lane_wait` away.
    RateLimit,
    /// Its endpoint has no slot within `lane_wait`.
    Busy,
    /// Its endpoint is slow and the slow budget has no room.
    SlowBudget,
    /// Past its tenant's share of the consumer's room, to an endpoint that has not answered
    /// yet (`deliver::tenant_room`).
    TenantShare,
    /// Its endpoint in Redis is not (yet) in this replica's index as it is there: not loaded,
    /// or enabled since.
    UnknownEndpoint,
    /// This replica cannot decode its endpoint (e.g. a secret under a key it lacks).
    Quarantined,
}

impl Why {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Why::Circuit => "circuit",
            Why::Backlog => "backlog",
            Why::RateLimit => "rate_limit",
            Why::Busy => "busy",
            Why::SlowBudget => "slow_budget",
            Why::TenantShare => "tenant_share",
            Why::UnknownEndpoint => "unknown_endpoint",
            Why::Quarantined => "quarantined",
        }
    }
}

/// What a delivery's endpoint is like when the delivery comes up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gate {
    pub(crate) disabled: bool,
    /// This replica cannot decode the endpoint (e.g. a secret under a key it lacks).
    pub(crate) quarantined: bool,
    pub(crate) circuit_open: bool,
    /// The delivery is the one attempt an open circuit allows.
    pub(crate) probe: bool,
    /// The delivery comes straight from the stream (not from the retry queue or a backlog).
    pub(crate) fresh: bool,
    /// The endpoint has parked deliveries.
    pub(crate) backlogged: bool,
    /// Past its tenant's share of the consumer's room, and not to be held there.
    pub(crate) crowded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    DeadLetter(&'static str),
    Park(Why),
    /// Wait for the endpoint's rate limit and a slot, then attempt.
    Attempt,
}

/// Before any wait: a disabled endpoint gets nothing more; an undecodable one, an open
/// circuit (except for its probe) and a backlog (for fresh deliveries, which queue behind it
/// rather than overtake it) park the delivery.
pub(crate) fn before(g: Gate) -> Before {
    if g.disabled {
        Before::DeadLetter("endpoint disabled")
    } else if g.quarantined {
        Before::Park(Why::Quarantined)
    } else if g.circuit_open && !g.probe {
        Before::Park(Why::Circuit)
    } else if g.crowded {
        Before::Park(Why::TenantShare)
    } else if g.fresh && g.backlogged {
        Before::Park(Why::Backlog)
    } else {
        Before::Attempt
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    /// 410: the receiver asks never to be called again; the endpoint is disabled.
    Gone,
    Failed,
}

pub(crate) fn verdict(outcome: &Outcome) -> Verdict {
    if outcome.succeeded() {
        Verdict::Delivered
    } else if outcome.status == Some(410) {
        Verdict::Gone
    } else {
        Verdict::Failed
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AfterFailure {
    Retry(Duration),
    /// The circuit is open: wait in the backlog for the probe, not on a timer.
    WaitForProbe,
    DeadLetter,
}

/// After the `attempts`-th attempt failed: the next delay of the schedule (jittered by `unit`
/// in [0, 1), never before `Retry-After`), unless the schedule is spent.
pub(crate) fn after_failure(
    schedule: &[Duration],
    jitter: f64,
    attempts: u32,
    unit: f64,
    outcome: &Outcome,
    circuit_open: bool,
) -> AfterFailure {
    match next_delay(schedule, attempts, jitter, unit, outcome.retry_after) {
        None => AfterFailure::DeadLetter,
        Some(_) if circuit_open => AfterFailure::WaitForProbe,
        Some(delay) => AfterFailure::Retry(delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>) -> Outcome {
        Outcome {
            status,
            error: status.is_none().then(|| "timed out".into()),
            latency: Duration::from_millis(5),
            response: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn every_parking_reason_is_shown_from_the_start() {
        for why in [
            Why::Circuit,
            Why::Backlog,
            Why::RateLimit,
            Why::Busy,
            Why::SlowBudget,
            Why::UnknownEndpoint,
            Why::Quarantined,
        ] {
            assert!(
                crate::ops::metrics::PARKED_REASONS.contains(&why.label()),
                "{why:?}"
            );
        }
    }

    #[test]
    fn a_disabled_endpoint_gets_nothing_more_whatever_else_holds() {
        let g = Gate {
            disabled: true,
            quarantined: true,
            circuit_open: true,
            ..Gate::default()
        };
        assert_eq!(before(g), Before::DeadLetter("endpoint disabled"));
    }

    #[test]
    fn an_endpoint_this_replica_cannot_decode_parks_its_deliveries() {
        let g = Gate {
            quarantined: true,
            probe: true,
            ..Gate::default()
        };
        assert_eq!(before(g), Before::Park(Why::Quarantined));
    }

    #[test]
    fn a_crowded_out_delivery_is_parked_unless_its_endpoint_is_gone() {
        let crowded = Gate {
            crowded: true,
            fresh: true,
            ..Gate::default()
        };
        assert_eq!(before(crowded), Before::Park(Why::TenantShare));
        let disabled = Gate {
            disabled: true,
            ..crowded
        };
        assert_eq!(before(disabled), Before::DeadLetter("endpoint disabled"));
    }

    #[test]
    fn an_open_circuit_parks_all_but_its_probe() {
        let open = Gate {
            circuit_open: true,
            ..Gate::default()
        };
        assert_eq!(before(open), Before::Park(Why::Circuit));
        assert_eq!(
            before(Gate {
                probe: true,
                ..open
            }),
            Before::Attempt
        );
    }

    #[test]
    fn fresh_deliveries_queue_behind_a_backlog_and_pulled_ones_do_not() {
        let backlog = Gate {
            backlogged: true,
            ..Gate::default()
        };
        assert_eq!(
            before(Gate {
                fresh: true,
                ..backlog
            }),
            Before::Park(Why::Backlog)
        );
        assert_eq!(before(backlog), Before::Attempt);
        assert_eq!(
            before(Gate {
                fresh: true,
                ..Gate::default()
            }),
            Before::Attempt
        );
    }

    #[test]
    fn any_2xx_delivers_410_disables_everything_else_fails() {
        assert_eq!(verdict(&answer(Some(200))), Verdict::Delivered);
        assert_eq!(verdict(&answer(Some(299))), Verdict::Delivered);
        assert_eq!(verdict(&answer(Some(410))), Verdict::Gone);
        for failed in [Some(301), Some(404), Some(429), Some(500), None] {
            assert_eq!(verdict(&answer(failed)), Verdict::Failed, "{failed:?}");
        }
    }

    #[test]
    fn a_failure_is_retried_on_schedule_until_it_is_spent() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        let failed = answer(Some(500));
        let next = |attempts| after_failure(&schedule, 0.0, attempts, 0.5, &failed, false);
        assert_eq!(next(1), AfterFailure::Retry(Duration::from_secs(5)));
        assert_eq!(next(2), AfterFailure::Retry(Duration::from_secs(300)));
        assert_eq!(next(3), AfterFailure::DeadLetter);
    }

    #[test]
    fn an_open_circuit_holds_a_failure_for_the_probe_but_not_past_its_schedule() {
        let schedule = [Duration::from_secs(5)];
        let failed = answer(None);
        assert_eq!(
            after_failure(&schedule, 0.1, 1, 0.3, &failed, true),
            AfterFailure::WaitForProbe
        );
        assert_eq!(
            after_failure(&schedule, 0.1, 2, 0.3, &failed, true),
            AfterFailure::DeadLetter
        );
    }

    #[test]
    fn retry_after_is_waited_for() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(600)];
        let busy = Outcome {
            retry_after: Some(Duration::from_secs(120)),
            ..answer(Some(429))
        };
        assert_eq!(
            after_failure(&schedule, 0.0, 1, 0.5, &busy, false),
            AfterFailure::Retry(Duration::from_secs(120))
        );
    }
}
