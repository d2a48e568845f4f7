//! A dead letter as stored in the stream and as the API shows it, and which ones an
//! operation selects.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::support::clock::rfc3339;

/// A dead letter as the API and `--json` show it (SPEC 5).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its entry id in the dead-letter stream.
    #[schema(example = "1704825600000-0")]
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempts: u32,
    /// Null when no HTTP response came.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Null when no attempt was made: its endpoint was disabled, or its circuit stayed open
    /// until its schedule ran out.
    #[schema(format = DateTime)]
    pub first_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub dead_at: String,
    /// The body that was (to be) delivered.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
    #[serde(skip)]
    #[schema(ignore)]
    pub(super) published_at: i64,
}

/// Which dead letters a replay or purge takes.
#[derive(Debug, Clone)]
pub enum Selector {
    Ids(Vec<String>),
    Endpoint(String),
    /// `dead_at` at or after this Unix ms.
    Since(i64),
}

/// A dead letter's id: a stream id, after `<shard>:` in a sharded stream (SPEC 1).
pub fn valid_letter_id(id: &str) -> bool {
    valid_stream_id(crate::db::shards::parse_letter_id(id).1)
}

/// What an id that names no dead letter of this setup (`Dlq::misnamed`) is refused with.
pub fn not_a_letter_id(id: &str) -> String {
    format!(
        "`{id}` is not a dead-letter id here: ids are as listed, `<ms>-<seq>` (e.g. \
         1712345678901-0), or `<shard>:<ms>-<seq>` when `stream.shards` is over 1"
    )
}

/// `<ms>-<seq>` or `<ms>`, as XRANGE accepts.
pub fn valid_stream_id(id: &str) -> bool {
    // Each part must fit a u64, or Redis refuses the id with an error.
    let part = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok();
    let mut parts = id.splitn(2, '-');
    let ms_ok = parts.next().is_some_and(part);
    let seq_ok = parts.next().is_none_or(part);
    ms_ok && seq_ok
}

pub(super) fn from_fields(id: String, mut f: HashMap<String, String>) -> Option<DeadLetter> {
    let mut take = |k: &str| f.remove(k).unwrap_or_default();
    let ms = |s: String| s.parse::<i64>().unwrap_or(0);
    let body = take("body");
    let body = RawValue::from_string(body)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null"));
    let last_error = take("last_error");
    let first = ms(take("first_attempt_at"));
    Some(DeadLetter {
        tenant: take("tenant"),
        endpoint_id: take("endpoint_id"),
        event_id: take("event_id"),
        event_type: take("event_type"),
        attempts: take("attempts").parse().unwrap_or(0),
        last_status: take("last_status").parse().ok(),
        last_error: (!last_error.is_empty()).then_some(last_error),
        first_attempt_at: (first > 0).then(|| rfc3339(first)),
        dead_at: rfc3339(ms(take("dead_at"))),
        published_at: ms(take("published_at")),
        body,
        id,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_are_checked_before_use() {
        assert!(super::valid_stream_id("1700000000000-0") && super::valid_stream_id("17"));
        for bad in [
            "",
            "-",
            "abc",
            "1-",
            "1-2-3",
            "+",
            "(1-0",
            "98732257723999836500",
            "1-18446744073709551616",
        ] {
            assert!(!super::valid_stream_id(bad), "{bad}");
        }
    }
}
