//! What a stream entry holds: a valid event, or something set aside on the invalid stream with
//! the reason (SPEC 1), so bad input is never lost and never blocks the stream.

use redis::streams::StreamId;
use redis::Value;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::{self, Event};
use crate::notice::{is_operational, mark};

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

/// Why an event of webhookd's own service is refused when a producer sent it.
pub(crate) const UNMARKED: &str =
    "the `webhookd` service is reserved for webhookd's own events (SPEC 2)";

impl Entry {
    /// A `webhookd.*` event without webhookd's mark (under the key this replica holds).
    pub(crate) fn unmarked(&self) -> bool {
        matches!(self, Entry::Invalid { reason, .. } if reason == UNMARKED)
    }
}

/// `mark_key`: the key webhookd's own events are marked with (`notice::mark`), if known.
pub(crate) fn classify(entry: &StreamId, max_event_bytes: usize, mark_key: Option<&[u8]>) -> Entry {
    let origin = match entry.map.get(mark::FIELD) {
        Some(Value::BulkString(b)) => Some(b.as_slice()),
        Some(Value::SimpleString(s)) => Some(s.as_bytes()),
        _ => None,
    };
    let parsed = |raw: &[u8]| match parsed(raw, max_event_bytes) {
        Entry::Valid(ev) if is_operational(&ev.event_type) => {
            let ours = match (mark_key, origin) {
                (Some(key), Some(m)) => mark::verify(key, raw, m),
                _ => false,
            };
            if ours {
                Entry::Valid(ev)
            } else {
                Entry::Invalid {
                    reason: UNMARKED.into(),
                    raw: raw.to_vec(),
                }
            }
        }
        other => other,
    };
    match entry.map.get("event") {
        Some(Value::BulkString(raw)) => parsed(raw),
        Some(Value::SimpleString(s)) => parsed(s.as_bytes()),
        None if entry.map.is_empty() => Entry::Trimmed,
        _ => Entry::Invalid {
            reason: "entry has no `event` field".into(),
            raw: fields_json(entry),
        },
    }
}

/// What an entry without an `event` field held, as a JSON object of its fields (in name
/// order), so whoever reads the invalid stream sees the producer's bytes, not a dump.
fn fields_json(entry: &StreamId) -> Vec<u8> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    };
    let fields: std::collections::BTreeMap<&str, String> = entry
        .map
        .iter()
        .map(|(k, v)| (k.as_str(), text(v)))
        .collect();
    serde_json::to_vec(&fields).expect("a map of strings is JSON")
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
        match classify(&entry(&[("event", bulk(&raw))]), 1 << 20, None) {
            Entry::Valid(ev) => assert_eq!((ev.id.as_str(), ev.tenant.as_str()), ("evt_1", "t1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_invalid_envelope_is_set_aside_with_its_reason_and_bytes() {
        match classify(
            &entry(&[("event", bulk(r#"{"id":"evt_1"}"#))]),
            1 << 20,
            None,
        ) {
            Entry::Invalid { reason, raw } => {
                assert!(reason.contains("type"), "{reason}");
                assert_eq!(raw, br#"{"id":"evt_1"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_without_an_event_field_keeps_what_it_held() {
        let fields = [("payload", bulk(r#"{"id":"e1"}"#)), ("a", bulk("x"))];
        match classify(&entry(&fields), 1 << 20, None) {
            Entry::Invalid { reason, raw } => {
                assert_eq!(reason, "entry has no `event` field");
                assert_eq!(
                    String::from_utf8(raw).unwrap(),
                    r#"{"a":"x","payload":"{\"id\":\"e1\"}"}"#
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_trimmed_away_is_neither() {
        assert!(matches!(
            classify(&entry(&[]), 1 << 20, None),
            Entry::Trimmed
        ));
    }

    #[test]
    fn a_webhookd_event_is_valid_only_with_webhookds_mark() {
        let raw = event::envelope_json(
            "whd_1",
            "webhookd.endpoint.enabled",
            "t1",
            1,
            &serde_json::json!({"endpoint_id": "ep"}),
        );
        let marked = mark::sign(b"k", raw.as_bytes());
        let with =
            |fields: &[(&str, Value)], key: Option<&[u8]>| classify(&entry(fields), 1 << 20, key);
        assert!(matches!(
            with(
                &[("event", bulk(&raw)), (mark::FIELD, bulk(&marked))],
                Some(b"k")
            ),
            Entry::Valid(_)
        ));
        for class in [
            with(&[("event", bulk(&raw))], Some(b"k")),
            with(
                &[("event", bulk(&raw)), (mark::FIELD, bulk(&marked))],
                Some(b"other"),
            ),
            with(&[("event", bulk(&raw)), (mark::FIELD, bulk(&marked))], None),
        ] {
            assert!(class.unmarked(), "{class:?}");
        }
    }
}
