//! What the provider files share: splitting a payload into items, looking an item's event up
//! in a provider's table, and annotating the data with what the row implies.

use std::fmt;

use serde_json::{Map, Value};

use crate::normalize::ids::derived_id;
use crate::normalize::timestamp;
use crate::normalize::types::{NormalizeError, Normalized, Provider};

/// One row of a provider vocabulary: a provider event and where it lands in the catalog.
#[derive(Debug)]
pub(super) struct Row {
    /// What the provider calls it; CloudMailin has aliases (`rate_limit` / `rate_limited`).
    pub(super) names: &'static [&'static str],
    /// The provider's numeric code, where it has one.
    pub(super) code: Option<i64>,
    /// The SPEC 2 catalog type.
    pub(super) event_type: &'static str,
    /// SPEC 2's parenthesised notes for this row.
    pub(super) notes: &'static [Note],
}

pub(super) const fn row(
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
pub(super) enum Note {
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
    pub(super) fn field(self) -> (&'static str, &'static str) {
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
pub(super) enum EventKey<'a> {
    Name(&'a str),
    Code(i64),
}

impl<'a> EventKey<'a> {
    /// `None` when the value is neither a string nor an integer.
    pub(super) fn parse(value: &'a Value) -> Option<Self> {
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

    pub(super) fn lookup(self, table: &'static [Row]) -> Option<&'static Row> {
        table.iter().find(|row| match self {
            EventKey::Name(name) => row.names.contains(&name),
            EventKey::Code(code) => row.code == Some(code),
        })
    }
}

/// One provider event inside a payload, with where it sits for error messages.
pub(super) struct Item<'a> {
    /// `payload`, `item 3`, `events[2]` or `item 1, events[2]` (indexes count from 0).
    pub(super) at: String,
    pub(super) value: &'a Value,
}

impl<'a> Item<'a> {
    pub(super) fn object(&self) -> Result<&'a Map<String, Value>, NormalizeError> {
        match self.value {
            Value::Object(object) => Ok(object),
            other => Err(self.malformed(format!(
                "expected a JSON object, found {}",
                json_kind(other)
            ))),
        }
    }

    pub(super) fn malformed(&self, what: impl fmt::Display) -> NormalizeError {
        NormalizeError::Malformed(format!("{}: {what}", self.at))
    }

    /// The location of something nested in this item, e.g. a batch's `events[2]`.
    pub(super) fn nested(&self, inner: String) -> String {
        if self.at == TOP_LEVEL {
            inner
        } else {
            format!("{}, {inner}", self.at)
        }
    }
}

pub(super) const TOP_LEVEL: &str = "payload";

/// Splits a payload into its items: one object, or each element of an array.
pub(super) fn items(payload: &Value) -> Result<Vec<Item<'_>>, NormalizeError> {
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
pub(super) fn normalize_flat(
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
pub(super) fn annotate(
    mut data: Map<String, Value>,
    row: &Row,
    provider_event: &Value,
) -> Map<String, Value> {
    for note in row.notes {
        let (field, value) = note.field();
        data.insert(field.to_owned(), Value::from(value));
    }
    data.insert("provider_event".to_owned(), provider_event.clone());
    data
}

pub(super) fn unknown_event(provider: Provider, raw: &Value) -> NormalizeError {
    let event = match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    NormalizeError::UnknownEvent {
        provider: provider.name(),
        event,
    }
}

/// "a string", "an array", … for error messages.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
