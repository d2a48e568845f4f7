//! The providers webhookd understands, what normalizing one of their payloads gives, and why
//! it can fail.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// A provider whose native webhook payloads webhookd accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    SendPost,
    CloudMailin,
    JetEmail,
}

impl Provider {
    pub const ALL: [Provider; 3] = [
        Provider::SendPost,
        Provider::CloudMailin,
        Provider::JetEmail,
    ];

    /// The name used in `/v1/ingest/{provider}`, `--provider` and derived event ids.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::SendPost => "sendpost",
            Provider::CloudMailin => "cloudmailin",
            Provider::JetEmail => "jetemail",
        }
    }
}

impl FromStr for Provider {
    type Err = NormalizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| NormalizeError::UnknownProvider(s.to_owned()))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A normalized event, ready to be wrapped into the SPEC 1 envelope with a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// Valid per SPEC 1: 1–128 chars of `[A-Za-z0-9_.:-]`; stable for the same provider event.
    pub id: String,
    /// A SPEC 2 catalog type such as `outbound.bounced`.
    pub event_type: String,
    /// Unix seconds: from the payload when it has a timestamp, else `now`.
    pub created_at: i64,
    pub data: Map<String, Value>,
}

/// Why a payload could not be normalized. Nothing is published when any item fails.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("unknown provider `{0}` (expected sendpost, cloudmailin or jetemail)")]
    UnknownProvider(String),
    #[error("unknown {provider} event `{event}`")]
    UnknownEvent {
        provider: &'static str,
        event: String,
    },
    #[error("malformed payload: {0}")]
    Malformed(String),
}
