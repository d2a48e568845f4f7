//! The event envelope (SPEC 1): validation, and the body every endpoint receives.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::{EventId, EventType, TenantId};

/// A valid event, parsed once at the edge; the delivered body is built once and shared.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub event_type: EventType,
    pub tenant: TenantId,
    pub created_at: i64,
    /// The delivered body: the envelope without `tenant`, plus `service`.
    pub body: Bytes,
}

/// Each field as given, `null` included: a field that is there but null is of the wrong type,
/// not missing (serde would read `null` as an absent `Option`).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "given")]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default, deserialize_with = "given")]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "given")]
    tenant: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "given")]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "given")]
    data: Option<&'a RawValue>,
}

fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Why an entry was set aside; the text goes to the invalid stream's `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

fn string_field(raw: Option<&RawValue>, name: &str) -> Result<String, Invalid> {
    let raw = raw.ok_or_else(|| invalid(format!("missing field `{name}`")))?;
    serde_json::from_str::<String>(raw.get())
        .map_err(|_| invalid(format!("field `{name}` must be a string")))
}

/// Validates one raw `event` field value.
pub fn parse(raw: &[u8], max_bytes: usize) -> Result<Event, Invalid> {
    if raw.len() > max_bytes {
        return Err(invalid(format!(
            "event is {} bytes, over the limit of {max_bytes}",
            raw.len()
        )));
    }
    let env: Envelope =
        serde_json::from_slice(raw).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let id = EventId::parse(&string_field(env.id, "id")?)
        .map_err(|e| invalid(format!("field `id` {e}")))?;
    let event_type = string_field(env.event_type, "type")?;
    let event_type = EventType::parse(&event_type).map_err(|e| {
        let shown: String = event_type.chars().take(80).collect();
        invalid(format!("field `type` `{shown}` {e}"))
    })?;
    let tenant = TenantId::parse(&string_field(env.tenant, "tenant")?)
        .map_err(|e| invalid(format!("field `tenant` {e}")))?;
    let created_raw = env
        .created_at
        .ok_or_else(|| invalid("missing field `created_at`"))?;
    let created_at: i64 = serde_json::from_str(created_raw.get())
        .map_err(|_| invalid("field `created_at` must be an integer (Unix seconds)"))?;
    if created_at < 0 {
        return Err(invalid("field `created_at` must not be negative"));
    }
    let data = env.data.ok_or_else(|| invalid("missing field `data`"))?;
    if !data.get().starts_with('{') {
        return Err(invalid("field `data` must be a JSON object"));
    }
    let body = delivered_body(&id, &event_type, created_at, data.get());
    Ok(Event {
        id,
        event_type,
        tenant,
        created_at,
        body,
    })
}

/// `{"id","service","type","created_at","data"}`; `id` and `type` need no escaping by their grammar.
fn delivered_body(id: &str, event_type: &EventType, created_at: i64, data: &str) -> Bytes {
    let service = event_type.service();
    let mut out = String::with_capacity(data.len() + id.len() + 2 * event_type.len() + 64);
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push_str("\",\"service\":\"");
    out.push_str(service);
    out.push_str("\",\"type\":\"");
    out.push_str(event_type);
    out.push_str("\",\"created_at\":");
    out.push_str(&created_at.to_string());
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push('}');
    Bytes::from(out)
}

/// The envelope JSON a producer publishes.
pub fn envelope_json(
    id: &str,
    event_type: &str,
    tenant: &str,
    created_at: i64,
    data: &serde_json::Value,
) -> String {
    serde_json::json!({
        "id": id, "type": event_type, "tenant": tenant, "created_at": created_at, "data": data
    })
    .to_string()
}

/// A fresh, time-ordered event id: `evt_` + 12 hex digits of ms + 16 random hex digits.
pub fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("evt_{ms:012x}{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"evt_1","type":"outbound.bounced","tenant":"acct_42","created_at":1704825600,"data":{"uid":"msg-1","bounce_type":"hard"}}"#;

    #[test]
    fn the_delivered_body_drops_tenant_and_adds_service() {
        let e = parse(GOOD.as_bytes(), 1 << 20).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"evt_1","service":"outbound","type":"outbound.bounced",
                "created_at":1704825600,"data":{"uid":"msg-1","bounce_type":"hard"}})
        );
        assert_eq!(e.tenant, "acct_42");
    }

    #[test]
    fn each_missing_or_malformed_field_is_named() {
        let cases = [
            (r#"not json"#, "invalid JSON"),
            (
                r#"{"type":"a.b","tenant":"t","created_at":1,"data":{}}"#,
                "`id`",
            ),
            (
                r#"{"id":"x","tenant":"t","created_at":1,"data":{}}"#,
                "`type`",
            ),
            (
                r#"{"id":"x","type":"a.b","created_at":1,"data":{}}"#,
                "`tenant`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","data":{}}"#,
                "`created_at`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":1}"#,
                "`data`",
            ),
            (
                r#"{"id":"x y","type":"a.b","tenant":"t","created_at":1,"data":{}}"#,
                "`id`",
            ),
            (
                r#"{"id":"x","type":"Outbound.b","tenant":"t","created_at":1,"data":{}}"#,
                "`type`",
            ),
            (
                r#"{"id":"x","type":"outbound","tenant":"t","created_at":1,"data":{}}"#,
                "`type`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t/x","created_at":1,"data":{}}"#,
                "`tenant`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":"1","data":{}}"#,
                "`created_at`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":1.5,"data":{}}"#,
                "`created_at`",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":1,"data":[1]}"#,
                "`data`",
            ),
            (
                r#"{"id":7,"type":"a.b","tenant":"t","created_at":1,"data":{}}"#,
                "`id`",
            ),
            // Present but null: the wrong type, not missing.
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":1,"data":null}"#,
                "field `data` must be a JSON object",
            ),
            (
                r#"{"id":null,"type":"a.b","tenant":"t","created_at":1,"data":{}}"#,
                "field `id` must be a string",
            ),
            (
                r#"{"id":"x","type":"a.b","tenant":"t","created_at":null,"data":{}}"#,
                "field `created_at` must be an integer",
            ),
        ];
        for (raw, needle) in cases {
            let err = parse(raw.as_bytes(), 1 << 20).unwrap_err();
            assert!(err.0.contains(needle), "{raw}: {err}");
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let err = parse(GOOD.as_bytes(), 64).unwrap_err();
        assert!(err.0.contains("over the limit"), "{err}");
    }

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(crate::ids::EventId::parse(&a).is_ok() && a != b);
    }
}
