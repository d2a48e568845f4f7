//! Acknowledging stream entries: each once every one of its deliveries has a fate
//! (delivered, queued for a retry, parked, or dead-lettered), in batches.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use tokio::sync::{mpsc, Notify};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::ingest::claim::InFlight;
use crate::support::batch;

/// Entries acknowledged per XACK, at most.
const ACK_BATCH: usize = 1024;
/// How long the acker waits for more entries before acknowledging fewer than a full batch:
/// until the consumer's next duplicate check once they have waited 15 ms (the XACK then
/// shares its write and its reply's wake-up), or 30 ms when no read comes sooner. At a steady
/// 100–1,000 events/s a read comes every 3–10 ms, so the timer seldom fires, and an XACK
/// serves two reads or more. Over 64 entries (a backlog's) wait for the timer: an XACK of
/// hundreds would hold up the check it goes out before.
const ACK_WHEN: batch::Nudged = batch::Nudged {
    gather: Duration::from_millis(15),
    most: 64,
    linger: Duration::from_millis(30),
};

/// Counts down one entry's deliveries; the last one acknowledges it if all were recorded.
pub(crate) struct Ticket {
    entry: String,
    remaining: AtomicUsize,
    all_ok: AtomicBool,
    acks: mpsc::UnboundedSender<String>,
    in_flight: Arc<InFlight>,
}

impl Ticket {
    pub(crate) fn new(
        entry: String,
        deliveries: usize,
        acks: mpsc::UnboundedSender<String>,
        in_flight: Arc<InFlight>,
    ) -> Ticket {
        Ticket {
            entry,
            remaining: AtomicUsize::new(deliveries),
            all_ok: AtomicBool::new(true),
            acks,
            in_flight,
        }
    }

    /// One delivery ended; `ok` when its fate is recorded.
    pub(crate) fn done(&self, ok: bool) {
        if !ok {
            self.all_ok.store(false, Ordering::Release);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Acknowledged entries stay claimed (heartbeated) until the acker's XACK lands;
            // one with an unrecorded fate is let go, to be claimed and delivered again.
            if self.all_ok.load(Ordering::Acquire) {
                let _ = self.acks.send(self.entry.clone());
            } else {
                self.in_flight.let_go(&self.entry);
            }
        }
    }
}

/// Acknowledges finished entries in batches. A batch that Redis refuses is tried again, with
/// backoff, until it lands: its entries stay claimed meanwhile, so nothing is sent twice, and
/// if webhookd stops first they stay pending and are claimed later, never forgotten.
pub(crate) async fn run_acker(
    mut rx: mpsc::UnboundedReceiver<String>,
    conn: Conn,
    keys: Keys,
    group: String,
    in_flight: Arc<InFlight>,
    nudge: Arc<Notify>,
) {
    let mut buf = Vec::with_capacity(ACK_BATCH);
    // Entries waiting for the linger stay claimed meanwhile.
    while batch::next_nudged(&mut rx, &mut buf, ACK_BATCH, ACK_WHEN, &nudge).await > 0 {
        let ack = || {
            let mut conn = conn.clone();
            let mut cmd = redis::cmd("XACK");
            cmd.arg(keys.stream()).arg(&group).arg(&buf);
            async move { cmd.query_async::<()>(&mut conn).await }
        };
        let count = buf.len();
        // Never given up: the policy has no limit of tries.
        let _ = ack
            .retry(crate::support::backoff::policy(Duration::from_millis(50)))
            .notify(|e, _| tracing::warn!(error = %e, count, "acknowledging failed; retrying"))
            .await;
        for id in buf.drain(..) {
            in_flight.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(n: usize, in_flight: &Arc<InFlight>) -> (Ticket, mpsc::UnboundedReceiver<String>) {
        let (acks, rx) = mpsc::unbounded_channel();
        in_flight.insert("1-0");
        let t = Ticket::new("1-0".into(), n, acks, in_flight.clone());
        (t, rx)
    }

    #[test]
    fn an_entry_is_acknowledged_once_every_delivery_has_a_fate() {
        let in_flight = Arc::new(InFlight::default());
        let (t, mut rx) = ticket(3, &in_flight);
        t.done(true);
        t.done(true);
        assert!(rx.try_recv().is_err(), "not before the last delivery");
        t.done(true);
        assert_eq!(rx.try_recv().unwrap(), "1-0");
        // Still claimed (heartbeated) until the acker's XACK lands.
        assert!(in_flight.contains("1-0") && !in_flight.take_let_go());
    }

    #[test]
    fn an_entry_with_an_unrecorded_fate_is_let_go_and_read_again() {
        let in_flight = Arc::new(InFlight::default());
        let (t, mut rx) = ticket(2, &in_flight);
        t.done(false);
        t.done(true);
        assert!(rx.try_recv().is_err(), "never acknowledged");
        assert!(!in_flight.contains("1-0"), "no longer heartbeated");
        assert!(
            in_flight.take_let_go(),
            "the consumer reads its pending entries again"
        );
        assert!(!in_flight.take_let_go(), "once");
    }
}
