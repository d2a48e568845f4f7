//! One delivery's life: wait briefly for room at its endpoint (or park in its backlog), attempt,
//! then record its fate (delivered, scheduled again, parked, or dead-lettered) before the
//! caller may acknowledge it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::Retryable;
use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::deliver::attempt::{self, AttemptRecord, AttemptSpec, Outcome};
use crate::deliver::attempt_log::{self, AttemptLog};
use crate::deliver::breaker::Breaker;
use crate::deliver::client::HttpClient;
use crate::deliver::lane::{Admission, Budget, Lane, SlowShare, SLOW_AFTER};
use crate::ops::metrics::Metrics;
use crate::registry::{Endpoint, LiveIndex, Store};
use crate::retry::dlq::Dlq;
use crate::retry::park::{ParkQueue, ParkRequest};
use crate::retry::{self, Job, RetryQueue};
use crate::secure::ssrf::Guard;
use crate::support::clock::now_ms;
use crate::support::shutdown::Shutdown;

/// The event as every one of its deliveries shares it.
#[derive(Debug)]
pub struct EventInfo {
    pub id: String,
    pub event_type: String,
    pub tenant: String,
    pub body: Bytes,
    /// Unix ms the event entered the stream.
    pub published_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// First attempt, straight from the input stream.
    Stream,
    /// Taken (leased) from the retry queue.
    Queue,
}

pub struct Delivery {
    pub id: String,
    pub event: Arc<EventInfo>,
    pub endpoint_id: Arc<str>,
    pub attempts: u32,
    pub first_attempt_at: i64,
    /// Unix ms this delivery's schedule began to count when it has no attempt yet.
    pub queued_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub source: Source,
    /// Its job in the retry queue is current (no attempt since it was read from there).
    pub stored: bool,
    /// The one attempt an open circuit allows.
    pub probe: bool,
    /// Its share of the room for deliveries held in memory; given up when it is parked or
    /// its attempt turns slow, so neither holds the consumer back.
    pub room: Option<OwnedSemaphorePermit>,
    /// A share of the slow budget taken for it in advance (by the backlog puller).
    pub slow_share: Option<SlowShare>,
}

impl Delivery {
    /// A first delivery of a stream entry's event.
    pub fn fresh(id: String, event: Arc<EventInfo>, endpoint_id: Arc<str>) -> Delivery {
        Delivery {
            id,
            event,
            endpoint_id,
            attempts: 0,
            first_attempt_at: 0,
            queued_at: now_ms(),
            last_status: None,
            last_error: None,
            source: Source::Stream,
            stored: false,
            probe: false,
            room: None,
            slow_share: None,
        }
    }

    pub fn from_job(job: Job) -> Delivery {
        Delivery {
            event: Arc::new(EventInfo {
                id: job.event_id,
                event_type: job.event_type,
                tenant: job.tenant,
                body: Bytes::from(job.body),
                published_at: job.published_at,
            }),
            endpoint_id: job.endpoint_id.into(),
            id: job.id,
            attempts: job.attempts,
            first_attempt_at: job.first_attempt_at,
            queued_at: job.queued_at,
            last_status: job.last_status,
            last_error: job.last_error,
            source: Source::Queue,
            stored: true,
            probe: false,
            room: None,
            slow_share: None,
        }
    }

    fn to_job(&self) -> Job {
        Job {
            id: self.id.clone(),
            tenant: self.event.tenant.clone(),
            endpoint_id: self.endpoint_id.to_string(),
            event_id: self.event.id.clone(),
            event_type: self.event.event_type.clone(),
            body: String::from_utf8_lossy(&self.event.body).into_owned(),
            attempts: self.attempts,
            first_attempt_at: self.first_attempt_at,
            published_at: self.event.published_at,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            deferrals: 0,
            queued_at: self.queued_at,
        }
    }

    /// When its schedule runs out: the sum of the delays after its first attempt (or after
    /// it was queued, if it has none yet).
    fn deadline(&self, schedule_total: Duration) -> i64 {
        let base = if self.first_attempt_at > 0 {
            self.first_attempt_at
        } else if self.queued_at > 0 {
            self.queued_at
        } else {
            self.event.published_at
        };
        base + schedule_total.as_millis() as i64
    }
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub timeout: Duration,
    pub per_endpoint: usize,
    /// The longest expected wait for a busy endpoint that a delivery sits out in memory;
    /// longer, and it is parked in Redis (see `lane`).
    pub lane_wait: Duration,
    pub schedule: Vec<Duration>,
    pub jitter: f64,
}

impl DispatchConfig {
    fn schedule_total(&self) -> Duration {
        self.schedule.iter().sum()
    }
}

/// Why a delivery was parked (the label of `webhookd_deliveries_parked_total`).
#[derive(Debug, Clone, Copy)]
enum Why {
    /// Its endpoint's circuit is open.
    Circuit,
    /// Its endpoint has parked deliveries already; it queues behind them.
    Backlog,
    /// Its rate-limit slot is more than `lane_wait` away.
    RateLimit,
    /// Its endpoint has no slot within `lane_wait`.
    Busy,
    /// Its endpoint is slow and the slow budget has no room.
    SlowBudget,
    /// Its endpoint exists in Redis but not (yet) in this replica's index.
    UnknownEndpoint,
    /// This replica cannot decode its endpoint (e.g. a secret under a key it lacks).
    Quarantined,
}

impl Why {
    fn label(self) -> &'static str {
        match self {
            Why::Circuit => "circuit",
            Why::Backlog => "backlog",
            Why::RateLimit => "rate_limit",
            Why::Busy => "busy",
            Why::SlowBudget => "slow_budget",
            Why::UnknownEndpoint => "unknown_endpoint",
            Why::Quarantined => "quarantined",
        }
    }
}

/// Why an API test send was not made.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("the endpoint has no free delivery slot; try again shortly")]
    Endpoint,
    #[error("webhookd is at its in-flight limit; try again shortly")]
    Overall,
}

pub struct Dispatcher {
    pub cfg: DispatchConfig,
    pub client: HttpClient,
    pub guard: Guard,
    pub live: LiveIndex,
    pub global: Arc<Semaphore>,
    pub slow: Arc<Budget>,
    pub retry: RetryQueue,
    pub park: ParkQueue,
    pub breaker: Arc<Breaker>,
    pub dlq: Dlq,
    pub log: AttemptLog,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub stop: Shutdown,
    /// Wakes the backlog puller when a backlogged lane frees a slot.
    pub wake: Arc<Notify>,
    /// Every running delivery, so shutdown can wait for them (slow ones hold no room).
    tasks: TaskTracker,
    lanes: Mutex<HashMap<Arc<str>, Arc<Lane>>>,
}

/// The parts a dispatcher works with.
pub struct Parts {
    pub client: HttpClient,
    pub guard: Guard,
    pub live: LiveIndex,
    pub max_in_flight: usize,
    pub retry: RetryQueue,
    pub park: ParkQueue,
    pub breaker: Arc<Breaker>,
    pub dlq: Dlq,
    pub log: AttemptLog,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub stop: Shutdown,
}

/// New slow attempts may together hold this share of `max_in_flight` (beside the quick ones),
/// one tenant half of that; attempts that turn slow while running, up to all of it.
const SLOW_SHARE: f64 = 0.75;

impl Dispatcher {
    pub fn new(cfg: DispatchConfig, p: Parts) -> Dispatcher {
        let slow_total = ((p.max_in_flight as f64 * SLOW_SHARE) as usize).max(1);
        Dispatcher {
            cfg,
            client: p.client,
            guard: p.guard,
            live: p.live,
            global: Arc::new(Semaphore::new(p.max_in_flight)),
            slow: Budget::new(slow_total, p.max_in_flight, slow_total.div_ceil(2)),
            retry: p.retry,
            park: p.park,
            breaker: p.breaker,
            dlq: p.dlq,
            log: p.log,
            store: p.store,
            metrics: p.metrics,
            stop: p.stop,
            wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Runs a delivery (or anything that ends in one) as a task shutdown waits for.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits until every delivery task has ended; none may start after this is called.
    pub async fn drained(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    pub fn lane(&self, id: &Arc<str>) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("lane map");
        lanes
            .entry(id.clone())
            .or_insert_with(|| Lane::new(self.cfg.per_endpoint))
            .clone()
    }

    /// The lane of an endpoint, if this replica has one.
    pub fn lane_if_any(&self, id: &str) -> Option<Arc<Lane>> {
        self.lanes.lock().expect("lane map").get(id).cloned()
    }

    /// Drops lanes with nothing in flight, waiting or parked (deleted or quiet endpoints).
    pub fn prune_lanes(&self) {
        let live = self.live.snapshot();
        self.lanes.lock().expect("lane map").retain(|id, lane| {
            !lane.idle() || (live.endpoint(id).is_some() && Arc::strong_count(lane) > 1)
        });
    }

    /// Clears the backlog flag of lanes whose endpoint has nothing parked any more (drained
    /// by another replica), so their new deliveries stop queueing behind an empty backlog.
    pub async fn refresh_backlog_flags(&self) -> redis::RedisResult<()> {
        let flagged: Vec<(Arc<str>, Arc<Lane>)> = self
            .lanes
            .lock()
            .expect("lane map")
            .iter()
            .filter(|(_, l)| l.backlogged.load(Ordering::Relaxed))
            .map(|(id, l)| (id.clone(), l.clone()))
            .collect();
        for chunk in flagged.chunks(500) {
            let depths = self.park.depths(chunk.iter().map(|(id, _)| &**id)).await?;
            for ((_, lane), depth) in chunk.iter().zip(depths) {
                if depth == 0 {
                    lane.backlogged.store(false, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Per-endpoint attempts in flight in this replica.
    pub fn in_flight(&self) -> Vec<(Arc<str>, usize)> {
        self.lanes
            .lock()
            .expect("lane map")
            .iter()
            .filter(|(_, l)| l.in_flight() > 0)
            .map(|(id, l)| (id.clone(), l.in_flight()))
            .collect()
    }

    /// Runs a delivery to its end. True when its fate is safely recorded (delivered, queued
    /// for a retry, parked, or dead-lettered), so the stream entry it came from may be
    /// acknowledged.
    pub async fn deliver(&self, mut d: Delivery) -> bool {
        let ep = self.live.snapshot().endpoint(&d.endpoint_id).cloned();
        let Some(ep) = ep else {
            return self.endpoint_missing(d).await;
        };
        if ep.disabled {
            d.last_error = Some("endpoint disabled".into());
            return self.dead_letter(&d).await;
        }
        let lane = self.lane(&ep.id);
        if ep.quarantined.is_some() {
            return self.park(d, &lane, Why::Quarantined).await;
        }
        if !d.probe && self.breaker.blocks(&ep.id) {
            return self.park(d, &lane, Why::Circuit).await;
        }
        // Fresh deliveries queue behind a parked backlog rather than overtake it.
        if d.source == Source::Stream && lane.backlogged.load(Ordering::Relaxed) {
            return self.park(d, &lane, Why::Backlog).await;
        }
        // Under a rate limit, the delivery waits for its slot, or is parked if that is far.
        if let Some(per_sec) = ep.rate_limit.filter(|_| !d.probe) {
            match lane.reserve(per_sec, self.cfg.lane_wait) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                Some(_) => {}
                None => return self.park(d, &lane, Why::RateLimit).await,
            }
        }
        let slot = match lane.admit(self.cfg.lane_wait).await {
            Admission::Go(s) => s,
            Admission::Park => return self.park(d, &lane, Why::Busy).await,
        };
        if !d.probe && self.breaker.blocks(&ep.id) {
            drop(slot);
            return self.park(d, &lane, Why::Circuit).await;
        }
        // A slow endpoint's attempt needs a share of the slow budget instead of quick room,
        // and holds none of the consumer's room.
        let mut share = None;
        if lane.is_slow() {
            match d
                .slow_share
                .take()
                .or_else(|| self.slow.try_take(&ep.tenant))
            {
                Some(s) => share = Some(s),
                None => {
                    drop(slot);
                    return self.park(d, &lane, Why::SlowBudget).await;
                }
            }
            d.room = None;
        }
        let mut quick = match share {
            Some(_) => None,
            None => Some(
                self.global
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed"),
            ),
        };
        let now = now_ms();
        if d.first_attempt_at == 0 {
            d.first_attempt_at = now;
        }
        self.metrics.in_flight.inc();
        let event = d.event.clone();
        let send = attempt::send(
            &self.client,
            &self.guard,
            AttemptSpec {
                endpoint: &ep,
                msg_id: &event.id,
                body: &event.body,
                timeout: self.cfg.timeout,
                now_ms: now,
            },
        );
        tokio::pin!(send);
        let outcome = if share.is_some() {
            send.await
        } else {
            tokio::select! {
                o = &mut send => o,
                _ = tokio::time::sleep(SLOW_AFTER) => {
                    // Turned slow: its quick room goes back to the quick endpoints, and the
                    // consumer reads on.
                    share = self.slow.take_running(&ep.tenant);
                    if share.is_some() {
                        quick = None;
                        d.room = None;
                    }
                    send.await
                }
            }
        };
        self.metrics.in_flight.dec();
        drop(quick);
        drop(share);
        lane.finished(outcome.latency, outcome.succeeded());
        drop(slot);
        if lane.backlogged.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
        d.attempts += 1;
        d.stored = false;
        self.metrics
            .attempt_duration
            .observe(outcome.latency.as_secs_f64());
        self.finish(d, &ep, &lane, outcome).await
    }

    /// An endpoint not in this replica's index: gone only if Redis agrees; otherwise (a
    /// record this replica has not loaded yet, or cannot decode) the delivery is parked.
    async fn endpoint_missing(&self, d: Delivery) -> bool {
        match self.store.get(&d.endpoint_id).await {
            Ok(None) => self.settled(&d).await,
            Ok(Some(_)) => {
                let lane = self.lane(&d.endpoint_id);
                self.park(d, &lane, Why::UnknownEndpoint).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether an endpoint exists; keeping its delivery");
                false
            }
        }
    }

    async fn finish(&self, mut d: Delivery, ep: &Endpoint, lane: &Lane, outcome: Outcome) -> bool {
        let gone = outcome.status == Some(410);
        self.log.record(AttemptRecord {
            at: now_ms(),
            event_id: d.event.id.clone(),
            attempt: d.attempts,
            status: outcome.status,
            latency_ms: outcome.latency.as_millis() as u64,
            error: outcome.error.clone(),
            response: outcome.response.clone(),
            endpoint_id: ep.id.to_string(),
            gone,
        });
        d.last_status = outcome.status;
        d.last_error = outcome.error.clone();
        if outcome.succeeded() {
            if let Err(e) = self.breaker.record_success(&ep.id).await {
                tracing::warn!(endpoint = %ep.id, error = %e, "recording a success on the circuit failed");
            }
            self.metrics.delivered.inc();
            let lag = (now_ms() - d.event.published_at).max(0) as f64 / 1000.0;
            self.metrics.event_to_delivery.observe(lag);
            tracing::debug!(endpoint = %ep.id, event = %d.event.id, status = outcome.status, attempt = d.attempts, "delivered");
            return self.settled(&d).await;
        }
        tracing::info!(
            endpoint = %ep.id, event = %d.event.id, attempt = d.attempts,
            status = outcome.status, error = outcome.error.as_deref().unwrap_or(""),
            "attempt failed"
        );
        if gone {
            let reason = "endpoint answered 410 Gone";
            let disabled = self
                .persist(|| attempt_log::disable(&self.store, &ep.id, reason))
                .await;
            if disabled {
                self.metrics.endpoints_disabled.inc();
            }
            return self.dead_letter(&d).await;
        }
        let error = outcome.failure_text();
        if let Err(e) = self
            .breaker
            .record_failure(&ep.id, &error, outcome.retry_after, d.probe)
            .await
        {
            tracing::warn!(endpoint = %ep.id, error = %e, "recording a failure on the circuit failed");
        }
        let unit: f64 = rand::random();
        match retry::next_delay(
            &self.cfg.schedule,
            d.attempts,
            self.cfg.jitter,
            unit,
            outcome.retry_after,
        ) {
            // The circuit is open: wait in the backlog for the probe, not on a timer.
            Some(_) if self.breaker.blocks(&ep.id) => {
                d.probe = false;
                self.park(d, lane, Why::Circuit).await
            }
            Some(delay) => {
                self.metrics.retried.inc();
                let due = now_ms() + delay.as_millis() as i64;
                let job = d.to_job();
                self.persist(|| self.retry.schedule(&job, due)).await
            }
            None => self.dead_letter(&d).await,
        }
    }

    async fn dead_letter(&self, d: &Delivery) -> bool {
        self.metrics.dead.inc();
        let job = d.to_job();
        let Some(trimmed) = self.persisted(|| self.dlq.add(&job)).await else {
            return false;
        };
        self.metrics.dlq_trimmed.inc_by(trimmed);
        self.settled(d).await
    }

    /// Dead-letters a parked delivery whose schedule ran out while its circuit was open.
    pub async fn expire(&self, mut d: Delivery) -> bool {
        let last = self
            .breaker
            .circuit(&d.endpoint_id)
            .map(|c| c.last_error)
            .or(d.last_error.take())
            .unwrap_or_else(|| "no attempt succeeded".into());
        d.last_error = Some(format!("circuit open: {last}"));
        self.dead_letter(&d).await
    }

    /// A delivery's fate is recorded: one taken from the retry queue leaves it. False only if
    /// that removal never landed (its lease then makes it due again).
    async fn settled(&self, d: &Delivery) -> bool {
        match d.source {
            Source::Queue => self.persist(|| self.retry.complete(&d.id)).await,
            Source::Stream => true,
        }
    }

    /// Parks a delivery in its endpoint's backlog in Redis, without an attempt: written once,
    /// then it waits for a slot or for its circuit's probe.
    /// Its room is held until the write lands, so parking too is bounded in memory.
    async fn park(&self, d: Delivery, lane: &Lane, why: Why) -> bool {
        self.metrics.parked(why.label());
        let req = ParkRequest {
            id: d.id.clone(),
            endpoint_id: d.endpoint_id.clone(),
            deadline: d.deadline(self.cfg.schedule_total()),
            job: (!d.stored).then(|| serde_json::to_string(&d.to_job()).expect("jobs serialize")),
            from_due: d.source == Source::Queue,
        };
        let ok = self.persist(|| self.park.park(req.clone())).await;
        if ok {
            lane.backlogged.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// One signed test delivery through the same limits as every delivery (the endpoint's
    /// slots and rate limit, and the overall in-flight limit), or why not now.
    pub async fn test_send(
        &self,
        ep: &Endpoint,
        msg_id: &str,
        body: &Bytes,
    ) -> Result<Outcome, Busy> {
        let lane = self.lane(&ep.id);
        if let Some(per_sec) = ep.rate_limit {
            match lane.reserve(per_sec, self.cfg.lane_wait) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(Busy::Endpoint),
            }
        }
        let slot = match lane.admit(self.cfg.lane_wait).await {
            Admission::Go(s) => s,
            Admission::Park => return Err(Busy::Endpoint),
        };
        let global = tokio::time::timeout(self.cfg.lane_wait, self.global.acquire())
            .await
            .map_err(|_| Busy::Overall)?
            .expect("never closed");
        self.metrics.in_flight.inc();
        let outcome = attempt::send(
            &self.client,
            &self.guard,
            AttemptSpec {
                endpoint: ep,
                msg_id,
                body,
                timeout: self.cfg.timeout,
                now_ms: now_ms(),
            },
        )
        .await;
        self.metrics.in_flight.dec();
        drop(global);
        lane.finished(outcome.latency, outcome.succeeded());
        drop(slot);
        Ok(outcome)
    }

    /// Retries a Redis write with backoff until it lands or shutdown; false if it never did.
    async fn persist<F, Fut, T>(&self, op: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.persisted(op).await.is_some()
    }

    /// As `persist`, with what the write answered.
    async fn persisted<F, Fut, T>(&self, op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        op.retry(crate::support::backoff::policy(Duration::from_millis(50)))
            .when(|_| !self.stop.begun())
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "redis write failed; retrying"))
            .await
            .ok()
    }
}
