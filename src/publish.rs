//! Producing events: validate an envelope, then `XADD` it to the input stream.

use redis::aio::ConnectionManager;

use crate::event::{self, Invalid};
use crate::keys::Keys;
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
    conn: &ConnectionManager,
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

/// Connects, retrying briefly so a Redis that is still starting is waited for, and
/// failing with one clear line when it never answers.
pub async fn connect(
    url: &str,
    response_timeout: std::time::Duration,
) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url)
        .map_err(|e| format!("redis.url `{}` is invalid: {e}", crate::redact::url(url)))?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_secs(2));
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        match client.get_connection_manager_with_config(cfg.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "cannot connect to Redis at {}: {last}",
        crate::redact::url(url)
    ))
}
