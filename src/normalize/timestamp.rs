//! Event times as providers write them, to Unix seconds.

use serde_json::{Map, Value};

use crate::support::clock::LATEST_RFC3339_MS;

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
    let number = match value {
        Value::Number(n) => match n.as_i64() {
            Some(whole) => whole,
            // Fractional seconds; the cast saturates, and the range check below
            // refuses what is out of range.
            None => n.as_f64().filter(|f| f.is_finite())?.floor() as i64,
        },
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        // An RFC 3339 time says its own unit: never taken for milliseconds.
        Value::String(s) => return rfc3339(s).filter(|s| in_range(*s)),
        _ => return None,
    };
    let seconds = if number >= MILLIS_FROM {
        number / 1000
    } else {
        number
    };
    in_range(seconds).then_some(seconds)
}

/// From 1970 to the end of year 9999 (what RFC 3339 can write).
fn in_range(seconds: i64) -> bool {
    (0..=LATEST_RFC3339_MS / 1000).contains(&seconds)
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
    fn an_rfc3339_time_is_never_taken_for_milliseconds() {
        assert_eq!(
            parse(&json!("9999-12-31T23:59:59Z")),
            Some(253_402_300_799),
            "not 1978"
        );
        assert_eq!(parse(&json!("5000-01-01T00:00:00Z")), Some(95_617_584_000));
    }

    #[test]
    fn times_past_year_9999_are_refused() {
        for bad in [
            json!(99999999999999999999_u128 as f64),
            json!("99999999999999999999"),
            json!(253_402_300_800_000_i64),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
        assert_eq!(
            parse(&json!(253_402_300_799_000_i64)),
            Some(253_402_300_799)
        );
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
