//! The `ttl` a request gives for what it creates (a token, a portal link): a duration above
//! zero, at most a limit when there is one.

use std::time::Duration;

use super::error::ApiError;

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
