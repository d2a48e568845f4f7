//! What a stream entry holds: a valid event, or something set aside on the invalid stream with
//! the reason (SPEC 1), so bad input is never lost and never blocks the stream.

use redis::streams::StreamId;
use redis::Value;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::{self, Event};

#[derive(Debug)]
pub(crate) enum Entry {
    Valid(Event),
    Invalid {
        reason: String,
        raw: Vec<u8>,
    },
    /// A pending entry whose data was trimmed away: nothing left to deliver.
    Trimmed,
}

pub(crate) fn classify(entry: &StreamId, max_event_bytes: usize) -> Entry {
    match entry.map.get("event") {
        Some(Value::BulkString(raw)) => parsed(raw, max_event_bytes),
        Some(Value::SimpleString(s)) => parsed(s.as_bytes(), max_event_bytes),
        None if entry.map.is_empty() => Entry::Trimmed,
        _ => {
            let mut fields: Vec<String> = entry
                .map
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            fields.sort();
            Entry::Invalid {
                reason: "entry has no `event` field".into(),
                raw: fields.join(" ").into_bytes(),
            }
        }
    }
}

fn parsed(raw: &[u8], max_event_bytes: usize) -> Entry {
    match event::parse(raw, max_event_bytes) {
        Ok(ev) => Entry::Valid(ev),
        Err(why) => Entry::Invalid {
            reason: why.0,
            raw: raw.to_vec(),
        },
    }
}

/// An entry set aside: its stream id, the reason, what it held.
pub(crate) type SetAside = (String, String, Vec<u8>);

/// Writes invalid entries to the invalid stream (capped at `max_len`) in one round trip.
pub(crate) async fn set_aside(
    conn: &Conn,
    keys: &Keys,
    max_len: u64,
    invalid: &[SetAside],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for (id, reason, raw) in invalid {
        tracing::info!(entry = %id, reason = %reason, "invalid event set aside");
        pipe.cmd("XADD")
            .arg(keys.invalid())
            .arg("MAXLEN")
            .arg(max_len)
            .arg("*")
            .arg("entry")
            .arg(id)
            .arg("reason")
            .arg(reason)
            .arg("event")
            .arg(raw.as_slice())
            .ignore();
    }
    pipe.query_async::<()>(&mut conn.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, Value)]) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_valid_envelope_is_an_event() {
        let raw = event::envelope_json("evt_1", "outbound.sent", "t1", 1, &serde_json::json!({}));
        match classify(&entry(&[("event", bulk(&raw))]), 1 << 20) {
            Entry::Valid(ev) => assert_eq!((ev.id.as_str(), ev.tenant.as_str()), ("evt_1", "t1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_invalid_envelope_is_set_aside_with_its_reason_and_bytes() {
        match classify(&entry(&[("event", bulk(r#"{"id":"evt_1"}"#))]), 1 << 20) {
            Entry::Invalid { reason, raw } => {
                assert!(reason.contains("type"), "{reason}");
                assert_eq!(raw, br#"{"id":"evt_1"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_without_an_event_field_keeps_what_it_held() {
        match classify(&entry(&[("payload", bulk("x"))]), 1 << 20) {
            Entry::Invalid { reason, raw } => {
                assert_eq!(reason, "entry has no `event` field");
                assert!(String::from_utf8(raw).unwrap().starts_with("payload="));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_trimmed_away_is_neither() {
        assert!(matches!(classify(&entry(&[]), 1 << 20), Entry::Trimmed));
    }
}
