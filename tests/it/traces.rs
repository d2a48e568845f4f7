//! Traces (SPEC 10, issue 15): with `telemetry.otlp_endpoint` set, each event's fan-out is a
//! span under the producer's `traceparent`, and each attempt a span under the fan-out, posted
//! over OTLP/HTTP. A collector on 127.0.0.1 decodes what webhookd exports with the
//! `opentelemetry-proto` definitions.

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use serde_json::json;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// An OTLP/HTTP collector: a test receiver whose requests are decoded as
/// `ExportTraceServiceRequest`s.
struct Collector(Receiver);

impl Collector {
    async fn start() -> Collector {
        Collector(Receiver::start(always(200)).await)
    }

    fn yaml(&self) -> String {
        format!("telemetry:\n  otlp_endpoint: \"{}\"\n", self.0.url(""))
    }

    /// Every span received so far, with its batch's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for req in self.0.received() {
            assert_eq!(req.path, "/v1/traces");
            assert_eq!(req.header("content-type"), "application/x-protobuf");
            let batch = ExportTraceServiceRequest::decode(&req.body[..]).expect("OTLP protobuf");
            for rs in batch.resource_spans {
                let resource = rs.resource.expect("a resource");
                let service = resource
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.clone()?.value);
                let service = match service {
                    Some(Value::StringValue(s)) => s,
                    other => panic!("service.name: {other:?}"),
                };
                for ss in rs.scope_spans {
                    out.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        out
    }

    /// The spans of one event: its fan-out (by `webhookd.event.id`) and the spans of its
    /// trace, once there are at least `n` of those (bounded wait).
    async fn event_spans(&self, event_id: &str, n: usize) -> (Span, Vec<Span>) {
        let find = || {
            let spans: Vec<Span> = self.spans().into_iter().map(|(_, s)| s).collect();
            let fan = spans.iter().find(|s| {
                s.name == "webhookd fan-out" && text(s, "webhookd.event.id") == Some(event_id)
            })?;
            let trace: Vec<Span> = spans
                .iter()
                .filter(|s| s.trace_id == fan.trace_id)
                .cloned()
                .collect();
            (trace.len() >= n).then(|| (fan.clone(), trace))
        };
        wait_until(WAIT, || find().is_some()).await;
        find().unwrap_or_else(|| panic!("no {n} spans for {event_id}: {:#?}", self.spans()))
    }
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match attr(s, key) {
        Some(Value::StringValue(v)) => Some(v),
        _ => None,
    }
}

fn int(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key) {
        Some(Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The attempt spans among `spans`, by attempt number.
fn attempts(spans: &[Span]) -> Vec<Span> {
    let mut out: Vec<Span> = spans
        .iter()
        .filter(|s| s.name == "webhookd attempt")
        .cloned()
        .collect();
    out.sort_by_key(|s| int(s, "webhookd.attempt"));
    out
}

fn status_code(s: &Span) -> i32 {
    s.status.as_ref().map_or(0, |st| st.code)
}

fn publish_one(setup: &Setup, id: &str, data: serde_json::Value) {
    publish(
        &mut redis(),
        &setup.stream(),
        &[envelope(id, "outbound.sent", "t", data)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_a_span_under_the_fan_out_under_the_producers_span() {
    let collector = Collector::start().await;
    let rx = Receiver::start(first_then_ok(1, 503)).await;
    let setup = Setup::new("traces")
        .with(&collector.yaml())
        .with("retry:\n  schedule: [200ms]\n  jitter: 0\n")
        .endpoint("ep1", "t", &rx.url("/hook?token=s3cret"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let producer = traceparent(TRACE, PRODUCER_SPAN);
    publish_one(
        &setup,
        "evt_tp",
        json!({"uid": "m1", "traceparent": producer}),
    );
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "{}", w.log_text());

    let (fan, trace) = collector.event_spans("evt_tp", 3).await;
    assert_eq!(hex(&fan.trace_id), TRACE, "the producer's trace");
    assert_eq!(
        hex(&fan.parent_span_id),
        PRODUCER_SPAN,
        "under the producer's span"
    );
    assert_eq!(fan.kind, SpanKind::Consumer as i32);
    assert_eq!(text(&fan, "webhookd.event.type"), Some("outbound.sent"));
    assert_eq!(text(&fan, "webhookd.tenant"), Some("t"));
    assert_eq!(int(&fan, "webhookd.endpoints"), Some(1));
    let fans = trace
        .iter()
        .filter(|s| s.name == "webhookd fan-out")
        .count();
    assert_eq!(fans, 1, "exactly one fan-out span: {trace:#?}");

    let attempts = attempts(&trace);
    assert_eq!(
        attempts.len(),
        2,
        "exactly one span per attempt: {trace:#?}"
    );
    for (n, (span, status)) in attempts.iter().zip([503, 200]).enumerate() {
        assert_eq!(span.parent_span_id, fan.span_id, "a child of the fan-out");
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(int(span, "webhookd.attempt"), Some(n as i64 + 1));
        assert_eq!(int(span, "http.response.status_code"), Some(status));
        assert_eq!(text(span, "webhookd.endpoint.id"), Some("ep1"));
        assert!(int(span, "webhookd.latency_ms").is_some_and(|ms| ms >= 0));
        let url = rx.url("/hook");
        assert_eq!(text(span, "url.full"), Some(url.as_str()), "no query");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        // The receiver was told the attempt's span, to continue the trace.
        let sent = traceparent(TRACE, &hex(&span.span_id));
        assert_eq!(got[n].header("traceparent"), sent);
    }
    assert_eq!(status_code(&attempts[0]), StatusCode::Error as i32);
    assert_eq!(text(&attempts[0], "error.type"), Some("503"));
    assert_ne!(status_code(&attempts[1]), StatusCode::Error as i32);
    assert_eq!(text(&attempts[1], "error.type"), None);

    let services: Vec<String> = collector.spans().into_iter().map(|(s, _)| s).collect();
    assert!(services.iter().all(|s| s == "webhookd"), "{services:?}");
    let exported = w
        .metric_until("webhookd_trace_spans_exported_total", |v| v >= 3.0)
        .await;
    assert!(exported >= 3.0, "{exported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_traceparent_gets_a_trace_of_its_own() {
    let collector = Collector::start().await;
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("traces-fresh").with(&collector.yaml()).endpoint(
        "ep1",
        "t",
        &rx.url("/"),
        &["*"],
    );
    let _w = Webhookd::start(&setup).await;
    publish_one(&setup, "evt_a", json!({"uid": "m1"}));
    publish_one(
        &setup,
        "evt_b",
        json!({"traceparent": "00-not-a-traceparent"}),
    );
    for id in ["evt_a", "evt_b"] {
        let (fan, trace) = collector.event_spans(id, 2).await;
        assert_ne!(fan.trace_id, vec![0; 16], "{id}");
        assert_eq!(fan.trace_id.len(), 16);
        assert_ne!(hex(&fan.trace_id), TRACE);
        assert!(fan.parent_span_id.is_empty(), "{id}: the root of its trace");
        let attempts = attempts(&trace);
        assert_eq!(attempts.len(), 1, "{trace:#?}");
        assert_eq!(attempts[0].parent_span_id, fan.span_id);
    }
    let (a, _) = collector.event_spans("evt_a", 2).await;
    let (b, _) = collector.event_spans("evt_b", 2).await;
    assert_ne!(a.trace_id, b.trace_id, "a new trace per event");
}

/// A retry taken from the retry queue by another process (here: the next one, after a
/// SIGTERM) is still a child of the event's fan-out span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_made_by_another_replica_stays_under_the_fan_out() {
    let collector = Collector::start().await;
    let rx = Receiver::start(first_then_ok(1, 500)).await;
    let setup = Setup::new("traces-replica")
        .with(&collector.yaml())
        .with("retry:\n  schedule: [3s]\n  jitter: 0\n")
        .endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let mut first = Webhookd::start(&setup).await;
    let producer = traceparent(TRACE, PRODUCER_SPAN);
    publish_one(&setup, "evt_moved", json!({"traceparent": producer}));
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);
    first.terminate(WAIT).await;
    // Its spans were sent on the way out.
    let (fan, _) = collector.event_spans("evt_moved", 2).await;
    let other = Webhookd::start(&setup.replica("c-other")).await;
    assert_eq!(rx.wait_for(2, WAIT).await.len(), 2, "{}", other.log_text());
    let (_, trace) = collector.event_spans("evt_moved", 3).await;
    let attempts = attempts(&trace);
    assert_eq!(attempts.len(), 2, "{trace:#?}");
    for (n, span) in attempts.iter().enumerate() {
        assert_eq!(int(span, "webhookd.attempt"), Some(n as i64 + 1));
        assert_eq!(span.parent_span_id, fan.span_id);
        assert_eq!(hex(&span.trace_id), TRACE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_traceparent_links_the_producers_trace_end_to_end() {
    let collector = Collector::start().await;
    let rx = Receiver::start(always(200)).await;
    let setup =
        Setup::new("traces-cli")
            .with(&collector.yaml())
            .endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let producer = traceparent(trace, "b7ad6b7169203331");
    webhookd_ok(
        &w.config,
        &[
            "publish",
            "--tenant",
            "t",
            "--type",
            "outbound.sent",
            "--id",
            "evt_cli",
            "--data",
            r#"{"uid":"m9"}"#,
            "--traceparent",
            &producer,
        ],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].json()["data"],
        json!({"uid": "m9", "traceparent": producer})
    );
    let (fan, spans) = collector.event_spans("evt_cli", 2).await;
    assert_eq!(hex(&fan.trace_id), trace);
    assert_eq!(hex(&fan.parent_span_id), "b7ad6b7169203331");
    let attempts = attempts(&spans);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].parent_span_id, fan.span_id);
    assert_eq!(int(&attempts[0], "http.response.status_code"), Some(200));
}

#[test]
fn publish_refuses_a_bad_traceparent_with_one_line() {
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "nonsense",
    ] {
        let out = Command::new(bin())
            .args(["publish", "--tenant", "t", "--type", "outbound.sent"])
            .args(["--config", "/nonexistent/config.yaml", "--traceparent", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--traceparent") && err.contains(bad), "{err}");
    }
}

/// Unset: no exporter, no span, no `traceparent` sent, no trace metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_otlp_endpoint_nothing_is_traced() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("traces-off").endpoint("ep1", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let producer = traceparent(TRACE, PRODUCER_SPAN);
    publish_one(&setup, "evt_off", json!({"traceparent": producer}));
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("traceparent"),
        "",
        "no span, so none to continue"
    );
    let metrics = w.metrics().await;
    assert!(metrics.contains("webhookd_deliveries_total"), "{metrics}");
    assert!(
        !metrics.contains("webhookd_trace_"),
        "no exporter: {metrics}"
    );
}
