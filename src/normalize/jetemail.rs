//! JetEmail webhook envelopes (seed 002): `{id, service, type, created_at, data}`, already
//! namespaced the way the catalog is, so the table maps names onto themselves; it still
//! decides which of JetEmail's types webhookd accepts.

use serde_json::Value;

use crate::normalize::ids::derived_id;
use crate::normalize::table::{annotate, json_kind, row, EventKey, Item, Row};
use crate::normalize::timestamp;
use crate::normalize::types::{NormalizeError, Normalized, Provider};

/// SPEC 2's JetEmail column. JetEmail has no numeric codes and no notes: its bounces carry
/// their own `bounce_type` in `data`.
static TABLE: &[Row] = &[
    row(&["outbound.queued"], None, "outbound.queued", &[]),
    row(&["outbound.delivered"], None, "outbound.delivered", &[]),
    row(&["outbound.deferred"], None, "outbound.deferred", &[]),
    row(&["outbound.bounced"], None, "outbound.bounced", &[]),
    row(&["outbound.rejected"], None, "outbound.rejected", &[]),
    row(&["outbound.dropped"], None, "outbound.dropped", &[]),
    row(&["outbound.spam"], None, "outbound.spam", &[]),
    row(&["outbound.virus"], None, "outbound.virus", &[]),
    row(&["outbound.opened"], None, "outbound.opened", &[]),
    row(&["outbound.clicked"], None, "outbound.clicked", &[]),
    row(&["outbound.complaint"], None, "outbound.complaint", &[]),
    row(&["inbound.received"], None, "inbound.received", &[]),
    row(&["inbound.delivered"], None, "inbound.delivered", &[]),
    row(&["inbound.spam"], None, "inbound.spam", &[]),
    row(&["inbound.blocked"], None, "inbound.blocked", &[]),
];

/// The envelope's `data` becomes the event's data; its `id` is kept when SPEC 1 allows it
/// (an id JetEmail retries with is the best dedupe key there is), else one is derived.
pub(super) fn normalize_item(item: &Item<'_>, now: i64) -> Result<Normalized, NormalizeError> {
    let envelope = item.object()?;
    let raw_type = envelope
        .get("type")
        .ok_or_else(|| item.malformed("missing `type`"))?;
    let Value::String(event_type) = raw_type else {
        return Err(item.malformed(format_args!(
            "`type` must be a string, found {}",
            json_kind(raw_type)
        )));
    };
    let data = match envelope.get("data") {
        Some(Value::Object(data)) => data.clone(),
        Some(other) => {
            return Err(item.malformed(format_args!(
                "`data` must be an object, found {}",
                json_kind(other)
            )))
        }
        None => return Err(item.malformed("missing `data`")),
    };
    // `service` is redundant with `type`; when they disagree the envelope is broken and
    // guessing which one is right would misroute the event.
    if let Some(service) = envelope.get("service") {
        let namespace = event_type.split('.').next();
        if service.as_str() != namespace {
            return Err(item.malformed(format_args!(
                "`service` {service} does not match `type` \"{event_type}\""
            )));
        }
    }
    let created_at = match envelope.get("created_at") {
        None | Some(Value::Null) => now,
        Some(value) => timestamp::parse(value).ok_or_else(|| {
            item.malformed(format_args!(
                "`created_at` must be Unix seconds or an RFC 3339 time, found {value}"
            ))
        })?,
    };
    let row = EventKey::Name(event_type)
        .lookup(TABLE)
        .ok_or_else(|| crate::normalize::table::unknown_event(Provider::JetEmail, raw_type))?;
    let id = match envelope.get("id").and_then(Value::as_str) {
        Some(id) if crate::ids::EventId::parse(id).is_ok() => id.to_owned(),
        _ => derived_id(Provider::JetEmail, item.value),
    };
    Ok(Normalized {
        id,
        event_type: row.event_type.to_owned(),
        created_at,
        data: annotate(data, row, raw_type),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;
    use crate::normalize::testing::{fixture, notes, NOW};
    use serde_json::json;

    /// SPEC 2's JetEmail column, written out again so the test does not trust `TABLE`.
    const SPEC: &[&str] = &[
        "outbound.queued",
        "outbound.delivered",
        "outbound.deferred",
        "outbound.bounced",
        "outbound.rejected",
        "outbound.dropped",
        "outbound.spam",
        "outbound.virus",
        "outbound.opened",
        "outbound.clicked",
        "outbound.complaint",
        "inbound.received",
        "inbound.delivered",
        "inbound.spam",
        "inbound.blocked",
    ];

    fn envelope(event_type: &str) -> Value {
        json!({
            "id": "evt_1",
            "service": event_type.split('.').next().unwrap(),
            "type": event_type,
            "created_at": 1704825600,
            "data": {"uid": "message-uid"}
        })
    }

    fn one(payload: Value) -> Normalized {
        let mut events = normalize(Provider::JetEmail, &payload, NOW).unwrap();
        assert_eq!(events.len(), 1, "{payload}");
        events.remove(0)
    }

    #[test]
    fn every_spec_row_maps_onto_itself_without_notes() {
        for &event_type in SPEC {
            let normalized = one(envelope(event_type));
            assert_eq!(normalized.event_type, event_type);
            assert_eq!(notes(&normalized), [None, None, None], "{event_type}");
            assert_eq!(normalized.data["provider_event"], event_type);
        }
    }

    #[test]
    fn table_has_exactly_the_spec_rows() {
        assert_eq!(TABLE.len(), SPEC.len());
        for row in TABLE {
            assert!(
                SPEC.iter()
                    .any(|&t| row.names == [t] && row.code.is_none() && row.event_type == t),
                "{row:?} is not in SPEC 2"
            );
        }
    }

    #[test]
    fn every_seed_example_keeps_its_id_time_type_and_data() {
        let payload = fixture("jetemail_examples.json");
        let examples = payload.as_array().unwrap();
        assert_eq!(
            examples.len(),
            SPEC.len(),
            "seed 002 has one example per type"
        );
        let events = normalize(Provider::JetEmail, &payload, NOW).unwrap();
        for (event, example) in events.iter().zip(examples) {
            assert_eq!(event.id, example["id"]);
            assert_eq!(event.event_type, example["type"]);
            assert_eq!(event.created_at, example["created_at"]);
            let mut expected = example["data"].clone();
            expected["provider_event"] = example["type"].clone();
            assert_eq!(Value::Object(event.data.clone()), expected);
        }
    }

    #[test]
    fn seed_bounce_keeps_jetemails_own_bounce_type() {
        let payload = fixture("jetemail_examples.json");
        let bounce = payload
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "outbound.bounced")
            .unwrap();
        assert_eq!(notes(&one(bounce.clone())), [Some("hard"), None, None]);
    }

    #[test]
    fn ids_that_spec_1_refuses_are_replaced_by_stable_derived_ids() {
        for id in [
            json!("evt abc"),
            json!("x".repeat(129)),
            json!(""),
            json!(42),
            json!(null),
        ] {
            let mut payload = envelope("outbound.opened");
            payload["id"] = id.clone();
            let first = one(payload.clone());
            let again = normalize(Provider::JetEmail, &payload, NOW + 60).unwrap();
            assert!(first.id.starts_with("jetemail_"), "{id}: {}", first.id);
            assert_eq!(first.id, again[0].id, "{id}");
        }
        let mut payload = envelope("outbound.opened");
        payload.as_object_mut().unwrap().remove("id");
        let without = one(payload.clone());
        payload["data"]["uid"] = json!("other-uid");
        assert_ne!(without.id, one(payload).id);
    }

    #[test]
    fn created_at_may_be_rfc3339_or_absent() {
        let mut payload = envelope("outbound.queued");
        payload["created_at"] = json!("2024-01-09T18:40:00Z");
        assert_eq!(one(payload.clone()).created_at, 1704825600);
        payload.as_object_mut().unwrap().remove("created_at");
        assert_eq!(one(payload).created_at, NOW);
    }

    #[test]
    fn service_may_be_absent() {
        let mut payload = envelope("inbound.spam");
        payload.as_object_mut().unwrap().remove("service");
        assert_eq!(one(payload).event_type, "inbound.spam");
    }

    #[test]
    fn types_outside_the_jetemail_column_are_unknown() {
        for event_type in [
            "outbound.sent",
            "outbound.failed",
            "outbound.teleported",
            "queued",
        ] {
            let mut payload = envelope("outbound.queued");
            payload["type"] = json!(event_type);
            payload.as_object_mut().unwrap().remove("service");
            let err = normalize(Provider::JetEmail, &payload, NOW).unwrap_err();
            assert_eq!(
                err,
                NormalizeError::UnknownEvent {
                    provider: "jetemail",
                    event: event_type.into()
                }
            );
        }
    }

    #[test]
    fn malformed_envelopes_say_what_and_where() {
        let without = |field: &str| {
            let mut payload = envelope("outbound.queued");
            payload.as_object_mut().unwrap().remove(field);
            payload
        };
        let with = |field: &str, value: Value| {
            let mut payload = envelope("outbound.queued");
            payload[field] = value;
            payload
        };
        for (payload, message) in [
            (without("type"), "payload: missing `type`"),
            (without("data"), "payload: missing `data`"),
            (
                with("type", json!(1)),
                "payload: `type` must be a string, found a number",
            ),
            (
                with("data", json!("uid")),
                "payload: `data` must be an object, found a string",
            ),
            (
                with("service", json!("inbound")),
                "payload: `service` \"inbound\" does not match `type` \"outbound.queued\"",
            ),
            (
                with("created_at", json!("last tuesday")),
                "payload: `created_at` must be Unix seconds or an RFC 3339 time, found \"last tuesday\"",
            ),
            (
                json!([envelope("outbound.queued"), with("data", json!(null))]),
                "item 1: `data` must be an object, found null",
            ),
        ] {
            let err = normalize(Provider::JetEmail, &payload, NOW).unwrap_err();
            assert_eq!(err, NormalizeError::Malformed(message.into()), "{payload}");
        }
    }

    #[test]
    fn one_bad_envelope_fails_the_whole_array() {
        let mut bad = envelope("outbound.queued");
        bad["type"] = json!("outbound.teleported");
        bad.as_object_mut().unwrap().remove("service");
        let payload = json!([envelope("outbound.queued"), bad, envelope("inbound.spam")]);
        let err = normalize(Provider::JetEmail, &payload, NOW).unwrap_err();
        assert!(matches!(err, NormalizeError::UnknownEvent { .. }));
    }
}
