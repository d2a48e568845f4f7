//! CloudMailin outbound status events (seeds 001 and 003): flat objects whose `kind` is a
//! kind name or its numeric code, sent alone or as the `{"events":[…]}` batch.

use serde_json::Value;

use crate::normalize::table::{normalize_flat, row, Item, Note, Row};
use crate::normalize::types::{NormalizeError, Normalized, Provider};

/// SPEC 2's CloudMailin column. Codes come from the HTML comment in seed 003; `error` and
/// `bounce_reply` have none there, so only their names are accepted. `process` (1000) is
/// internal to CloudMailin but does reach webhooks, as a queued event at another stage.
static TABLE: &[Row] = &[
    row(&["registration"], Some(0), "outbound.queued", &[]),
    row(
        &["process"],
        Some(1000),
        "outbound.queued",
        &[Note::AtProcess],
    ),
    row(&["dispatch"], Some(1), "outbound.sent", &[]),
    row(&["delivery"], Some(10), "outbound.delivered", &[]),
    row(
        &["rate_limit", "rate_limited"],
        Some(3),
        "outbound.deferred",
        &[Note::RateLimited],
    ),
    row(
        &["dispatch_soft_bounce"],
        Some(6),
        "outbound.deferred",
        &[Note::AtDispatch],
    ),
    row(&["bounce"], Some(11), "outbound.bounced", &[Note::Hard]),
    row(
        &["soft_bounce"],
        Some(12),
        "outbound.bounced",
        &[Note::Soft],
    ),
    row(
        &["dispatch_bounce"],
        Some(5),
        "outbound.bounced",
        &[Note::Hard, Note::AtDispatch],
    ),
    row(
        &["retries_exhausted"],
        Some(40),
        "outbound.dropped",
        &[Note::RetriesExhausted],
    ),
    row(
        &["blocked", "suppressed"],
        Some(50),
        "outbound.dropped",
        &[Note::Suppressed],
    ),
    row(&["spamd"], Some(1001), "outbound.spam", &[]),
    row(&["error"], None, "outbound.failed", &[]),
    row(&["open"], Some(20), "outbound.opened", &[]),
    row(&["read"], Some(22), "outbound.read", &[]),
    row(&["click"], Some(21), "outbound.clicked", &[]),
    row(&["complaint"], Some(30), "outbound.complaint", &[]),
    row(&["auto_reply"], Some(60), "outbound.auto_reply", &[]),
    row(&["bounce_reply"], None, "outbound.bounce_reply", &[]),
];

/// The payload's kind objects, with every `{"events":[…]}` batch opened up, at the top
/// level or as an element of an array (JSON lines of batches arrive that way).
pub(super) fn items(payload: &Value) -> Result<Vec<Item<'_>>, NormalizeError> {
    let mut items = Vec::new();
    for item in crate::normalize::table::items(payload)? {
        match batch_events(&item)? {
            Some(events) => items.extend(events.iter().enumerate().map(|(i, value)| Item {
                at: item.nested(format!("events[{i}]")),
                value,
            })),
            None => items.push(item),
        }
    }
    Ok(items)
}

/// A batch is an object with `events` and no `kind`; its other fields, if any, are not
/// part of any one event and are not carried.
fn batch_events<'a>(item: &Item<'a>) -> Result<Option<&'a Vec<Value>>, NormalizeError> {
    let Value::Object(object) = item.value else {
        return Ok(None);
    };
    if object.contains_key("kind") {
        return Ok(None);
    }
    match object.get("events") {
        None => Ok(None),
        Some(Value::Array(events)) => Ok(Some(events)),
        Some(other) => Err(item.malformed(format_args!(
            "`events` must be an array, found {}",
            crate::normalize::table::json_kind(other)
        ))),
    }
}

pub(super) fn normalize_item(item: &Item<'_>, now: i64) -> Result<Normalized, NormalizeError> {
    normalize_flat(Provider::CloudMailin, TABLE, "kind", item, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;
    use crate::normalize::testing::{fixture, notes, NOW};
    use serde_json::json;

    /// SPEC 2's CloudMailin column (with the `process` sentence below it), written out again
    /// so the test does not trust `TABLE`: names, code, type, `[bounce_type, reason, stage]`.
    #[allow(clippy::type_complexity)]
    const SPEC: &[(&[&str], Option<i64>, &str, [Option<&str>; 3])] = &[
        (
            &["registration"],
            Some(0),
            "outbound.queued",
            [None, None, None],
        ),
        (
            &["process"],
            Some(1000),
            "outbound.queued",
            [None, None, Some("process")],
        ),
        (&["dispatch"], Some(1), "outbound.sent", [None, None, None]),
        (
            &["delivery"],
            Some(10),
            "outbound.delivered",
            [None, None, None],
        ),
        (
            &["rate_limit", "rate_limited"],
            Some(3),
            "outbound.deferred",
            [None, Some("rate_limited"), None],
        ),
        (
            &["dispatch_soft_bounce"],
            Some(6),
            "outbound.deferred",
            [None, None, Some("dispatch")],
        ),
        (
            &["bounce"],
            Some(11),
            "outbound.bounced",
            [Some("hard"), None, None],
        ),
        (
            &["soft_bounce"],
            Some(12),
            "outbound.bounced",
            [Some("soft"), None, None],
        ),
        (
            &["dispatch_bounce"],
            Some(5),
            "outbound.bounced",
            [Some("hard"), None, Some("dispatch")],
        ),
        (
            &["retries_exhausted"],
            Some(40),
            "outbound.dropped",
            [None, Some("retries_exhausted"), None],
        ),
        (
            &["blocked", "suppressed"],
            Some(50),
            "outbound.dropped",
            [None, Some("suppressed"), None],
        ),
        (&["spamd"], Some(1001), "outbound.spam", [None, None, None]),
        (&["error"], None, "outbound.failed", [None, None, None]),
        (&["open"], Some(20), "outbound.opened", [None, None, None]),
        (&["read"], Some(22), "outbound.read", [None, None, None]),
        (&["click"], Some(21), "outbound.clicked", [None, None, None]),
        (
            &["complaint"],
            Some(30),
            "outbound.complaint",
            [None, None, None],
        ),
        (
            &["auto_reply"],
            Some(60),
            "outbound.auto_reply",
            [None, None, None],
        ),
        (
            &["bounce_reply"],
            None,
            "outbound.bounce_reply",
            [None, None, None],
        ),
    ];

    fn one(payload: Value) -> Normalized {
        let mut events = normalize(Provider::CloudMailin, &payload, NOW).unwrap();
        assert_eq!(events.len(), 1, "{payload}");
        events.remove(0)
    }

    #[test]
    fn every_spec_row_by_each_name_and_code() {
        for &(names, code, event_type, expected_notes) in SPEC {
            let by_code = code
                .into_iter()
                .flat_map(|c| [json!(c), json!(c.to_string())]);
            for kind in names.iter().map(|n| json!(n)).chain(by_code) {
                let normalized = one(json!({"kind": kind, "recipient": "a@example.com"}));
                assert_eq!(normalized.event_type, event_type, "{kind}");
                assert_eq!(notes(&normalized), expected_notes, "{kind}");
                assert_eq!(normalized.data["provider_event"], kind, "kept as given");
            }
        }
    }

    #[test]
    fn table_has_exactly_the_spec_rows() {
        assert_eq!(TABLE.len(), SPEC.len());
        for row in TABLE {
            assert!(
                SPEC.iter()
                    .any(|&(names, code, event_type, _)| row.names == names
                        && row.code == code
                        && row.event_type == event_type),
                "{row:?} is not in SPEC 2"
            );
        }
    }

    #[test]
    fn seed_batch_normalizes_to_a_queued_event() {
        let events = normalize(
            Provider::CloudMailin,
            &fixture("cloudmailin_batch.json"),
            NOW,
        );
        let events = events.unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.event_type, "outbound.queued");
        assert_eq!(event.created_at, NOW, "the seed carries no timestamp");
        assert_eq!(
            Value::Object(event.data.clone()),
            json!({
                "recipient": "debug@smtp",
                "message_id": "b47c8008-84af-47aa-b39a-b0a3f358a0ee",
                "provider_event": "registration"
            })
        );
    }

    #[test]
    fn every_seed_kind_in_one_batch() {
        let expected = [
            "outbound.queued",
            "outbound.sent",
            "outbound.deferred",
            "outbound.deferred",
            "outbound.delivered",
            "outbound.bounced",
            "outbound.bounced",
            "outbound.deferred",
            "outbound.failed",
            "outbound.dropped",
            "outbound.opened",
            "outbound.read",
            "outbound.clicked",
            "outbound.auto_reply",
            "outbound.bounce_reply",
            "outbound.dropped",
            "outbound.dropped",
            "outbound.spam",
            "outbound.bounced",
            "outbound.complaint",
            "outbound.queued",
        ];
        let payload = fixture("cloudmailin_kinds.json");
        let events = normalize(Provider::CloudMailin, &payload, NOW).unwrap();
        let originals = payload["events"].as_array().unwrap();
        assert_eq!(events.len(), expected.len());
        for ((event, event_type), original) in events.iter().zip(expected).zip(originals) {
            assert_eq!(event.event_type, event_type, "{original}");
            assert_eq!(event.created_at, 1704825600, "{original}");
            for (field, value) in original.as_object().unwrap() {
                if field != "kind" {
                    assert_eq!(&event.data[field], value, "{field} carried into data");
                }
            }
        }
    }

    #[test]
    fn a_single_kind_object_and_an_array_of_batches() {
        assert_eq!(one(json!({"kind": 11})).event_type, "outbound.bounced");
        let payload = json!([
            {"events": [{"kind": "open"}, {"kind": "click"}]},
            {"kind": "delivery"},
            {"events": []}
        ]);
        let types: Vec<_> = normalize(Provider::CloudMailin, &payload, NOW)
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            ["outbound.opened", "outbound.clicked", "outbound.delivered"]
        );
    }

    #[test]
    fn empty_batch_is_nothing_to_publish() {
        assert_eq!(
            normalize(Provider::CloudMailin, &json!({"events": []}), NOW),
            Ok(vec![])
        );
    }

    #[test]
    fn ids_are_per_event_and_stable_across_batches() {
        let open = json!({"kind": "open", "message_id": "m-1", "created_at": 1704825600});
        let click = json!({"kind": "click", "message_id": "m-1", "created_at": 1704825600});
        let alone = one(open.clone());
        let batch = json!({"events": [click, open]});
        let batched = normalize(Provider::CloudMailin, &batch, NOW + 1).unwrap();
        assert_eq!(
            batched[1].id, alone.id,
            "same event, same id, wherever it came from"
        );
        assert_ne!(batched[0].id, batched[1].id);
        assert!(alone.id.starts_with("cloudmailin_"));
    }

    #[test]
    fn unknown_kinds_are_named() {
        for (kind, named) in [
            (json!("teleport"), "teleport"),
            (json!("Bounce"), "Bounce"),
            (json!(2), "2"),
            (json!("999"), "999"),
        ] {
            let err = normalize(Provider::CloudMailin, &json!({"kind": kind}), NOW).unwrap_err();
            assert_eq!(
                err,
                NormalizeError::UnknownEvent {
                    provider: "cloudmailin",
                    event: named.into()
                }
            );
        }
    }

    #[test]
    fn malformed_payloads_say_what_and_where() {
        for (payload, message) in [
            (json!({"recipient": "a@x"}), "payload: missing `kind`"),
            (
                json!({"kind": ["open"]}),
                "payload: `kind` must be an event name or an integer code, found an array",
            ),
            (
                json!({"events": {"kind": "open"}}),
                "payload: `events` must be an array, found an object",
            ),
            (
                json!({"events": [{"kind": "open"}, {"kind": "click"}, {"recipient": "a@x"}]}),
                "events[2]: missing `kind`",
            ),
            (
                json!([{"kind": "open"}, {"events": [{"kind": "open"}, 7]}]),
                "item 1, events[1]: expected a JSON object, found a number",
            ),
        ] {
            let err = normalize(Provider::CloudMailin, &payload, NOW).unwrap_err();
            assert_eq!(err, NormalizeError::Malformed(message.into()), "{payload}");
        }
    }

    #[test]
    fn one_bad_event_fails_the_whole_batch() {
        let payload =
            json!({"events": [{"kind": "delivery"}, {"kind": "teleport"}, {"kind": "open"}]});
        let err = normalize(Provider::CloudMailin, &payload, NOW).unwrap_err();
        assert_eq!(
            err,
            NormalizeError::UnknownEvent {
                provider: "cloudmailin",
                event: "teleport".into()
            }
        );
    }
}
