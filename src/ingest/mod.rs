//! The consumer-group loop: read entries, validate, drop repeats, fan out, acknowledge.
//!
//! An entry is acknowledged only once each of its deliveries is delivered, queued for
//! retry, or dead-lettered. Entries this replica is still working on are re-claimed to
//! itself now and then, so no other replica's `XAUTOCLAIM` takes them while they are alive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::Retryable;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::deliver::dispatcher::Dispatcher;
use crate::event;
use crate::fanout::FanOut;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::support::backoff::Backoff;
use crate::support::shutdown::Shutdown;

/// How long an event id is remembered per tenant (SPEC 1).
pub const DEDUP_TTL_SECS: u64 = 24 * 3600;

#[derive(Clone)]
pub struct StreamSettings {
    pub group: String,
    pub consumer: String,
    pub batch: usize,
    pub block: Duration,
    pub claim_idle: Duration,
    pub max_event_bytes: usize,
    /// The invalid stream keeps at most this many entries.
    pub invalid_max_len: u64,
}

/// Entries being worked on by this replica.
#[derive(Default)]
pub struct InFlight {
    ids: Mutex<HashSet<String>>,
    /// Set when an entry was let go without a fate.
    let_go: AtomicBool,
}

impl InFlight {
    fn insert(&self, id: &str) -> bool {
        self.ids
            .lock()
            .expect("in-flight set")
            .insert(id.to_string())
    }
    fn remove(&self, id: &str) {
        self.ids.lock().expect("in-flight set").remove(id);
    }
    /// Lets an entry go without a fate (Redis failed us): it stays pending, and the consumer
    /// reads its own pending entries again shortly rather than waiting `claim_idle` for it.
    fn let_go(&self, id: &str) {
        self.remove(id);
        self.let_go.store(true, Ordering::Release);
    }
    fn take_let_go(&self) -> bool {
        self.let_go.swap(false, Ordering::AcqRel)
    }
    fn contains(&self, id: &str) -> bool {
        self.ids.lock().expect("in-flight set").contains(id)
    }
    pub fn snapshot(&self) -> Vec<String> {
        self.ids
            .lock()
            .expect("in-flight set")
            .iter()
            .cloned()
            .collect()
    }
}

/// Counts down one entry's deliveries; the last one acknowledges it if all were recorded.
struct Ticket {
    entry: String,
    remaining: AtomicUsize,
    all_ok: AtomicBool,
    acks: mpsc::UnboundedSender<String>,
    in_flight: Arc<InFlight>,
}

impl Ticket {
    fn done(&self, ok: bool) {
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

pub struct Consumer {
    /// A connection of its own: `XREADGROUP BLOCK` would stall a shared one.
    pub blocking: Conn,
    pub conn: Conn,
    pub keys: Keys,
    pub settings: StreamSettings,
    pub fanout: FanOut,
    pub dispatcher: Arc<Dispatcher>,
    /// Bounds deliveries held in memory; the consumer reads only when there is room.
    pub outstanding: Arc<Semaphore>,
    pub acks: mpsc::UnboundedSender<String>,
    pub in_flight: Arc<InFlight>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub stop: Shutdown,
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

impl Consumer {
    /// Creates the group (from the start of the stream) and the stream if absent.
    pub async fn ensure_group(&self) -> redis::RedisResult<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream())
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") && !e.to_string().contains("BUSYGROUP") => {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut reread_backoff = Backoff::new(Duration::from_millis(100));
        let mut own_pending_done = false;
        let mut pending_cursor = "0".to_string();
        let claim_every = (self.settings.claim_idle / 2).max(Duration::from_secs(1));
        let mut next_claim = tokio::time::Instant::now();
        while !self.stop.begun() {
            // Read no more than there is room for, so nothing waits unbounded in memory.
            let room = self
                .outstanding
                .available_permits()
                .min(self.settings.batch);
            if room == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            if self.in_flight.take_let_go() {
                // Entries left pending by a Redis failure: read them again once Redis is
                // likely back (they were read from it, so it answered a moment ago).
                own_pending_done = false;
                pending_cursor = "0".to_string();
                self.pause(&mut reread_backoff).await;
            } else if own_pending_done {
                reread_backoff.reset();
            }
            let step = if !own_pending_done {
                // After a restart under the same name, our own unacknowledged entries first.
                self.read(&pending_cursor, room).await.map(|entries| {
                    match entries.last() {
                        Some(last) => pending_cursor = last.id.clone(),
                        None => own_pending_done = true,
                    }
                    (entries, true)
                })
            } else if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + claim_every;
                self.autoclaim(room).await.map(|e| (e, true))
            } else {
                self.read(">", room).await.map(|e| (e, false))
            };
            match step {
                Ok((entries, reread)) => {
                    self.health.set_consumer(true);
                    backoff.reset();
                    if !entries.is_empty() {
                        self.process(entries, reread).await;
                    }
                }
                Err(e) if is_nogroup(&e) => {
                    tracing::warn!("consumer group missing (Redis lost its data?); recreating it");
                    if let Err(e) = self.ensure_group().await {
                        tracing::warn!(error = %e, "cannot recreate the consumer group");
                        self.pause(&mut backoff).await;
                    }
                }
                Err(e) => {
                    self.health.set_consumer(false);
                    tracing::warn!(error = %e, "reading the stream failed; retrying");
                    self.pause(&mut backoff).await;
                }
            }
        }
        self.health.set_consumer(false);
    }

    async fn pause(&self, backoff: &mut Backoff) {
        self.stop.sleep(backoff.next_wait()).await;
    }

    async fn read(&self, from: &str, room: usize) -> redis::RedisResult<Vec<StreamId>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(room);
        if from == ">" {
            cmd.arg("BLOCK").arg(self.settings.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys.stream()).arg(from);
        let reply: Option<StreamReadReply> = cmd.query_async(&mut self.blocking.clone()).await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Takes over entries that a dead consumer left pending longer than `claim_idle`.
    async fn autoclaim(&self, room: usize) -> redis::RedisResult<Vec<StreamId>> {
        let mut cursor = "0-0".to_string();
        let mut claimed = Vec::new();
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream())
                .arg(&self.settings.group)
                .arg(&self.settings.consumer)
                .arg(self.settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(room)
                .query_async(&mut self.conn.clone())
                .await?;
            for gone in reply.deleted_ids {
                let _ = self.acks.send(gone);
            }
            claimed.extend(
                reply
                    .claimed
                    .into_iter()
                    .filter(|e| !self.in_flight.contains(&e.id)),
            );
            cursor = reply.next_stream_id;
            if cursor == "0-0" || claimed.len() >= room {
                break;
            }
        }
        if !claimed.is_empty() {
            tracing::info!(
                count = claimed.len(),
                "claimed entries left pending by another consumer"
            );
        }
        Ok(claimed)
    }

    async fn process(&self, entries: Vec<StreamId>, reread: bool) {
        self.metrics.events_consumed.inc_by(entries.len() as u64);
        let mut invalid: Vec<(String, String, Vec<u8>)> = Vec::new();
        let mut valid: Vec<(String, event::Event)> = Vec::new();
        for entry in entries {
            // Every entry read is this replica's work from now on: heartbeated until it is
            // acknowledged, so no `XAUTOCLAIM` (ours or another replica's) takes it meanwhile,
            // however long the batch takes to fan out. One already in progress is skipped.
            if !self.in_flight.insert(&entry.id) {
                continue;
            }
            match entry.map.get("event") {
                Some(Value::BulkString(raw)) => {
                    match event::parse(raw, self.settings.max_event_bytes) {
                        Ok(ev) => valid.push((entry.id, ev)),
                        Err(why) => invalid.push((entry.id, why.0, raw.clone())),
                    }
                }
                Some(Value::SimpleString(s)) => {
                    match event::parse(s.as_bytes(), self.settings.max_event_bytes) {
                        Ok(ev) => valid.push((entry.id, ev)),
                        Err(why) => invalid.push((entry.id, why.0, s.clone().into_bytes())),
                    }
                }
                // A pending entry whose data was trimmed away: nothing left to deliver.
                None if entry.map.is_empty() => self.ack(entry.id),
                _ => {
                    let raw = entry
                        .map
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    invalid.push((
                        entry.id,
                        "entry has no `event` field".into(),
                        raw.into_bytes(),
                    ));
                }
            }
        }
        if !invalid.is_empty() {
            self.set_aside(&invalid).await;
        }
        if valid.is_empty() {
            return;
        }
        let fresh = match self.first_sightings(&valid).await {
            Some(f) => f,
            None => {
                // Redis is away; the entries stay pending and come back.
                for (entry, _) in &valid {
                    self.in_flight.let_go(entry);
                }
                return;
            }
        };
        for ((entry, ev), fresh) in valid.into_iter().zip(fresh) {
            if !fresh {
                self.metrics.events_duplicate.inc();
                self.ack(entry);
                continue;
            }
            self.fan_out(entry, ev, reread).await;
        }
    }

    /// Moves invalid entries to the invalid stream with their reason, then acknowledges them.
    async fn set_aside(&self, invalid: &[(String, String, Vec<u8>)]) {
        self.metrics.events_invalid.inc_by(invalid.len() as u64);
        let mut pipe = redis::pipe();
        for (id, reason, raw) in invalid {
            tracing::info!(entry = %id, reason = %reason, "invalid event set aside");
            pipe.cmd("XADD")
                .arg(self.keys.invalid())
                .arg("MAXLEN")
                .arg(self.settings.invalid_max_len)
                .arg("*")
                .arg("entry")
                .arg(id)
                .arg("reason")
                .arg(reason)
                .arg("event")
                .arg(raw.as_slice())
                .ignore();
        }
        match pipe.query_async::<()>(&mut self.conn.clone()).await {
            Ok(()) => {
                for (id, _, _) in invalid {
                    self.ack(id.clone());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot set invalid entries aside; they stay pending");
                for (id, _, _) in invalid {
                    self.in_flight.let_go(id);
                }
            }
        }
    }

    /// For each event: true unless its id was already carried by another entry in 24 h.
    async fn first_sightings(&self, valid: &[(String, event::Event)]) -> Option<Vec<bool>> {
        let mut pipe = redis::pipe();
        for (entry, ev) in valid {
            let key = self.keys.dedup(&ev.tenant, &ev.id);
            // One round trip per event: sets the owner if absent, answers the previous one.
            pipe.cmd("SET")
                .arg(&key)
                .arg(entry)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(DEDUP_TTL_SECS);
        }
        match pipe
            .query_async::<Vec<Option<String>>>(&mut self.conn.clone())
            .await
        {
            Ok(owners) => Some(
                valid
                    .iter()
                    .zip(owners)
                    .map(|((entry, _), owner)| owner.is_none_or(|o| &o == entry))
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "duplicate check failed; entries stay pending");
                None
            }
        }
    }

    async fn fan_out(&self, entry: String, ev: event::Event, reread: bool) {
        let deliveries = match self.fanout.deliveries(&entry, ev, reread).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "retry-queue check failed; entry stays pending");
                self.in_flight.let_go(&entry);
                return;
            }
        };
        if deliveries.is_empty() {
            self.ack(entry);
            return;
        }
        let ticket = Arc::new(Ticket {
            entry,
            remaining: AtomicUsize::new(deliveries.len()),
            all_ok: AtomicBool::new(true),
            acks: self.acks.clone(),
            in_flight: self.in_flight.clone(),
        });
        for mut d in deliveries {
            let room = self
                .outstanding
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            d.room = Some(room);
            let dispatcher = self.dispatcher.clone();
            let ticket = ticket.clone();
            self.dispatcher.spawn(async move {
                let ok = dispatcher.deliver(d).await;
                ticket.done(ok);
            });
        }
    }

    /// Acknowledges an entry that needs no delivery (it stays claimed until the XACK lands).
    fn ack(&self, entry: String) {
        let _ = self.acks.send(entry);
    }
}

/// Acknowledges finished entries in batches. A batch that Redis refuses is tried again, with
/// backoff, until it lands: its entries stay claimed meanwhile, so nothing is sent twice, and
/// if webhookd stops first they stay pending and are claimed later, never forgotten.
pub async fn run_acker(
    mut rx: mpsc::UnboundedReceiver<String>,
    conn: Conn,
    keys: Keys,
    group: String,
    in_flight: Arc<InFlight>,
) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 1024).await > 0 {
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

/// Keeps this replica's in-progress entries fresh, so `XAUTOCLAIM` elsewhere skips them.
pub async fn run_heartbeat(
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

    fn ticket(n: usize, in_flight: &Arc<InFlight>) -> (Ticket, mpsc::UnboundedReceiver<String>) {
        let (acks, rx) = mpsc::unbounded_channel();
        in_flight.insert("1-0");
        let t = Ticket {
            entry: "1-0".into(),
            remaining: AtomicUsize::new(n),
            all_ok: AtomicBool::new(true),
            acks,
            in_flight: in_flight.clone(),
        };
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

    #[test]
    fn an_entry_already_in_progress_is_not_taken_twice() {
        let in_flight = InFlight::default();
        assert!(in_flight.insert("2-0"));
        assert!(!in_flight.insert("2-0"));
        assert_eq!(in_flight.snapshot(), vec!["2-0".to_string()]);
    }
}
