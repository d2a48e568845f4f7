//! A delivery as it waits in Redis, between attempts or behind its endpoint.

use serde::{Deserialize, Serialize};

/// A delivery as it waits in the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    /// Left out when stored (`bodies`): kept once per body beside the jobs.
    #[serde(default, skip_serializing)]
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms of the first attempt (0 before any).
    pub first_attempt_at: i64,
    /// Unix ms the event was published (for the event-to-delivery histogram).
    pub published_at: i64,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Times handed back unattempted because the endpoint was saturated (older builds).
    #[serde(default)]
    pub deferrals: u32,
    /// Unix ms its schedule began to count while it had no attempt (0: older builds).
    #[serde(default)]
    pub queued_at: i64,
    /// Its event's fan-out span as a W3C `traceparent`, so every attempt, on any replica,
    /// is that span's child. Absent when traces are off, and in jobs of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}
