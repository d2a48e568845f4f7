//! Operational webhooks (SPEC 2): webhookd tells a tenant about its own endpoints — disabled,
//! enabled, circuit opened or closed, a delivery dead-lettered — by publishing a `webhookd.*`
//! event on the tenant's own stream shard, delivered through the normal pipeline to the
//! tenant's endpoints that subscribe to it.
//!
//! Exactly one per change: a notice is sent by the replica whose Redis write made the change
//! (the circuit scripts and the registry's compare-and-set say which), and its id is derived
//! from the change, so a repeat is dropped by the stream's duplicate check. Never about the
//! delivery of an operational event, so they cannot feed themselves.

mod kinds;
pub(crate) mod mark;
mod writer;

use std::sync::Arc;

use tokio::sync::mpsc;

use prometheus_client::metrics::counter::Counter;

use crate::event::filter::RESERVED;
pub(crate) use kinds::{Notice, Reason};
pub(crate) use writer::Writer;

/// Notices waiting to be published; past this they are dropped and counted.
const BACKLOG: usize = 4096;

/// Whether an event type is one of webhookd's own: no notice is ever about its delivery.
pub(crate) fn is_operational(event_type: &str) -> bool {
    event_type.split('.').next() == Some(RESERVED)
}

/// The handle the stages send notices through; never blocks.
#[derive(Clone)]
pub(crate) struct Notices {
    tx: Option<mpsc::Sender<Notice>>,
    /// `webhookd_notices_dropped`.
    dropped: Counter,
}

impl Notices {
    pub(crate) fn send(&self, notice: Notice) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(notice) {
            let n = match e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            self.dropped.inc();
            tracing::warn!(tenant = %n.tenant, event_type = n.event_type, id = %n.id, "operational event dropped: too many waiting");
        }
    }
}

/// The handle and the writer that publishes what it is sent.
pub(crate) fn channel(
    conn: crate::db::conn::Conn,
    shards: crate::db::shards::Shards,
    mark: Arc<mark::Mark>,
    live: crate::registry::LiveIndex,
    dropped: Counter,
) -> (Notices, Writer) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (
        Notices {
            tx: Some(tx),
            dropped,
        },
        Writer::new(rx, conn, shards, mark, live),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_its_notice_and_another_change_another() {
        let a = Notice::circuit_opened("t", "ep_1", "HTTP 500", 20, 1000);
        let again = Notice::circuit_opened("t", "ep_1", "HTTP 503", 21, 1000);
        let later = Notice::circuit_opened("t", "ep_1", "HTTP 500", 20, 2000);
        assert_eq!(a.id, again.id, "the same opening, whoever reports it");
        assert_ne!(a.id, later.id);
        assert_ne!(
            a.id,
            Notice::circuit_closed("t", "ep_1", 1000, 5).id,
            "its closing is another change"
        );
        assert!(a.id.starts_with("whd_") && a.id.len() == 28);
        assert!(is_operational(a.event_type) && !is_operational("outbound.sent"));
        let d = Notice::disabled("t", "ep_1", Reason::Gone, "endpoint answered 410 Gone", 5);
        assert_eq!(d.data["reason"], "gone");
    }
}
