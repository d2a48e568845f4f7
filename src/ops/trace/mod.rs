//! Traces (SPEC 10), when `telemetry.otlp_endpoint` is set: a span per event fan-out, under
//! the producer's span when the event names one (`context`), and a span per delivery attempt
//! under it (`span`), encoded as OTLP (`encode`) and posted by one background task
//! (`export`). Unset, none of this exists: no tracer, no task, no span built.
//!
//! Recording never waits: a span goes to the exporter with `try_send`, and one that finds
//! the queue full is dropped and counted (`webhookd_trace_spans_dropped_total`).

mod context;
mod encode;
mod export;
mod span;

use http::Uri;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

pub use context::TraceParent;
pub(crate) use export::Exporter;
pub(crate) use span::{AttemptFacts, FanOutFacts, Started};

use crate::config::{Config, ConfigError};
use crate::ops::metrics::Metrics;
use context::producer_of;
use export::{ExportCounters, QUEUE};
use span::SpanData;

/// Records spans; cheap to clone (a queue's sender and a counter).
#[derive(Clone)]
pub(crate) struct Tracer {
    spans: mpsc::Sender<SpanData>,
    queue_full: Counter,
}

/// The tracer and its exporter (to be run as a task) when `telemetry.otlp_endpoint` is set;
/// `None`, with no metric registered, when it is not.
pub(crate) fn from_config(
    config: &Config,
    metrics: &mut Metrics,
) -> Result<Option<(Tracer, Exporter)>, ConfigError> {
    Ok(config.otlp_traces_url()?.map(|url| start(url, metrics)))
}

fn start(url: Uri, metrics: &mut Metrics) -> (Tracer, Exporter) {
    let dropped = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    metrics.register(
        "webhookd_trace_spans_dropped",
        "Spans not exported, by reason: queue_full (the exporter was behind), export_failed (the collector did not take them)",
        dropped.clone(),
    );
    let exported = Counter::default();
    metrics.register(
        "webhookd_trace_spans_exported",
        "Spans the OTLP collector took",
        exported.clone(),
    );
    let reason = |r: &'static str| dropped.get_or_create(&vec![("reason", r)]).clone();
    let (tx, rx) = mpsc::channel(QUEUE);
    let counters = ExportCounters {
        exported,
        failed: reason("export_failed"),
    };
    let tracer = Tracer {
        spans: tx,
        queue_full: reason("queue_full"),
    };
    (tracer, Exporter::new(rx, url, counters))
}

impl Tracer {
    /// An event's fan-out span begins: a child of the producer's span when the event's
    /// `data.traceparent` names one, else the root of a new trace.
    pub(crate) fn fan_out_begins(&self, event: &[u8]) -> Started {
        Started::under(producer_of(event), true)
    }

    pub(crate) fn fan_out_ends(&self, span: Started, facts: FanOutFacts<'_>) {
        self.record(span, |s| span::fan_out(s, facts));
    }

    /// An attempt's span begins under its delivery's fan-out span. A delivery without one
    /// (queued by an earlier build, or a replayed dead letter) goes under the producer's span,
    /// else its attempt opens a trace of its own.
    pub(crate) fn attempt_begins(&self, fan_out: Option<TraceParent>, body: &[u8]) -> Started {
        match fan_out {
            Some(parent) => Started::under(Some(parent), false),
            None => Started::under(producer_of(body), true),
        }
    }

    pub(crate) fn attempt_ends(&self, span: Started, facts: AttemptFacts<'_>) {
        self.record(span, |s| span::attempt(s, facts));
    }

    fn record(&self, span: Started, finish: impl FnOnce(Started) -> SpanData) {
        if !span.context.sampled() {
            return;
        }
        // Closed only once shutdown has stopped the exporter: nothing would send it.
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) =
            self.spans.try_send(finish(span))
        {
            self.queue_full.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_there_is_no_tracer_and_nothing_in_the_metrics() {
        let mut metrics = Metrics::new();
        let mut config = Config::default();
        assert!(from_config(&config, &mut metrics).unwrap().is_none());
        assert!(!metrics.render().contains("webhookd_trace_"));
        config.telemetry.otlp_endpoint = "http://127.0.0.1:4318".into();
        assert!(from_config(&config, &mut metrics).unwrap().is_some());
        assert!(metrics
            .render()
            .contains("webhookd_trace_spans_exported_total 0"));
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them_without_waiting() {
        let mut metrics = Metrics::new();
        let (tracer, exporter) = start(
            "http://127.0.0.1:9/v1/traces".parse().unwrap(),
            &mut metrics,
        );
        for _ in 0..QUEUE + 5 {
            let span = tracer.fan_out_begins(b"{}");
            tracer.fan_out_ends(
                span,
                FanOutFacts {
                    event_id: "e",
                    event_type: "a.b",
                    tenant: "t",
                    endpoints: 1,
                    entry: "1-0",
                },
            );
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"webhookd_trace_spans_dropped_total{reason="queue_full"} 5"#),
            "{text}"
        );
        drop(exporter);
    }

    #[test]
    fn an_attempt_without_a_fan_out_span_goes_under_the_producers_span_or_a_new_trace() {
        let mut metrics = Metrics::new();
        let (tracer, _exporter) = start(
            "http://127.0.0.1:9/v1/traces".parse().unwrap(),
            &mut metrics,
        );
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let body = format!(r#"{{"id":"e","data":{{"traceparent":"{tp}"}}}}"#);
        let producer = TraceParent::parse(tp).unwrap();
        let span = tracer.attempt_begins(None, body.as_bytes());
        assert_eq!(span.context.trace_id, producer.trace_id);
        assert_ne!(span.context.span_id, producer.span_id);
        let alone = tracer.attempt_begins(None, br#"{"id":"e","data":{}}"#);
        assert_ne!(alone.context.trace_id, producer.trace_id);
    }

    #[test]
    fn spans_of_an_unsampled_trace_are_not_recorded() {
        let mut metrics = Metrics::new();
        let (tracer, mut exporter) = start(
            "http://127.0.0.1:9/v1/traces".parse().unwrap(),
            &mut metrics,
        );
        let body = br#"{"data":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}"#;
        let fan = tracer.fan_out_begins(body);
        assert!(!fan.context.sampled());
        let attempt = tracer.attempt_begins(Some(fan.context), b"{}");
        assert_eq!(attempt.context.trace_id, fan.context.trace_id);
        let url: Uri = "https://h.example/".parse().unwrap();
        tracer.attempt_ends(
            attempt,
            AttemptFacts {
                event_id: "e",
                endpoint_id: "ep",
                url: &url,
                attempt: 1,
                status: Some(200),
                latency: std::time::Duration::from_millis(1),
                error: None,
            },
        );
        assert!(exporter.try_take().is_none(), "nothing queued");
    }
}
