//! The `ttl` a request gives for what it creates (a token, a portal link): a duration above
//! zero, at most a limit when there is one.

use std::time::Duration;

use super::error::ApiError;
use crate::support::clock::LATEST_RFC3339_MS;

pub(super) fn parse(raw: &str, longest: Option<Duration>) -> Result<Duration, ApiError> {
    crate::support::duration::parse(raw)
        .ok()
        .filter(|d| !d.is_zero() && longest.is_none_or(|l| *d <= l))
        .ok_or_else(|| {
            let limit = match longest {
                Some(l) => format!(" and at most {}h", l.as_secs() / 3600),
                None => String::new(),
            };
            ApiError::Invalid(format!(
                "`ttl`: `{raw}` is not a duration above zero{limit} (e.g. 30d, 12h)"
            ))
        })
}

/// When something made at `now` (Unix ms) with `ttl` expires: refused when no RFC 3339 time can
/// carry it (after year 9999), which a client would otherwise read back as some other date.
pub(super) fn expiry(raw: &str, now: i64) -> Result<i64, ApiError> {
    let ttl = parse(raw, None)?;
    i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ms| now.checked_add(ms))
        .filter(|at| *at <= LATEST_RFC3339_MS)
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "`ttl`: `{raw}` ends after the year 9999; leave `ttl` out for no expiry"
            ))
        })
}
