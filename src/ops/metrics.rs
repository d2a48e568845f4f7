//! Prometheus metrics (SPEC 10). Labels never carry endpoint or tenant ids, so cardinality
//! stays flat however many customers there are.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) events_consumed: Counter,
    pub(crate) events_invalid: Counter,
    pub(crate) events_duplicate: Counter,
    pub(crate) delivered: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead: Counter,
    pub(crate) attempt_duration: Histogram,
    pub(crate) event_to_delivery: Histogram,
    pub(crate) retry_queue_depth: Gauge,
    pub(crate) dlq_depth: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) stream_pending: Gauge,
    pub(crate) stream_lag: Gauge,
    pub(crate) endpoints: Gauge,
    pub(crate) endpoints_disabled: Counter,
    parked: Family<Labels, Counter>,
    pub(crate) circuits_open: Gauge,
    pub(crate) dlq_trimmed: Counter,
    pub(crate) notices_dropped: Counter,
    pub(crate) attempt_log_waits: Counter,
    pub(crate) endpoints_quarantined: Gauge,
    pub(crate) retry_jobs_quarantined: Counter,
    transitions: Family<Labels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let events_consumed = Counter::default();
        registry.register(
            "webhookd_events_consumed",
            "Stream entries read and validated",
            events_consumed.clone(),
        );
        let events_invalid = Counter::default();
        registry.register(
            "webhookd_events_invalid",
            "Entries set aside on the invalid stream",
            events_invalid.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "webhookd_events_duplicate",
            "Events not fanned out again: their id was seen for the tenant within 24 h",
            events_duplicate.clone(),
        );
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhookd_deliveries",
            "Delivery attempts by outcome: success, retry (scheduled again), dead (dead-lettered)",
            deliveries.clone(),
        );
        let outcome = |o: &'static str| deliveries.get_or_create(&vec![("outcome", o)]).clone();
        let (delivered, retried, dead) = (outcome("success"), outcome("retry"), outcome("dead"));
        let attempt_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "webhookd_attempt_duration_seconds",
            "Time of one HTTP attempt",
            attempt_duration.clone(),
        );
        let event_to_delivery = Histogram::new(exponential_buckets(0.0005, 3.0, 18));
        registry.register(
            "webhookd_event_to_delivery_seconds",
            "Time from publishing an event to its successful delivery",
            event_to_delivery.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let retry_queue_depth = gauge(
            &mut registry,
            "webhookd_retry_queue_depth",
            "Deliveries waiting in the retry queue, scheduled or parked",
        );
        let dlq_depth = gauge(
            &mut registry,
            "webhookd_dlq_depth",
            "Entries in the dead-letter stream",
        );
        let in_flight = gauge(
            &mut registry,
            "webhookd_in_flight",
            "HTTP attempts under way in this replica",
        );
        let stream_pending = gauge(
            &mut registry,
            "webhookd_stream_pending",
            "Input entries read by the group but not yet acknowledged",
        );
        let stream_lag = gauge(
            &mut registry,
            "webhookd_stream_lag",
            "Input entries not yet done: not yet read by the group, or read and not yet acknowledged (scale on this)",
        );
        let endpoints = gauge(
            &mut registry,
            "webhookd_endpoints",
            "Endpoints in the match index",
        );
        let endpoints_disabled = Counter::default();
        registry.register(
            "webhookd_endpoints_disabled",
            "Endpoints disabled by webhookd (410 Gone or failing for delivery.disable_after)",
            endpoints_disabled.clone(),
        );
        let parked = Family::<Labels, Counter>::default();
        registry.register(
            "webhookd_deliveries_parked",
            "Deliveries parked in their endpoint's backlog in Redis, by reason: circuit, backlog, busy, slow_budget, tenant_share, rate_limit, unknown_endpoint, quarantined",
            parked.clone(),
        );
        let circuits_open = gauge(
            &mut registry,
            "webhookd_circuits_open",
            "Endpoints whose circuit is open or half open",
        );
        let transitions = Family::<Labels, Counter>::default();
        registry.register(
            "webhookd_circuit_transitions",
            "Circuit state changes made by this replica, by the state entered",
            transitions.clone(),
        );
        // Every label value at 0 from the start, so a dashboard's rate() and an alert on
        // them work before the first parking or transition, not only after.
        for reason in PARKED_REASONS {
            let _ = parked.get_or_create(&vec![("reason", *reason)]);
        }
        for to in ["open", "half_open", "closed"] {
            let _ = transitions.get_or_create(&vec![("to", to)]);
        }
        let notices_dropped = Counter::default();
        registry.register(
            "webhookd_notices_dropped",
            "Operational events (webhookd.*) not published: too many were waiting",
            notices_dropped.clone(),
        );
        let attempt_log_waits = Counter::default();
        registry.register(
            "webhookd_attempt_log_waits",
            "Attempts whose record waited for room in the attempt log's backlog: deliveries outran its writer",
            attempt_log_waits.clone(),
        );
        let dlq_trimmed = Counter::default();
        registry.register(
            "webhookd_dlq_trimmed",
            "Dead letters removed because they outlived dlq.retention",
            dlq_trimmed.clone(),
        );
        let endpoints_quarantined = gauge(
            &mut registry,
            "webhookd_endpoints_quarantined",
            "Endpoints this replica cannot decode (e.g. a secret under a key it lacks); their deliveries wait parked",
        );
        let retry_jobs_quarantined = Counter::default();
        registry.register(
            "webhookd_retry_jobs_quarantined",
            "Retry jobs this build could not read, moved to the {retry}:quarantine hash",
            retry_jobs_quarantined.clone(),
        );
        Metrics {
            dlq_trimmed,
            notices_dropped,
            attempt_log_waits,
            retry_jobs_quarantined,
            endpoints_quarantined,
            registry,
            parked,
            circuits_open,
            transitions,
            events_consumed,
            events_invalid,
            events_duplicate,
            delivered,
            retried,
            dead,
            attempt_duration,
            event_to_delivery,
            retry_queue_depth,
            dlq_depth,
            in_flight,
            stream_pending,
            stream_lag,
            endpoints,
            endpoints_disabled,
        }
    }

    /// Counts a delivery parked for `reason`.
    pub(crate) fn parked(&self, reason: &'static str) {
        self.parked.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts a circuit entering `to` (`open`, `half_open` or `closed`).
    pub(crate) fn circuit_transition(&self, to: &'static str) {
        self.transitions.get_or_create(&vec![("to", to)]).inc();
    }

    /// Registers a metric only some configurations have (traces), so it is absent otherwise.
    pub(crate) fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.register(name, help, metric);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The reasons `webhookd_deliveries_parked_total` counts (`deliver::decide::Why`'s labels).
pub(crate) const PARKED_REASONS: &[&str] = &[
    "circuit",
    "backlog",
    "rate_limit",
    "busy",
    "slow_budget",
    "tenant_share",
    "unknown_endpoint",
    "quarantined",
];

#[cfg(test)]
mod tests {
    #[test]
    fn labelled_families_show_every_value_before_their_first_count() {
        let text = super::Metrics::new().render();
        for sample in [
            "webhookd_deliveries_parked_total{reason=\"circuit\"} 0",
            "webhookd_deliveries_parked_total{reason=\"quarantined\"} 0",
            "webhookd_circuit_transitions_total{to=\"open\"} 0",
            "webhookd_circuit_transitions_total{to=\"half_open\"} 0",
            "webhookd_circuit_transitions_total{to=\"closed\"} 0",
        ] {
            assert!(text.contains(sample), "missing {sample} in\n{text}");
        }
    }

    #[test]
    fn spec_families_are_exposed() {
        let m = super::Metrics::new();
        m.delivered.inc();
        let text = m.render();
        for name in [
            "webhookd_events_consumed_total",
            "webhookd_events_invalid_total",
            "webhookd_deliveries_total{outcome=\"success\"} 1",
            "webhookd_deliveries_total{outcome=\"retry\"} 0",
            "webhookd_deliveries_total{outcome=\"dead\"} 0",
            "webhookd_attempt_duration_seconds_bucket",
            "webhookd_event_to_delivery_seconds_bucket",
            "webhookd_retry_queue_depth",
            "webhookd_dlq_depth",
            "webhookd_in_flight",
            "webhookd_stream_pending",
            "webhookd_stream_lag",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
