//! The circuit breaker: one state per endpoint, shared by every replica through Redis.
//!
//! The circuits hash (`Keys::circuits`) holds a record only for endpoints whose circuit is
//! not closed; an absent field means closed.

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::keys::Keys;

/// The three states SPEC 6 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A circuit that is not closed, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Circuit {
    pub state: State,
    /// Consecutive failed attempts when it opened (or last failed a probe).
    pub failures: u32,
    /// Unix ms it opened.
    pub opened_at: i64,
    /// Unix ms the next probe may start.
    pub probe_at: i64,
    /// The wait before the next probe after this one fails (doubles, up to 5 minutes).
    pub interval_ms: i64,
    /// While half open: Unix ms the probe's lease ends.
    #[serde(default)]
    pub probe_until: i64,
    #[serde(default)]
    pub last_error: String,
}

/// The circuit state of one endpoint, as every replica sees it.
pub async fn state(
    conn: &ConnectionManager,
    keys: &Keys,
    endpoint_id: &str,
) -> redis::RedisResult<State> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(keys.circuits())
        .arg(endpoint_id)
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<Circuit>(&r).ok())
        .map_or(State::Closed, |c| c.state))
}
