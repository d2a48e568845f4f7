//! Wall-clock helpers; one place for "now".

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// The latest Unix time in ms that RFC 3339 can carry: 9999-12-31T23:59:59.999Z.
pub const LATEST_RFC3339_MS: i64 = 253_402_300_799_999;

/// RFC 3339 (UTC, millisecond precision) for a Unix time in ms; a time past year 9999 is
/// written as the last moment of it (a record from before such times were refused), not as
/// 1970.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
        ms.min(LATEST_RFC3339_MS) as i128 * 1_000_000,
    )
    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses an RFC 3339 time to Unix ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_704_825_600_123;
        let s = super::rfc3339(ms);
        assert_eq!(s, "2024-01-09T18:40:00.123Z");
        assert_eq!(super::parse_rfc3339(&s), Some(ms));
    }

    #[test]
    fn a_time_past_year_9999_is_written_as_its_last_moment() {
        let last = "9999-12-31T23:59:59.999Z";
        assert_eq!(super::rfc3339(super::LATEST_RFC3339_MS), last);
        assert_eq!(super::rfc3339(i64::MAX), last);
        assert_eq!(super::parse_rfc3339(last), Some(super::LATEST_RFC3339_MS));
    }
}
