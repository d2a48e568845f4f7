//! The consumer-group loop: read entries, validate, drop repeats, fan out, and hand each
//! delivery to the dispatcher; the entry is acknowledged once all of them have a fate.

use std::sync::Arc;
use std::time::Duration;

use redis::streams::StreamId;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::deliver::dispatcher::Dispatcher;
use crate::event::Event;
use crate::fanout::FanOut;
use crate::ingest::ack::Ticket;
use crate::ingest::claim::InFlight;
use crate::ingest::dedup::{to_give_back, Checked, Dedup, Verdict};
use crate::ingest::next_read::{unchecked, NextRead, MIN_ROOM, ROOM_WAIT};
use crate::ingest::read::{is_nogroup, Reader};
use crate::ingest::validate::{classify, set_aside, Entry, SetAside};
use crate::notice::mark::Mark;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::support::backoff::Backoff;
use crate::support::permits::next_permit;
use crate::support::shutdown::Shutdown;

/// Where the consumer's work goes, and what bounds it.
pub(crate) struct Intake {
    pub(crate) fanout: FanOut,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// Bounds deliveries held in memory; the consumer reads only when there is room.
    pub(crate) outstanding: Arc<Semaphore>,
    pub(crate) acks: mpsc::UnboundedSender<String>,
    /// Given just before each duplicate check, on the connection the acker shares
    /// (`batch::next_nudged`).
    pub(crate) ack_nudge: Arc<Notify>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) mark: Arc<Mark>,
}

pub(crate) struct Consumer {
    reader: Reader,
    dedup: Dedup,
    fanout: FanOut,
    dispatcher: Arc<Dispatcher>,
    outstanding: Arc<Semaphore>,
    /// Room a read waits for under a backlog (`MIN_ROOM`, at most half of all there is).
    room_wanted: usize,
    acks: mpsc::UnboundedSender<String>,
    ack_nudge: Arc<Notify>,
    in_flight: Arc<InFlight>,
    mark: Arc<Mark>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Shutdown,
}

impl Consumer {
    pub(crate) fn new(
        reader: Reader,
        intake: Intake,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        stop: Shutdown,
    ) -> Consumer {
        Consumer {
            dedup: Dedup::new(reader.keys().clone(), reader.settings().dedup_window),
            reader,
            fanout: intake.fanout,
            dispatcher: intake.dispatcher,
            // Made before anything runs: all the room there is.
            room_wanted: MIN_ROOM.min(intake.outstanding.available_permits() / 2),
            outstanding: intake.outstanding,
            acks: intake.acks,
            ack_nudge: intake.ack_nudge,
            in_flight: intake.in_flight,
            mark: intake.mark,
            metrics,
            health,
            stop,
        }
    }

    /// Creates the group (from the start of the stream) and the stream if absent.
    pub(crate) async fn ensure_group(&self) -> redis::RedisResult<()> {
        self.reader.ensure_group().await
    }

    /// Reads and hands on entries until shutdown begins.
    pub(crate) async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut reread_backoff = Backoff::new(Duration::from_millis(100));
        let mut own_pending_done = false;
        let mut pending_cursor = "0".to_string();
        let claim_every = (self.reader.settings().claim_idle / 2).max(Duration::from_secs(1));
        let mut next_claim = tokio::time::Instant::now();
        let mut next_read = NextRead::default();
        while !self.stop.begun() {
            // Read no more than there is room for, so nothing waits unbounded in memory.
            let batch = self.reader.settings().batch;
            let room = self.outstanding.available_permits().min(batch);
            if room == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let want = self.room_wanted.min(batch);
            if room < want {
                // A backlog that left little room: wait briefly for room worth a read, or
                // a read (and its duplicate check) would serve a handful of entries.
                let more = self.outstanding.acquire_many(want as u32);
                let _ = tokio::time::timeout(ROOM_WAIT, more).await;
            }
            let room = self.outstanding.available_permits().min(batch);
            if room == 0 {
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
                self.reader
                    .read(&pending_cursor, room)
                    .await
                    .map(|entries| {
                        match entries.last() {
                            Some(last) => pending_cursor = last.id.clone(),
                            None => own_pending_done = true,
                        }
                        (unchecked(entries), true)
                    })
            } else if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + claim_every;
                Ok((unchecked(self.claim(room).await), true))
            } else {
                let read = next_read
                    .read(&self.reader, &self.dedup, &self.ack_nudge, room)
                    .await;
                if next_read.take_lost() {
                    // Entries a failed checked read may have read: this consumer's pending
                    // ones now, read again next.
                    own_pending_done = false;
                    pending_cursor = "0".to_string();
                }
                read.map(|c| (c, false))
            };
            match step {
                Ok((read, reread)) => {
                    self.health.set_consumer(true);
                    backoff.reset();
                    if !read.entries.is_empty() {
                        // A light read (a steady trickle) keeps its deliveries on the hot
                        // thread; a full one (a backlog) spreads them over every core.
                        let light = read.entries.len() < room;
                        self.process(read, reread, light).await;
                    }
                }
                Err(e) if is_nogroup(&e) => {
                    tracing::warn!("consumer group missing (Redis lost its data?); recreating it");
                    if let Err(e) = self.reader.ensure_group().await {
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

    /// Waits out the backoff, or until Redis is back, which starts the backoff afresh.
    async fn pause(&self, backoff: &mut Backoff) {
        tokio::select! {
            _ = self.stop.sleep(backoff.next_wait()) => {}
            _ = self.health.redis_back() => backoff.reset(),
        }
    }

    /// Entries a dead consumer left pending (those trimmed away need only their ack). A failed
    /// claim is no failed read: it is said, and new entries are read on.
    async fn claim(&self, room: usize) -> Vec<StreamId> {
        let mine = |id: &str| self.in_flight.contains(id);
        let found = self.reader.autoclaim(room, mine).await;
        self.health.note("claiming", &found);
        let (claimed, gone) = found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "claiming entries a stopped consumer left failed");
            Default::default()
        });
        for id in gone {
            self.ack(id);
        }
        claimed
    }

    async fn process(&self, read: Checked, reread: bool, light: bool) {
        let Checked { entries, verdicts } = read;
        self.metrics.events_consumed.inc_by(entries.len() as u64);
        let mut invalid: Vec<SetAside> = Vec::new();
        let mut valid: Vec<(String, Event)> = Vec::new();
        // Valid entries the read's own check decided: (entry, event, first sighting).
        let mut decided: Vec<(String, Event, bool)> = Vec::new();
        // Ids claimed for entries that turned out invalid, to give back.
        let mut claimed_invalid: Vec<(String, Vec<u8>)> = Vec::new();
        let mut verdicts = verdicts.map(Vec::into_iter);
        let mut mark_key = self.mark.cached();
        let mut reloaded = false;
        for entry in entries {
            let verdict = verdicts
                .as_mut()
                .and_then(Iterator::next)
                .unwrap_or(Verdict::Unchecked);
            // Every entry read is this replica's work from now on: heartbeated until it is
            // acknowledged, so no `XAUTOCLAIM` (ours or another replica's) takes it meanwhile,
            // however long the batch takes to fan out. One already in progress is skipped.
            if !self.in_flight.insert(&entry.id) {
                continue;
            }
            let max = self.reader.settings().max_event_bytes;
            let mut class = classify(&entry, max, mark_key.as_deref());
            if class.unmarked() && !reloaded {
                // Our own event, or one a producer forged: read the key again in case Redis
                // lost it and a new one signs now.
                reloaded = true;
                match self.mark.reload().await {
                    Ok(key) => {
                        mark_key = Some(key);
                        class = classify(&entry, max, mark_key.as_deref());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the operational events' key failed")
                    }
                }
            }
            match (class, verdict) {
                (Entry::Valid(ev), Verdict::Unchecked) => valid.push((entry.id, ev)),
                (Entry::Valid(ev), Verdict::First(_)) => decided.push((entry.id, ev, true)),
                (Entry::Valid(ev), Verdict::Duplicate) => decided.push((entry.id, ev, false)),
                (Entry::Invalid { reason, raw }, verdict) => {
                    if let Some(fp) = to_give_back(verdict, reread, &raw) {
                        claimed_invalid.push((entry.id.clone(), fp));
                    }
                    invalid.push((entry.id, reason, raw))
                }
                (Entry::Trimmed, _) => self.ack(entry.id),
            }
        }
        if !claimed_invalid.is_empty() {
            if let Err(e) = self
                .dedup
                .release(&self.reader.conn(), &claimed_invalid)
                .await
            {
                // Set aside once the id is given back: until then they stay pending.
                tracing::warn!(error = %e, "cannot give back invalid entries' ids; they stay pending");
                invalid.retain(|(id, _, _)| {
                    let held = claimed_invalid.iter().any(|(c, _)| c == id);
                    if held {
                        self.in_flight.let_go(id);
                    }
                    !held
                });
            }
        }
        if !invalid.is_empty() {
            self.set_aside(&invalid).await;
        }
        for (entry, ev, fresh) in decided {
            self.deliver_unless_seen(entry, ev, fresh, reread, light)
                .await;
        }
        if valid.is_empty() {
            return;
        }
        self.ack_nudge.notify_waiters();
        let checked = self
            .dedup
            .first_sightings(&self.reader.conn(), &valid, reread)
            .await;
        self.health.note("duplicate check", &checked);
        let fresh = match checked {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "duplicate check failed; entries stay pending");
                for (entry, _) in &valid {
                    self.in_flight.let_go(entry);
                }
                return;
            }
        };
        for ((entry, ev), fresh) in valid.into_iter().zip(fresh) {
            self.deliver_unless_seen(entry, ev, fresh, reread, light)
                .await;
        }
    }

    async fn deliver_unless_seen(
        &self,
        entry: String,
        ev: Event,
        fresh: bool,
        reread: bool,
        light: bool,
    ) {
        if !fresh {
            self.metrics.events_duplicate.inc();
            self.ack(entry);
            return;
        }
        self.fan_out(entry, ev, reread, light).await;
    }

    /// Moves invalid entries to the invalid stream with their reason, then acknowledges them.
    async fn set_aside(&self, invalid: &[SetAside]) {
        self.metrics.events_invalid.inc_by(invalid.len() as u64);
        let settings = self.reader.settings();
        match set_aside(
            &self.reader.conn(),
            self.reader.keys(),
            settings.invalid_max_len,
            invalid,
        )
        .await
        {
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

    async fn fan_out(&self, entry: String, ev: Event, reread: bool, light: bool) {
        let shard = self.reader.keys().shard_index();
        let deliveries = match self.fanout.deliveries(shard, &entry, ev, reread).await {
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
        let ticket = Arc::new(Ticket::new(
            entry,
            deliveries.len(),
            self.acks.clone(),
            self.in_flight.clone(),
        ));
        let total = deliveries.len();
        let mut spare = None;
        // One event's deliveries are all its tenant's.
        let share = self.dispatcher.tenant_room(&deliveries[0].event.tenant);
        for (i, mut d) in deliveries.into_iter().enumerate() {
            match share.place() {
                Some(place) => d.place = Some(place),
                None => d.past_share = Some(share.clone()),
            }
            // Out of room, it waits for some at once, not for each delivery: every release
            // would otherwise wake this (hot) thread from the workers.
            let want = (total - i).min(self.room_wanted);
            d.room = Some(next_permit(&self.outstanding, &mut spare, want).await);
            let dispatcher = self.dispatcher.clone();
            let ticket = ticket.clone();
            let task = async move {
                let ok = dispatcher.deliver(d).await;
                ticket.done(ok);
            };
            self.dispatcher.spawn_delivery(task, light);
        }
    }

    /// Acknowledges an entry that needs no delivery (it stays claimed until the XACK lands).
    fn ack(&self, entry: String) {
        let _ = self.acks.send(entry);
    }
}
