//! What a read checked in the same call (`read_checked.lua`) says of each entry.

use redis::streams::StreamId;
use redis::Value;

use super::ids::fingerprint;

/// The largest event `read_checked.lua` takes apart for its id: Redis parses it (cjson) while
/// every other client waits, so bigger ones are checked after the read, once webhookd has
/// parsed them.
pub(super) const LUA_PARSE_MAX: usize = 8 * 1024;

/// A read's entries and, when the read was checked too (`read_checked`), each one's verdict.
pub(crate) struct Checked {
    pub(crate) entries: Vec<StreamId>,
    pub(crate) verdicts: Option<Vec<Verdict>>,
}

/// What `read_checked.lua` found for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its id (this fingerprint) is claimed for it; if it turns out invalid, `release` it.
    First(Vec<u8>),
    /// Another entry carried its id first.
    Duplicate,
    /// Not checked: to be checked with `first_sightings` once parsed.
    Unchecked,
}

/// The id to give back for an entry webhookd found invalid (`raw` its event): the one a
/// checked read claimed for it, or, when it is read again (after a crash or a claim), the one
/// such a read may have claimed (its JSON an object with string `tenant` and `id`, small
/// enough for the script). Giving back is only ever done for this entry's own claim.
pub(crate) fn to_give_back(verdict: Verdict, reread: bool, raw: &[u8]) -> Option<Vec<u8>> {
    match verdict {
        Verdict::First(fp) => Some(fp),
        Verdict::Unchecked if reread && raw.len() <= LUA_PARSE_MAX => {
            let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
            let (tenant, id) = (v.get("tenant")?.as_str()?, v.get("id")?.as_str()?);
            Some(fingerprint(tenant, id).to_vec())
        }
        _ => None,
    }
}

/// `read_checked.lua`'s answer: {read, [verdicts, fingerprints]}.
pub(super) fn checked_reply(reply: Value) -> redis::RedisResult<Checked> {
    let bad = || {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected reply to the checked read",
        ))
    };
    let Value::Array(parts) = reply else {
        return Err(bad());
    };
    let mut parts = parts.into_iter();
    let entries = crate::ingest::reply::stream_entries(parts.next().ok_or_else(bad)?)?;
    let verdicts = match (parts.next(), parts.next()) {
        (Some(Value::Array(seen)), Some(Value::Array(fps))) if seen.len() == entries.len() => {
            let mut out = Vec::with_capacity(seen.len());
            for (seen, fp) in seen.into_iter().zip(fps) {
                out.push(match (seen, fp) {
                    (Value::Int(1), Value::BulkString(fp)) if fp.len() == 16 => Verdict::First(fp),
                    (Value::Int(0), _) => Verdict::Duplicate,
                    (Value::Int(-1), _) => Verdict::Unchecked,
                    _ => return Err(bad()),
                });
            }
            Some(out)
        }
        (None, None) => None,
        _ => return Err(bad()),
    };
    Ok(Checked { entries, verdicts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_entry_gives_back_its_own_claim_only() {
        let raw = br#"{"id":"e1","tenant":"t1","type":"x"}"#;
        let fp = fingerprint("t1", "e1").to_vec();
        assert_eq!(
            to_give_back(Verdict::First(vec![7; 16]), false, raw),
            Some(vec![7; 16]),
            "what the checked read claimed"
        );
        assert_eq!(
            to_give_back(Verdict::Unchecked, true, raw),
            Some(fp),
            "read again: what a checked read would have claimed"
        );
        assert_eq!(to_give_back(Verdict::Unchecked, false, raw), None);
        assert_eq!(to_give_back(Verdict::Duplicate, true, raw), None);
        assert_eq!(to_give_back(Verdict::Unchecked, true, b"not json"), None);
        let big = format!(
            r#"{{"id":"e1","tenant":"t1","pad":"{}"}}"#,
            "x".repeat(LUA_PARSE_MAX)
        );
        assert_eq!(
            to_give_back(Verdict::Unchecked, true, big.as_bytes()),
            None,
            "too big for the script to have claimed"
        );
    }
}
