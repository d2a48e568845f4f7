//! The entries of an `XREADGROUP` reply, taken apart in place.
//!
//! redis-rs's `StreamReadReply` first deep-copies the whole reply (it tries one shape on a
//! clone, then another), which at full speed cost a copy and an allocation for every field of
//! every entry read.

use std::collections::HashMap;

use redis::streams::StreamId;
use redis::{ErrorKind, RedisError, RedisResult, Value};

/// The entries of every stream in the reply, in order. A timed-out read (nil) has none; an
/// entry whose fields were deleted (a pending one re-read after trimming) has an empty map.
pub(crate) fn stream_entries(reply: Value) -> RedisResult<Vec<StreamId>> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        // RESP2: [[name, entries], …]
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.pop().expect("two")),
                other => Err(bad("a stream", &other)),
            })
            .collect::<RedisResult<_>>()?,
        // RESP3: {name: entries, …}
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(bad("the streams", &other)),
    };
    let mut out = Vec::new();
    for entries in streams {
        match entries {
            Value::Array(entries) => {
                out.reserve(entries.len());
                for entry in entries {
                    out.push(stream_entry(entry)?);
                }
            }
            Value::Nil => {}
            other => return Err(bad("a stream's entries", &other)),
        }
    }
    Ok(out)
}

fn stream_entry(entry: Value) -> RedisResult<StreamId> {
    let Value::Array(parts) = entry else {
        return Err(bad("an entry", &entry));
    };
    let mut parts = parts.into_iter();
    let id = match parts.next() {
        Some(Value::BulkString(id)) => {
            String::from_utf8(id).map_err(|_| text_error("an entry id"))?
        }
        Some(Value::SimpleString(id)) => id,
        other => return Err(bad("an entry id", &other.unwrap_or(Value::Nil))),
    };
    let map = match parts.next() {
        Some(Value::Array(fields)) => {
            let mut map = HashMap::with_capacity(fields.len() / 2);
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                map.insert(field_name(name)?, value);
            }
            map
        }
        Some(Value::Map(fields)) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (name, value) in fields {
                map.insert(field_name(name)?, value);
            }
            map
        }
        None | Some(Value::Nil) => HashMap::new(),
        Some(other) => return Err(bad("an entry's fields", &other)),
    };
    Ok(StreamId {
        id,
        map,
        ..Default::default()
    })
}

fn field_name(name: Value) -> RedisResult<String> {
    match name {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| text_error("a field name")),
        Value::SimpleString(s) => Ok(s),
        other => Err(bad("a field name", &other)),
    }
}

fn bad(what: &'static str, got: &Value) -> RedisError {
    parse_error(format!("{what}: {got:?}"))
}

fn text_error(what: &'static str) -> RedisError {
    parse_error(format!("{what} is not UTF-8"))
}

fn parse_error(detail: String) -> RedisError {
    RedisError::from((ErrorKind::Parse, "unexpected XREADGROUP reply", detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    #[test]
    fn a_resp2_reply_gives_every_entry_in_order_with_its_fields() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events"),
            Value::Array(vec![
                entry("1-0", &[("event", "{}"), ("wm", "x")]),
                entry("2-0", &[("event", "[]")]),
            ]),
        ])]);
        let got = stream_entries(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].map.get("event"), Some(&bulk("{}")));
        assert_eq!(got[0].map.get("wm"), Some(&bulk("x")));
        assert_eq!(got[1].id, "2-0");
        assert_eq!(got[1].map.len(), 1);
    }

    #[test]
    fn a_resp3_reply_reads_the_same() {
        let reply = Value::Map(vec![(
            bulk("events"),
            Value::Array(vec![Value::Array(vec![
                bulk("7-1"),
                Value::Map(vec![(bulk("event"), bulk("{}"))]),
            ])]),
        )]);
        let got = stream_entries(reply).unwrap();
        assert_eq!(got[0].id, "7-1");
        assert_eq!(got[0].map.get("event"), Some(&bulk("{}")));
    }

    #[test]
    fn a_timed_out_read_has_no_entries_and_a_deleted_entry_has_no_fields() {
        assert!(stream_entries(Value::Nil).unwrap().is_empty());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events"),
            Value::Array(vec![Value::Array(vec![bulk("3-0"), Value::Nil])]),
        ])]);
        let got = stream_entries(reply).unwrap();
        assert_eq!(got[0].id, "3-0");
        assert!(got[0].map.is_empty());
    }

    #[test]
    fn another_shape_is_an_error_not_a_panic() {
        for reply in [
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk("events"), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                bulk("events"),
                Value::Array(vec![Value::Array(vec![Value::Int(1)])]),
            ])]),
        ] {
            assert!(stream_entries(reply).is_err());
        }
    }
}
