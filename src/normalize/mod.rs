//! Provider-native delivery events to the normalized catalog (SPEC sections 2 and 7).
//!
//! Each provider file holds ONE table, its vocabulary row by row as SPEC 2 lists it, plus
//! what is particular to its payload shape. What they share is in `table` (items,
//! rows, annotations), `ids` (stable ids), `timestamp`, and `types` (providers, results,
//! errors); `input` reads `webhookd ingest`'s files.
//!
//! Every normalized event's `data` gets `provider_event`: the provider's own name or code
//! exactly as it appeared in the payload (`"CSHardBounced"`, `63` or `"63"`), so a receiver
//! can always see what the provider actually said, whatever we mapped it to.

mod cloudmailin;
mod ids;
mod input;
mod jetemail;
mod sendpost;
mod table;
mod timestamp;
mod types;

use serde_json::Value;

pub use input::parse_input;
pub use types::{NormalizeError, Normalized, Provider};

/// One payload (an object, a JSON array of objects, or for CloudMailin the `{"events":[…]}`
/// batch) to normalized events.
///
/// All-or-nothing: any bad item fails the whole call, so a caller never publishes half a
/// payload and then has to explain which half.
pub fn normalize(
    provider: Provider,
    payload: &Value,
    now: i64,
) -> Result<Vec<Normalized>, NormalizeError> {
    let items = match provider {
        Provider::CloudMailin => cloudmailin::items(payload)?,
        Provider::SendPost | Provider::JetEmail => table::items(payload)?,
    };
    items
        .iter()
        .map(|item| match provider {
            Provider::SendPost => sendpost::normalize_item(item, now),
            Provider::CloudMailin => cloudmailin::normalize_item(item, now),
            Provider::JetEmail => jetemail::normalize_item(item, now),
        })
        .collect()
}

/// Helpers the provider files' tests share.
#[cfg(test)]
mod testing {
    use super::{Normalized, Value};

    /// `now` in tests: distinct from every timestamp in the fixtures.
    pub(super) const NOW: i64 = 1_700_000_000;

    /// A payload from `tests/fixtures/providers/`.
    pub(super) fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `data.bounce_type`, `data.reason` and `data.stage`, the fields SPEC 2's notes set.
    pub(super) fn notes(event: &Normalized) -> [Option<&str>; 3] {
        ["bounce_type", "reason", "stage"]
            .map(|field| event.data.get(field).and_then(Value::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::ids::{derived_id, write_canonical};
    use testing::NOW;

    #[test]
    fn provider_names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(provider.name().parse::<Provider>(), Ok(provider));
            assert_eq!(provider.to_string(), provider.name());
        }
    }

    #[test]
    fn unknown_provider_is_named() {
        let err = "mailgun".parse::<Provider>().unwrap_err();
        assert_eq!(err, NormalizeError::UnknownProvider("mailgun".into()));
        assert!(err.to_string().contains("`mailgun`"));
        assert!(
            "SendPost".parse::<Provider>().is_err(),
            "names are lowercase"
        );
    }

    #[test]
    fn unknown_event_message_names_the_event() {
        let err = normalize(Provider::SendPost, &json!({"event": "CSBogus"}), NOW).unwrap_err();
        assert_eq!(err.to_string(), "unknown sendpost event `CSBogus`");
    }

    #[test]
    fn derived_ids_are_stable_and_independent_of_now_and_key_order() {
        let a: Value = serde_json::from_str(r#"{"event":"CSOpen","to":"x@example.com"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"to":"x@example.com","event":"CSOpen"}"#).unwrap();
        let first = normalize(Provider::SendPost, &a, NOW).unwrap();
        let again = normalize(Provider::SendPost, &b, NOW + 3600).unwrap();
        assert_eq!(first[0].id, again[0].id);
    }

    #[test]
    fn derived_ids_differ_for_different_events_and_providers() {
        let open = derived_id(Provider::SendPost, &json!({"event": "CSOpen", "to": "a@x"}));
        let other = derived_id(Provider::SendPost, &json!({"event": "CSOpen", "to": "b@x"}));
        let jet = derived_id(Provider::JetEmail, &json!({"event": "CSOpen", "to": "a@x"}));
        assert_ne!(open, other);
        assert!(jet.starts_with("jetemail_") && open.starts_with("sendpost_"));
    }

    #[test]
    fn derived_ids_are_valid_envelope_ids() {
        let id = derived_id(Provider::CloudMailin, &json!({"kind": "open"}));
        let hex = id.strip_prefix("cloudmailin_").expect("provider prefix");
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(crate::ids::EventId::parse(&id).is_ok());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value: Value =
            serde_json::from_str(r#"{"b":[{"z":1,"y":"é\""}],"a":{"d":null,"c":1.5}}"#).unwrap();
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"c":1.5,"d":null},"b":[{"y":"é\"","z":1}]}"#
        );
    }

    #[test]
    fn empty_array_is_nothing_to_publish() {
        for provider in Provider::ALL {
            assert_eq!(normalize(provider, &json!([]), NOW), Ok(vec![]));
        }
    }

    #[test]
    fn payload_that_is_not_object_or_array_is_malformed() {
        for provider in Provider::ALL {
            for payload in [json!("CSOpen"), json!(5), json!(null), json!(true)] {
                let err = normalize(provider, &payload, NOW).unwrap_err();
                assert!(
                    matches!(err, NormalizeError::Malformed(_)),
                    "{provider} {payload}"
                );
            }
        }
    }

    #[test]
    fn non_object_array_item_is_malformed_with_its_index() {
        let payload = json!([{"event": "CSOpen"}, [1]]);
        let err = normalize(Provider::SendPost, &payload, NOW).unwrap_err();
        assert_eq!(
            err,
            NormalizeError::Malformed("item 1: expected a JSON object, found an array".into())
        );
    }

    #[test]
    fn parse_input_reads_one_object() {
        let values = parse_input("{\"event\": \"CSOpen\"}\n").unwrap();
        assert_eq!(values, vec![json!({"event": "CSOpen"})]);
    }

    #[test]
    fn parse_input_reads_a_pretty_printed_object() {
        let values =
            parse_input("{\n  \"kind\": \"open\",\n  \"recipient\": \"a@x\"\n}\n").unwrap();
        assert_eq!(values, vec![json!({"kind": "open", "recipient": "a@x"})]);
    }

    #[test]
    fn parse_input_flattens_an_array() {
        let values = parse_input(r#"[{"event": 58}, {"event": 59}]"#).unwrap();
        assert_eq!(values, vec![json!({"event": 58}), json!({"event": 59})]);
    }

    #[test]
    fn parse_input_reads_json_lines() {
        let text = "{\"event\": 58}\n\n  {\"event\": \"CSSent\"}\r\n[{\"event\": 60}]\n";
        let values = parse_input(text).unwrap();
        assert_eq!(
            values,
            vec![
                json!({"event": 58}),
                json!({"event": "CSSent"}),
                json!({"event": 60})
            ]
        );
    }

    #[test]
    fn parse_input_of_nothing_is_empty() {
        assert_eq!(parse_input(""), Ok(vec![]));
        assert_eq!(parse_input(" \n\n"), Ok(vec![]));
    }

    #[test]
    fn parse_input_reports_bad_json_with_its_line() {
        let err = parse_input("{\"event\": 58}\n{\"event\": }\n").unwrap_err();
        let NormalizeError::Malformed(message) = err else {
            panic!("expected Malformed, got {err:?}")
        };
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn parse_input_refuses_bare_scalars() {
        let err = parse_input("{\"event\": 58}\n\"CSSent\"\n").unwrap_err();
        assert_eq!(
            err,
            NormalizeError::Malformed(
                "line 2: expected a JSON object or array, found a string".into()
            )
        );
    }

    #[test]
    fn parsed_input_normalizes_as_one_all_or_nothing_payload() {
        let values = parse_input("{\"event\": 58}\n{\"event\": 99}\n").unwrap();
        let err = normalize(Provider::SendPost, &Value::Array(values), NOW).unwrap_err();
        assert!(matches!(err, NormalizeError::UnknownEvent { .. }));
    }
}
