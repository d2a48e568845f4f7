//! Provider-native delivery events to the normalized catalog (SPEC sections 2 and 7).
//!
//! Each provider file holds ONE table, its vocabulary row by row as SPEC 2 lists it, plus
//! what is particular to its payload shape. This file holds what they share: splitting a
//! payload into items, looking rows up, stable ids, timestamps and the error type.
//!
//! Every normalized event's `data` gets `provider_event`: the provider's own name or code
//! exactly as it appeared in the payload (`"CSHardBounced"`, `63` or `"63"`), so a receiver
//! can always see what the provider actually said, whatever we mapped it to.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

mod cloudmailin;
mod jetemail;
mod sendpost;

/// A provider whose native webhook payloads webhookd accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    SendPost,
    CloudMailin,
    JetEmail,
}

impl Provider {
    pub const ALL: [Provider; 3] = [
        Provider::SendPost,
        Provider::CloudMailin,
        Provider::JetEmail,
    ];

    /// The name used in `/v1/ingest/{provider}`, `--provider` and derived event ids.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::SendPost => "sendpost",
            Provider::CloudMailin => "cloudmailin",
            Provider::JetEmail => "jetemail",
        }
    }
}

impl FromStr for Provider {
    type Err = NormalizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| NormalizeError::UnknownProvider(s.to_owned()))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A normalized event, ready to be wrapped into the SPEC 1 envelope with a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// Valid per SPEC 1: 1–128 chars of `[A-Za-z0-9_.:-]`; stable for the same provider event.
    pub id: String,
    /// A SPEC 2 catalog type such as `outbound.bounced`.
    pub event_type: String,
    /// Unix seconds: from the payload when it has a timestamp, else `now`.
    pub created_at: i64,
    pub data: Map<String, Value>,
}

/// Why a payload could not be normalized. Nothing is published when any item fails.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("unknown provider `{0}` (expected sendpost, cloudmailin or jetemail)")]
    UnknownProvider(String),
    #[error("unknown {provider} event `{event}`")]
    UnknownEvent {
        provider: &'static str,
        event: String,
    },
    #[error("malformed payload: {0}")]
    Malformed(String),
}

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
        Provider::SendPost | Provider::JetEmail => items(payload)?,
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

/// CLI input text: one JSON value (object or array) or JSON lines (one value per non-empty
/// line).
///
/// Top-level arrays are flattened, so the result is a list of payload objects and
/// `normalize(provider, &Value::Array(values), now)` handles a whole file at once,
/// all-or-nothing. Empty input gives an empty list.
pub fn parse_input(text: &str) -> Result<Vec<Value>, NormalizeError> {
    // A stream deserializer reads one pretty-printed document and JSON lines alike, and its
    // errors carry the line and column in the whole text, not in one line of it.
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let value = next.map_err(|e| NormalizeError::Malformed(format!("invalid JSON: {e}")))?;
        match value {
            Value::Array(items) => values.extend(items),
            Value::Object(_) => values.push(value),
            other => {
                let line = line_of(text, start);
                return Err(NormalizeError::Malformed(format!(
                    "line {line}: expected a JSON object or array, found {}",
                    json_kind(&other)
                )));
            }
        }
    }
    Ok(values)
}

/// The 1-based line of the first non-whitespace byte at or after `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let rest = &text[offset..];
    let value_at = offset + (rest.len() - rest.trim_start().len());
    1 + text[..value_at].matches('\n').count()
}

/// One row of a provider vocabulary: a provider event and where it lands in the catalog.
#[derive(Debug)]
struct Row {
    /// What the provider calls it; CloudMailin has aliases (`rate_limit` / `rate_limited`).
    names: &'static [&'static str],
    /// The provider's numeric code, where it has one.
    code: Option<i64>,
    /// The SPEC 2 catalog type.
    event_type: &'static str,
    /// SPEC 2's parenthesised notes for this row.
    notes: &'static [Note],
}

const fn row(
    names: &'static [&'static str],
    code: Option<i64>,
    event_type: &'static str,
    notes: &'static [Note],
) -> Row {
    Row {
        names,
        code,
        event_type,
        notes,
    }
}

/// A fact a provider event implies that its catalog type alone does not (SPEC 2's
/// parentheses): a CloudMailin `dispatch_bounce` is an `outbound.bounced` that is hard and
/// happened at dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Note {
    Hard,
    Soft,
    RateLimited,
    RetriesExhausted,
    Suppressed,
    AtDispatch,
    AtProcess,
}

impl Note {
    /// The `data` field and value this note sets.
    fn field(self) -> (&'static str, &'static str) {
        match self {
            Note::Hard => ("bounce_type", "hard"),
            Note::Soft => ("bounce_type", "soft"),
            Note::RateLimited => ("reason", "rate_limited"),
            Note::RetriesExhausted => ("reason", "retries_exhausted"),
            Note::Suppressed => ("reason", "suppressed"),
            Note::AtDispatch => ("stage", "dispatch"),
            Note::AtProcess => ("stage", "process"),
        }
    }
}

/// How a payload named its event: by name, or by numeric code (a JSON integer or a string
/// of digits, since providers send both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKey<'a> {
    Name(&'a str),
    Code(i64),
}

impl<'a> EventKey<'a> {
    /// `None` when the value is neither a string nor an integer.
    fn parse(value: &'a Value) -> Option<Self> {
        match value {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                // Too many digits for an i64 is no known code either; keep it a name so the
                // error names it as given.
                Some(s.parse().map_or(EventKey::Name(s), EventKey::Code))
            }
            Value::String(s) => Some(EventKey::Name(s)),
            Value::Number(n) => n.as_i64().map(EventKey::Code),
            _ => None,
        }
    }

    fn lookup(self, table: &'static [Row]) -> Option<&'static Row> {
        table.iter().find(|row| match self {
            EventKey::Name(name) => row.names.contains(&name),
            EventKey::Code(code) => row.code == Some(code),
        })
    }
}

/// One provider event inside a payload, with where it sits for error messages.
struct Item<'a> {
    /// `payload`, `item 3`, `events[2]` or `item 1, events[2]` (indexes count from 0).
    at: String,
    value: &'a Value,
}

impl<'a> Item<'a> {
    fn object(&self) -> Result<&'a Map<String, Value>, NormalizeError> {
        match self.value {
            Value::Object(object) => Ok(object),
            other => Err(self.malformed(format!(
                "expected a JSON object, found {}",
                json_kind(other)
            ))),
        }
    }

    fn malformed(&self, what: impl fmt::Display) -> NormalizeError {
        NormalizeError::Malformed(format!("{}: {what}", self.at))
    }

    /// The location of something nested in this item, e.g. a batch's `events[2]`.
    fn nested(&self, inner: String) -> String {
        if self.at == TOP_LEVEL {
            inner
        } else {
            format!("{}, {inner}", self.at)
        }
    }
}

const TOP_LEVEL: &str = "payload";

/// Splits a payload into its items: one object, or each element of an array.
fn items(payload: &Value) -> Result<Vec<Item<'_>>, NormalizeError> {
    match payload {
        Value::Object(_) => Ok(vec![Item {
            at: TOP_LEVEL.to_owned(),
            value: payload,
        }]),
        Value::Array(values) => Ok(values
            .iter()
            .enumerate()
            .map(|(i, value)| Item {
                at: format!("item {i}"),
                value,
            })
            .collect()),
        other => Err(NormalizeError::Malformed(format!(
            "{TOP_LEVEL}: expected a JSON object or an array of objects, found {}",
            json_kind(other)
        ))),
    }
}

/// Normalizes the flat shape SendPost and CloudMailin share: an object whose `field` names
/// the event (by name or code) and whose other fields are the event's data.
fn normalize_flat(
    provider: Provider,
    table: &'static [Row],
    field: &str,
    item: &Item<'_>,
    now: i64,
) -> Result<Normalized, NormalizeError> {
    let object = item.object()?;
    let raw = object
        .get(field)
        .ok_or_else(|| item.malformed(format_args!("missing `{field}`")))?;
    let key = EventKey::parse(raw).ok_or_else(|| {
        item.malformed(format_args!(
            "`{field}` must be an event name or an integer code, found {}",
            json_kind(raw)
        ))
    })?;
    let row = key
        .lookup(table)
        .ok_or_else(|| unknown_event(provider, raw))?;
    let data = object
        .iter()
        .filter(|(name, _)| name.as_str() != field)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Ok(Normalized {
        id: derived_id(provider, item.value),
        event_type: row.event_type.to_owned(),
        created_at: timestamp::from_fields(object).unwrap_or(now),
        data: annotate(data, row, raw),
    })
}

/// Adds the row's notes and `provider_event` to the provider's fields. Ours win over a
/// provider field of the same name: a `CSHardBounced` is hard whatever else it says, and
/// receivers filter on these values.
fn annotate(mut data: Map<String, Value>, row: &Row, provider_event: &Value) -> Map<String, Value> {
    for note in row.notes {
        let (field, value) = note.field();
        data.insert(field.to_owned(), Value::from(value));
    }
    data.insert("provider_event".to_owned(), provider_event.clone());
    data
}

fn unknown_event(provider: Provider, raw: &Value) -> NormalizeError {
    let event = match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    NormalizeError::UnknownEvent {
        provider: provider.name(),
        event,
    }
}

/// `<provider>_` + 32 hex chars of SHA-256 over the item's canonical JSON.
///
/// Derived from content alone (never from `now`), so a provider retrying its webhook or an
/// operator re-running `webhookd ingest` on the same file yields the same id, and the
/// dispatcher's 24 h dedupe (SPEC 1) delivers it once.
fn derived_id(provider: Provider, item: &Value) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut canonical = Vec::new();
    write_canonical(item, &mut canonical);
    let digest = Sha256::digest(&canonical);
    let mut id = format!("{}_", provider.name());
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// Compact JSON with object keys sorted at every level.
///
/// Written by hand rather than `serde_json::to_vec` because Cargo feature unification can
/// turn on serde_json's `preserve_order` (some dependency of the main crate does), and then
/// key order would follow the input and the same event could get two ids.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => {
            let mut fields: Vec<_> = object.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(name.clone()), out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(values) => {
            out.push(b'[');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(value, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(scalar: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(out, scalar).expect("serializing a JSON scalar into a Vec cannot fail");
}

/// "a string", "an array", … for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Event times as providers write them, to Unix seconds.
mod timestamp {
    use serde_json::{Map, Value};

    /// Fields that commonly hold a flat provider event's time, most specific first.
    const FIELDS: &[&str] = &[
        "timestamp",
        "created_at",
        "createdAt",
        "submittedAt",
        "submitted_at",
        "time",
    ];

    /// A seconds value this large is far past year 5000: it must be milliseconds.
    const MILLIS_FROM: i64 = 100_000_000_000;

    /// The first of [`FIELDS`] that holds a usable time. A field that does not parse is
    /// skipped, not an error: these are the provider's fields, not a schema we own.
    pub(super) fn from_fields(object: &Map<String, Value>) -> Option<i64> {
        FIELDS
            .iter()
            .filter_map(|field| object.get(*field))
            .find_map(parse)
    }

    /// Unix seconds (or milliseconds) as a number or a string of digits, or an RFC 3339
    /// time. Times before 1970 are refused: no delivery event happened then.
    pub(super) fn parse(value: &Value) -> Option<i64> {
        let seconds = match value {
            Value::Number(n) => match n.as_i64() {
                Some(whole) => whole,
                // Fractional seconds; the cast saturates, and the range check below
                // refuses what is out of range.
                None => n.as_f64().filter(|f| f.is_finite())?.floor() as i64,
            },
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()?
            }
            Value::String(s) => rfc3339(s)?,
            _ => return None,
        };
        let seconds = if seconds >= MILLIS_FROM {
            seconds / 1000
        } else {
            seconds
        };
        (seconds >= 0).then_some(seconds)
    }

    /// RFC 3339 to Unix seconds; a space in place of the `T` is accepted too.
    fn rfc3339(s: &str) -> Option<i64> {
        let normalized = match s.as_bytes().get(10) {
            Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
            _ => s.to_string(),
        };
        crate::support::clock::parse_rfc3339(&normalized).map(|ms| ms.div_euclid(1000))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn unix_seconds_as_number_or_digits() {
            assert_eq!(parse(&json!(1704825600)), Some(1704825600));
            assert_eq!(parse(&json!("1704825600")), Some(1704825600));
            assert_eq!(parse(&json!(1704825600.75)), Some(1704825600));
        }

        #[test]
        fn milliseconds_are_recognised() {
            assert_eq!(parse(&json!(1704825600123_i64)), Some(1704825600));
        }

        #[test]
        fn rfc3339_in_utc_and_with_offsets() {
            assert_eq!(parse(&json!("2024-01-09T18:40:00Z")), Some(1704825600));
            assert_eq!(
                parse(&json!("2024-01-09T18:40:00.123456z")),
                Some(1704825600)
            );
            assert_eq!(parse(&json!("2024-01-09 20:40:00+02:00")), Some(1704825600));
            assert_eq!(parse(&json!("2024-01-09T13:10:00-05:30")), Some(1704825600));
            assert_eq!(parse(&json!("2000-02-29T00:00:00Z")), Some(951782400));
            assert_eq!(parse(&json!("1970-01-01T00:00:00Z")), Some(0));
        }

        #[test]
        fn nonsense_is_not_a_time() {
            for bad in [
                json!("yesterday"),
                json!("2024-13-01T00:00:00Z"),
                json!("2023-02-29T00:00:00Z"),
                json!("2024-01-09T18:40:00"),
                json!("2024-01-09T18:40:00+0200"),
                json!("2024-01-09T18:40:00.Z"),
                json!("1969-12-31T23:59:59Z"),
                json!(-5),
                json!(""),
                json!(true),
                json!(null),
                json!({"seconds": 1}),
            ] {
                assert_eq!(parse(&bad), None, "{bad}");
            }
        }

        #[test]
        fn first_usable_field_wins() {
            let object = json!({"time": 1704825600, "timestamp": "soon", "other": 5});
            assert_eq!(from_fields(object.as_object().unwrap()), Some(1704825600));
            let object = json!({"submittedAt": "2024-01-09T18:40:00Z"});
            assert_eq!(from_fields(object.as_object().unwrap()), Some(1704825600));
            assert_eq!(from_fields(json!({"at": 5}).as_object().unwrap()), None);
        }
    }
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
        assert!(crate::event::valid_id(&id));
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
