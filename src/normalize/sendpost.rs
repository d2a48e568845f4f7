//! SendPost Custom SMTP events (seed 000): flat objects whose `event` is a `CS*` name or
//! its numeric id 58–68, as a JSON number or a string of digits.

use crate::normalize::table::{normalize_flat, row, Item, Note, Row};
use crate::normalize::types::{NormalizeError, Normalized, Provider};

/// SPEC 2's SendPost column. `CSDropped` sets no `reason`: SendPost uses it both for a
/// relay that failed after all retries and for pre-send refusals, and does not say which.
static TABLE: &[Row] = &[
    row(&["CSProcessed"], Some(58), "outbound.queued", &[]),
    row(&["CSSent"], Some(59), "outbound.sent", &[]),
    row(&["CSDelivered"], Some(60), "outbound.delivered", &[]),
    row(&["CSDeferred"], Some(61), "outbound.deferred", &[]),
    row(&["CSDropped"], Some(62), "outbound.dropped", &[]),
    row(
        &["CSHardBounced"],
        Some(63),
        "outbound.bounced",
        &[Note::Hard],
    ),
    row(
        &["CSSoftBounced"],
        Some(64),
        "outbound.bounced",
        &[Note::Soft],
    ),
    row(&["CSOpen"], Some(65), "outbound.opened", &[]),
    row(&["CSClick"], Some(66), "outbound.clicked", &[]),
    row(&["CSSpamReport"], Some(67), "outbound.complaint", &[]),
    row(&["CSUnsubscribe"], Some(68), "outbound.unsubscribed", &[]),
];

pub(super) fn normalize_item(item: &Item<'_>, now: i64) -> Result<Normalized, NormalizeError> {
    normalize_flat(Provider::SendPost, TABLE, "event", item, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;
    use crate::normalize::testing::{fixture, notes, NOW};
    use serde_json::{json, Value};

    /// SPEC 2's SendPost column, written out again so the test does not trust `TABLE`:
    /// name, id, type, and the `[bounce_type, reason, stage]` notes.
    const SPEC: &[(&str, i64, &str, [Option<&str>; 3])] = &[
        ("CSProcessed", 58, "outbound.queued", [None, None, None]),
        ("CSSent", 59, "outbound.sent", [None, None, None]),
        ("CSDelivered", 60, "outbound.delivered", [None, None, None]),
        ("CSDeferred", 61, "outbound.deferred", [None, None, None]),
        ("CSDropped", 62, "outbound.dropped", [None, None, None]),
        (
            "CSHardBounced",
            63,
            "outbound.bounced",
            [Some("hard"), None, None],
        ),
        (
            "CSSoftBounced",
            64,
            "outbound.bounced",
            [Some("soft"), None, None],
        ),
        ("CSOpen", 65, "outbound.opened", [None, None, None]),
        ("CSClick", 66, "outbound.clicked", [None, None, None]),
        ("CSSpamReport", 67, "outbound.complaint", [None, None, None]),
        (
            "CSUnsubscribe",
            68,
            "outbound.unsubscribed",
            [None, None, None],
        ),
    ];

    fn one(payload: Value) -> Normalized {
        let mut events = normalize(Provider::SendPost, &payload, NOW).unwrap();
        assert_eq!(events.len(), 1, "{payload}");
        events.remove(0)
    }

    #[test]
    fn every_spec_row_by_name_by_id_and_by_digit_string() {
        for &(name, id, event_type, expected_notes) in SPEC {
            for event in [json!(name), json!(id), json!(id.to_string())] {
                let normalized = one(json!({"event": event, "to": "x@example.com"}));
                assert_eq!(normalized.event_type, event_type, "{event}");
                assert_eq!(notes(&normalized), expected_notes, "{event}");
                assert_eq!(normalized.data["provider_event"], event, "kept as given");
            }
        }
    }

    #[test]
    fn table_has_exactly_the_spec_rows() {
        assert_eq!(TABLE.len(), SPEC.len());
        for row in TABLE {
            assert!(
                SPEC.iter()
                    .any(|&(name, id, event_type, _)| row.names == [name]
                        && row.code == Some(id)
                        && row.event_type == event_type),
                "{row:?} is not in SPEC 2"
            );
        }
    }

    #[test]
    fn seed_events_normalize_with_their_fields_in_data() {
        let expected = [
            ("outbound.queued", 1704825600),
            ("outbound.sent", 1704825601),
            ("outbound.delivered", 1704825602),
            ("outbound.deferred", 1704825603),
            ("outbound.dropped", 1704825604),
            ("outbound.bounced", 1704825605),
            ("outbound.bounced", 1704825606),
            ("outbound.opened", 1704825607),
            ("outbound.clicked", 1704825608),
            ("outbound.complaint", 1704825609),
            ("outbound.unsubscribed", NOW),
        ];
        let payload = fixture("sendpost_events.json");
        let events = normalize(Provider::SendPost, &payload, NOW).unwrap();
        assert_eq!(events.len(), expected.len());
        for ((event, (event_type, created_at)), original) in
            events.iter().zip(expected).zip(payload.as_array().unwrap())
        {
            assert_eq!(event.event_type, event_type);
            assert_eq!(event.created_at, created_at, "{original}");
            assert_eq!(event.data["provider_event"], original["event"]);
            assert!(
                !event.data.contains_key("event"),
                "`event` becomes provider_event"
            );
            for (field, value) in original.as_object().unwrap() {
                if field != "event" {
                    assert_eq!(&event.data[field], value, "{field} carried into data");
                }
            }
        }
    }

    #[test]
    fn the_note_wins_over_a_contradicting_provider_field() {
        let event = one(json!({"event": "CSHardBounced", "bounce_type": "soft"}));
        assert_eq!(event.data["bounce_type"], "hard");
    }

    #[test]
    fn a_provider_reason_on_csdropped_is_kept() {
        let event = one(json!({"event": "CSDropped", "reason": "relay failed"}));
        assert_eq!(event.data["reason"], "relay failed");
    }

    #[test]
    fn same_event_twice_gets_the_same_id() {
        let payload =
            json!({"event": "CSDelivered", "messageId": "m-1", "submittedAt": 1704825600});
        let first = one(payload.clone());
        let again = normalize(Provider::SendPost, &payload, NOW + 60).unwrap();
        assert_eq!(first.id, again[0].id);
        assert!(first.id.starts_with("sendpost_"));
    }

    #[test]
    fn different_events_get_different_ids() {
        let delivered = one(json!({"event": "CSDelivered", "messageId": "m-1"}));
        let opened = one(json!({"event": "CSOpen", "messageId": "m-1"}));
        let by_id = one(json!({"event": 60, "messageId": "m-1"}));
        assert_ne!(delivered.id, opened.id);
        // A different payload, so a different id, though the same kind of event.
        assert_ne!(delivered.id, by_id.id);
    }

    #[test]
    fn unknown_events_are_named() {
        for (event, named) in [
            (json!("CSBogus"), "CSBogus"),
            (json!("cshardbounced"), "cshardbounced"),
            (json!(99), "99"),
            (json!("57"), "57"),
            (json!(-1), "-1"),
            (json!("99999999999999999999"), "99999999999999999999"),
        ] {
            let err = normalize(Provider::SendPost, &json!({"event": event}), NOW).unwrap_err();
            assert_eq!(
                err,
                NormalizeError::UnknownEvent {
                    provider: "sendpost",
                    event: named.into()
                }
            );
        }
    }

    #[test]
    fn malformed_events_say_what_and_where() {
        for (payload, message) in [
            (json!({"to": "x@example.com"}), "payload: missing `event`"),
            (
                json!({"event": 63.5}),
                "payload: `event` must be an event name or an integer code, found a number",
            ),
            (
                json!({"event": {"type": 63}}),
                "payload: `event` must be an event name or an integer code, found an object",
            ),
            (
                json!([{"event": 58}, {"event": null}]),
                "item 1: `event` must be an event name or an integer code, found null",
            ),
            (
                json!([{"event": 58}, "CSSent"]),
                "item 1: expected a JSON object, found a string",
            ),
        ] {
            let err = normalize(Provider::SendPost, &payload, NOW).unwrap_err();
            assert_eq!(err, NormalizeError::Malformed(message.into()), "{payload}");
        }
    }

    #[test]
    fn one_bad_item_fails_the_whole_array() {
        let payload = json!([{"event": 58}, {"event": "CSBogus"}, {"event": 60}]);
        let err = normalize(Provider::SendPost, &payload, NOW).unwrap_err();
        assert!(matches!(err, NormalizeError::UnknownEvent { .. }));
    }
}
