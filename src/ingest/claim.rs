//! Which stream entries this replica is working on. Each stays claimed (its idle time reset
//! now and then) until its acknowledgement lands, so no other replica's `XAUTOCLAIM` takes an
//! entry that is alive here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashSet;
use redis::Value;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::ingest::read::StreamSettings;
use crate::support::shutdown::Shutdown;

/// Entries being worked on by this replica.
#[derive(Default)]
pub(crate) struct InFlight {
    ids: Mutex<HashSet<String>>,
    /// Set when an entry was let go without a fate.
    let_go: AtomicBool,
}

impl InFlight {
    pub(crate) fn insert(&self, id: &str) -> bool {
        self.ids
            .lock()
            .expect("in-flight set")
            .insert(id.to_string())
    }
    pub(crate) fn remove(&self, id: &str) {
        self.ids.lock().expect("in-flight set").remove(id);
    }
    /// Lets an entry go without a fate (Redis failed us): it stays pending, and the consumer
    /// reads its own pending entries again shortly rather than waiting `claim_idle` for it.
    pub(crate) fn let_go(&self, id: &str) {
        self.remove(id);
        self.let_go.store(true, Ordering::Release);
    }
    pub(crate) fn take_let_go(&self) -> bool {
        self.let_go.swap(false, Ordering::AcqRel)
    }
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.lock().expect("in-flight set").contains(id)
    }
    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.ids
            .lock()
            .expect("in-flight set")
            .iter()
            .cloned()
            .collect()
    }
}

/// Keeps this replica's in-progress entries fresh, so `XAUTOCLAIM` elsewhere skips them.
pub(crate) async fn run_heartbeat(
    in_flight: Arc<InFlight>,
    conn: Conn,
    keys: Keys,
    settings: StreamSettings,
    stop: Shutdown,
) {
    let every = (settings.claim_idle / 3).max(Duration::from_millis(300));
    loop {
        if !stop.sleep(every).await {
            return;
        }
        let ids = in_flight.snapshot();
        for chunk in ids.chunks(500) {
            let r: redis::RedisResult<Value> = redis::cmd("XCLAIM")
                .arg(keys.stream())
                .arg(&settings.group)
                .arg(&settings.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(&mut conn.clone())
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "refreshing in-progress entries failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_already_in_progress_is_not_taken_twice() {
        let in_flight = InFlight::default();
        assert!(in_flight.insert("2-0"));
        assert!(!in_flight.insert("2-0"));
        assert_eq!(in_flight.snapshot(), vec!["2-0".to_string()]);
    }
}
