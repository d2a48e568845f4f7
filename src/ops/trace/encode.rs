//! Spans as OTLP's `ExportTraceServiceRequest`, the protobuf body of a POST to `/v1/traces`.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::ops::trace::span::{Attr, Kind, SpanData};

const SERVICE: &str = "webhookd";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// OTLP's span flags: bit 8 says whether bit 9 (the parent is remote) is known.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The request body for a batch of spans.
pub(crate) fn encode(spans: &[SpanData]) -> Vec<u8> {
    request(spans).encode_to_vec()
}

fn request(spans: &[SpanData]) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            key_value("service.name", &Attr::Str(SERVICE.into())),
            key_value("service.version", &Attr::Str(VERSION.into())),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: SERVICE.into(),
        version: VERSION.into(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn span(s: &SpanData) -> Span {
    let kind = match s.kind {
        Kind::Consumer => span::SpanKind::Consumer,
        Kind::Client => span::SpanKind::Client,
    };
    let remote = match (s.parent, s.remote_parent) {
        (Some(_), true) => HAS_IS_REMOTE | IS_REMOTE,
        (Some(_), false) => 0,
        (None, _) => HAS_IS_REMOTE,
    };
    let status = match &s.error {
        Some(message) => Status {
            message: message.clone(),
            code: status::StatusCode::Error as i32,
        },
        None => Status::default(),
    };
    Span {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(s.context.flags) | remote,
        name: s.name.into(),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(s.start),
        end_time_unix_nano: unix_nanos(s.end),
        attributes: s.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
        status: Some(status),
        ..Default::default()
    }
}

fn key_value(key: &str, value: &Attr) -> KeyValue {
    let value = match value {
        Attr::Str(s) => any_value::Value::StringValue(s.clone()),
        Attr::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::trace::context::TraceParent;
    use crate::ops::trace::span::{fan_out, FanOutFacts, Started};

    #[test]
    fn a_batch_decodes_as_the_collector_reads_it() {
        let producer =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let data = fan_out(
            Started::under(producer, true),
            FanOutFacts {
                event_id: "evt_1",
                event_type: "outbound.sent",
                tenant: "acct_1",
                endpoints: 2,
                entry: "1-0",
            },
        );
        let got =
            ExportTraceServiceRequest::decode(&encode(std::slice::from_ref(&data))[..]).unwrap();
        let rs = &got.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        assert_eq!(
            service.value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("webhookd".into()))
        );
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(s.trace_id, producer.unwrap().trace_id);
        assert_eq!(s.parent_span_id, producer.unwrap().span_id);
        assert_eq!(s.span_id, data.context.span_id);
        assert_eq!(s.kind, span::SpanKind::Consumer as i32);
        assert_eq!(s.flags, 0x301, "sampled, with a remote parent");
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano && s.start_time_unix_nano > 0);
        assert_eq!(s.attributes.len(), data.attributes.len());
    }
}
