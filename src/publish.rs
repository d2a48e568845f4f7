//! Producing events: validate an envelope, then `XADD` it to the input stream.

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::{self, Invalid};
use crate::normalize::Normalized;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid event: {0}")]
    Invalid(#[from] Invalid),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Validates and appends envelopes (all or none are valid); answers their stream ids.
pub async fn publish_raw(
    conn: &Conn,
    keys: &Keys,
    envelopes: &[String],
    max_event_bytes: usize,
) -> Result<Vec<String>, PublishError> {
    for raw in envelopes {
        event::parse(raw.as_bytes(), max_event_bytes)?;
    }
    if envelopes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for raw in envelopes {
        pipe.cmd("XADD")
            .arg(keys.stream())
            .arg("*")
            .arg("event")
            .arg(raw);
    }
    Ok(pipe.query_async(&mut conn.clone()).await?)
}

/// The envelopes of normalized provider events for one tenant.
pub fn envelopes(tenant: &str, events: &[Normalized]) -> Vec<String> {
    events
        .iter()
        .map(|n| {
            event::envelope_json(
                &n.id,
                &n.event_type,
                tenant,
                n.created_at,
                &serde_json::Value::Object(n.data.clone()),
            )
        })
        .collect()
}
