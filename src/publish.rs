//! Producing events: validate an envelope, then `XADD` it to the input stream.

use crate::db::conn::Conn;
use crate::db::shards::Shards;
use crate::event::{self, Invalid};
use crate::normalize::Normalized;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid event: {0}")]
    Invalid(#[from] Invalid),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Where an envelope went.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub stream_id: String,
    pub shard: u32,
}

/// Validates and appends envelopes (all or none are valid), each to its tenant's shard
/// (SPEC 1); answers where each went.
pub async fn publish_raw(
    conn: &Conn,
    shards: &Shards,
    envelopes: &[String],
    max_event_bytes: usize,
) -> Result<Vec<Appended>, PublishError> {
    let mut targets = Vec::with_capacity(envelopes.len());
    for raw in envelopes {
        let ev = event::parse(raw.as_bytes(), max_event_bytes)?;
        if crate::notice::is_operational(&ev.event_type) {
            return Err(PublishError::Invalid(Invalid(
                "field `type`: the `webhookd` service is reserved for webhookd's own events".into(),
            )));
        }
        targets.push(shards.of_tenant(&ev.tenant));
    }
    if envelopes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (raw, &shard) in envelopes.iter().zip(&targets) {
        pipe.cmd("XADD")
            .arg(shards.keys(shard).stream())
            .arg("*")
            .arg("event")
            .arg(raw);
    }
    let ids: Vec<String> = pipe.query_async(&mut conn.clone()).await?;
    Ok(ids
        .into_iter()
        .zip(targets)
        .map(|(stream_id, shard)| Appended { stream_id, shard })
        .collect())
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
