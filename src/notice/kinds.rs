//! The operational events webhookd sends (SPEC 2), each with an id derived from the change it
//! reports, so the same change reported twice is one event.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One operational event for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notice {
    pub(crate) tenant: String,
    pub(crate) event_type: &'static str,
    pub(crate) id: String,
    pub(crate) data: Value,
}

/// Why an endpoint was disabled (SPEC 2's `reason`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reason {
    /// It answered 410 Gone.
    Gone,
    /// It failed every attempt for `delivery.disable_after`.
    Failing,
    /// Its tenant (or an admin) disabled it.
    Tenant,
}

impl Notice {
    fn new(tenant: &str, event_type: &'static str, parts: &[&str], data: Value) -> Notice {
        let mut h = Sha256::new();
        for p in std::iter::once(event_type).chain(parts.iter().copied()) {
            h.update(p.as_bytes());
            h.update([0]);
        }
        let digest = crate::support::hex::encode(&h.finalize()[..12]);
        Notice {
            tenant: tenant.to_string(),
            event_type,
            id: format!("whd_{digest}"),
            data,
        }
    }

    /// `at_ms`: when the record was changed (its `updated_at`), which names the change.
    pub(crate) fn disabled(
        tenant: &str,
        endpoint_id: &str,
        reason: Reason,
        message: &str,
        at_ms: i64,
    ) -> Notice {
        let reason = match reason {
            Reason::Gone => "gone",
            Reason::Failing => "failing",
            Reason::Tenant => "tenant",
        };
        Notice::new(
            tenant,
            "webhookd.endpoint.disabled",
            &[endpoint_id, &at_ms.to_string()],
            json!({"endpoint_id": endpoint_id, "reason": reason, "message": message}),
        )
    }

    pub(crate) fn enabled(tenant: &str, endpoint_id: &str, at_ms: i64) -> Notice {
        Notice::new(
            tenant,
            "webhookd.endpoint.enabled",
            &[endpoint_id, &at_ms.to_string()],
            json!({"endpoint_id": endpoint_id}),
        )
    }

    pub(crate) fn circuit_opened(
        tenant: &str,
        endpoint_id: &str,
        last_error: &str,
        failures: u32,
        opened_at: i64,
    ) -> Notice {
        Notice::new(
            tenant,
            "webhookd.endpoint.circuit_opened",
            &[endpoint_id, &opened_at.to_string()],
            json!({"endpoint_id": endpoint_id, "last_error": last_error, "failures": failures}),
        )
    }

    pub(crate) fn circuit_closed(
        tenant: &str,
        endpoint_id: &str,
        opened_at: i64,
        open_for_ms: i64,
    ) -> Notice {
        Notice::new(
            tenant,
            "webhookd.endpoint.circuit_closed",
            &[endpoint_id, &opened_at.to_string()],
            json!({"endpoint_id": endpoint_id, "open_for_s": open_for_ms.max(0) / 1000}),
        )
    }

    /// `first_attempt_at` tells one dead-lettering of a delivery from a later one (after a
    /// replay, which starts a fresh schedule).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dead_lettered(
        tenant: &str,
        endpoint_id: &str,
        event_id: &str,
        event_type: &str,
        attempts: u32,
        last_status: Option<u16>,
        last_error: Option<&str>,
        first_attempt_at: i64,
    ) -> Notice {
        Notice::new(
            tenant,
            "webhookd.delivery.dead_lettered",
            &[endpoint_id, event_id, &first_attempt_at.to_string()],
            json!({
                "endpoint_id": endpoint_id, "event_id": event_id, "event_type": event_type,
                "attempts": attempts, "last_status": last_status, "last_error": last_error,
            }),
        )
    }
}
