//! The two spans webhookd records (SPEC 10): one per event fan-out, and one per delivery
//! attempt under it. Held as plain values until the exporter encodes them, so recording one
//! costs the hot path a few small allocations and a `try_send`.

use std::time::{Duration, SystemTime};

use http::Uri;

use crate::ops::trace::context::TraceParent;

pub(crate) const FAN_OUT: &str = "webhookd fan-out";
pub(crate) const ATTEMPT: &str = "webhookd attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Taking a message a producer published: the fan-out.
    Consumer,
    /// An outgoing request: an attempt.
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attr {
    Str(String),
    Int(i64),
}

/// A finished span, waiting to be exported.
#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) context: TraceParent,
    pub(crate) parent: Option<[u8; 8]>,
    /// The parent is another process's span (the producer's).
    pub(crate) remote_parent: bool,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) attributes: Vec<(&'static str, Attr)>,
    /// Set when the span failed: its status is then ERROR with this message.
    pub(crate) error: Option<String>,
}

/// A span under way: its place in the trace, and when it began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) context: TraceParent,
    parent: Option<TraceParent>,
    remote_parent: bool,
    start: SystemTime,
}

impl Started {
    /// A span beginning now under `parent` (same trace), or opening a trace of its own.
    pub(crate) fn under(parent: Option<TraceParent>, remote: bool) -> Started {
        Started {
            context: parent.map_or_else(TraceParent::root, |p| p.child()),
            parent,
            remote_parent: remote && parent.is_some(),
            start: SystemTime::now(),
        }
    }

    fn finish(
        self,
        name: &'static str,
        kind: Kind,
        end: SystemTime,
        attributes: Vec<(&'static str, Attr)>,
    ) -> SpanData {
        SpanData {
            name,
            kind,
            context: self.context,
            parent: self.parent.map(|p| p.span_id),
            remote_parent: self.remote_parent,
            start: self.start,
            end: end.max(self.start),
            attributes,
            error: None,
        }
    }
}

/// What a fan-out span tells.
pub(crate) struct FanOutFacts<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) tenant: &'a str,
    /// Endpoints the event matched.
    pub(crate) endpoints: usize,
    /// The stream entry (`<shard>:<id>` in a sharded stream).
    pub(crate) entry: &'a str,
}

pub(crate) fn fan_out(span: Started, f: FanOutFacts<'_>) -> SpanData {
    let attributes = vec![
        ("webhookd.event.id", Attr::Str(f.event_id.into())),
        ("webhookd.event.type", Attr::Str(f.event_type.into())),
        ("webhookd.tenant", Attr::Str(f.tenant.into())),
        ("webhookd.endpoints", Attr::Int(f.endpoints as i64)),
        ("messaging.message.id", Attr::Str(f.entry.into())),
    ];
    span.finish(FAN_OUT, Kind::Consumer, SystemTime::now(), attributes)
}

/// What an attempt span tells.
pub(crate) struct AttemptFacts<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) endpoint_id: &'a str,
    pub(crate) url: &'a Uri,
    /// 1 for the first attempt.
    pub(crate) attempt: u32,
    /// None when no response came.
    pub(crate) status: Option<u16>,
    pub(crate) latency: Duration,
    /// Why it failed; None when it succeeded.
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn attempt(span: Started, f: AttemptFacts<'_>) -> SpanData {
    let mut attributes = Vec::with_capacity(10);
    attributes.push(("webhookd.endpoint.id", Attr::Str(f.endpoint_id.into())));
    attributes.push(("webhookd.event.id", Attr::Str(f.event_id.into())));
    attributes.push(("webhookd.attempt", Attr::Int(f.attempt.into())));
    let latency_ms = f.latency.as_millis().min(i64::MAX as u128) as i64;
    attributes.push(("webhookd.latency_ms", Attr::Int(latency_ms)));
    attributes.push(("http.request.method", Attr::Str("POST".into())));
    // The query is left out: receivers put tokens there.
    let path = f.url.path();
    let host = f.url.host().unwrap_or_default();
    let scheme = f.url.scheme_str().unwrap_or("https");
    let full = match f.url.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    };
    attributes.push(("url.full", Attr::Str(full)));
    let address = host.trim_start_matches('[').trim_end_matches(']');
    attributes.push(("server.address", Attr::Str(address.into())));
    let port = f
        .url
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    attributes.push(("server.port", Attr::Int(port.into())));
    if let Some(status) = f.status {
        attributes.push(("http.response.status_code", Attr::Int(status.into())));
    }
    if let Some(why) = f.error {
        attributes.push(("error.type", Attr::Str(error_type(f.status, why))));
    }
    let end = span.start + f.latency;
    let mut data = span.finish(ATTEMPT, Kind::Client, end, attributes);
    data.error = f.error.map(str::to_string);
    data
}

/// `error.type` as OpenTelemetry's HTTP conventions have it: the status code of a failed
/// answer, else a short, low-cardinality name for why no answer came.
fn error_type(status: Option<u16>, why: &str) -> String {
    if let Some(s) = status {
        return s.to_string();
    }
    let kind = if why.starts_with("timed out") {
        "timeout"
    } else if why.contains("not allowed") {
        "address_not_allowed"
    } else if why.starts_with("connect") {
        "connection_error"
    } else {
        "_OTHER"
    };
    kind.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Attr> {
        span.attributes
            .iter()
            .find_map(|(k, v)| (*k == key).then_some(v))
    }

    #[test]
    fn an_attempt_under_a_fan_out_is_its_child_and_tells_what_happened() {
        let fan = Started::under(None, true);
        let url: Uri = "https://hooks.example.com:8443/in?token=secret"
            .parse()
            .unwrap();
        let span = attempt(
            Started::under(Some(fan.context), false),
            AttemptFacts {
                event_id: "evt_1",
                endpoint_id: "ep_1",
                url: &url,
                attempt: 2,
                status: Some(503),
                latency: Duration::from_millis(42),
                error: Some("HTTP 503"),
            },
        );
        assert_eq!(span.context.trace_id, fan.context.trace_id);
        assert_eq!(span.parent, Some(fan.context.span_id));
        assert!(!span.remote_parent);
        assert_eq!((span.name, span.kind), (ATTEMPT, Kind::Client));
        assert_eq!(
            span.end.duration_since(span.start).unwrap(),
            Duration::from_millis(42)
        );
        let full = Attr::Str("https://hooks.example.com:8443/in".into());
        assert_eq!(attr(&span, "url.full"), Some(&full));
        assert_eq!(attr(&span, "webhookd.attempt"), Some(&Attr::Int(2)));
        assert_eq!(
            attr(&span, "http.response.status_code"),
            Some(&Attr::Int(503))
        );
        assert_eq!(attr(&span, "error.type"), Some(&Attr::Str("503".into())));
        assert_eq!(span.error.as_deref(), Some("HTTP 503"));
    }

    #[test]
    fn an_attempt_without_an_answer_has_no_status_code_and_names_why() {
        let url: Uri = "http://h.example/".parse().unwrap();
        let span = attempt(
            Started::under(None, false),
            AttemptFacts {
                event_id: "evt_1",
                endpoint_id: "ep_1",
                url: &url,
                attempt: 1,
                status: None,
                latency: Duration::from_secs(5),
                error: Some("timed out after 5000ms"),
            },
        );
        assert_eq!(attr(&span, "http.response.status_code"), None);
        assert_eq!(
            attr(&span, "error.type"),
            Some(&Attr::Str("timeout".into()))
        );
        assert_eq!(attr(&span, "server.port"), Some(&Attr::Int(80)));
        assert_eq!(span.parent, None, "a trace of its own");
    }

    #[test]
    fn a_fan_out_under_the_producers_span_keeps_its_trace() {
        let producer =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let span = fan_out(
            Started::under(producer, true),
            FanOutFacts {
                event_id: "evt_1",
                event_type: "outbound.sent",
                tenant: "acct_1",
                endpoints: 3,
                entry: "1-0",
            },
        );
        let producer = producer.unwrap();
        assert_eq!(span.context.trace_id, producer.trace_id);
        assert_eq!(span.parent, Some(producer.span_id));
        assert!(span.remote_parent);
        assert_eq!(attr(&span, "webhookd.endpoints"), Some(&Attr::Int(3)));
        assert_eq!(span.error, None);
    }
}
