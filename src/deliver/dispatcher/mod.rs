//! One delivery's life: wait briefly for room at its endpoint (or park in its backlog), attempt,
//! then record its fate (delivered, scheduled again, parked, or dead-lettered) before the
//! caller may acknowledge it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

mod fate;
mod stale;
mod test_send;
mod upkeep;

use crate::deliver::attempt::{self, AttemptSpec};
use crate::deliver::attempt_log::AttemptLog;
use crate::deliver::breaker::Breaker;
use crate::deliver::client::HttpClient;
use crate::deliver::decide::{self, Before, Gate, Why};
use crate::deliver::delivery::{Delivery, Source};
use crate::deliver::hosts::Hosts;
use crate::deliver::lane::{Admission, Budget, Lane, Slot, SlowShare};
use crate::deliver::lanes::Lanes;
use crate::deliver::tenant_room::{TenantRoom, TenantRooms};
use crate::ids::TenantId;
use crate::notice::Notices;
use crate::ops::metrics::Metrics;
use crate::ops::trace::{AttemptFacts, Tracer};
use crate::registry::{Endpoint, LiveIndex, Store};
use crate::retry::dlq::Dlq;
use crate::retry::park::ParkQueue;
use crate::retry::RetryQueue;
use crate::secure::ssrf::Guard;
use crate::support::clock::now_ms;
use crate::support::hot::Placement;
use crate::support::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub(crate) struct DispatchConfig {
    pub(crate) timeout: Duration,
    pub(crate) per_endpoint: usize,
    /// The longest expected wait for a busy endpoint that a delivery sits out in memory;
    /// longer, and it is parked in Redis (see `lane`).
    pub(crate) lane_wait: Duration,
    pub(crate) schedule: Vec<Duration>,
    pub(crate) jitter: f64,
}

impl DispatchConfig {
    fn schedule_total(&self) -> Duration {
        self.schedule.iter().sum()
    }
}

/// What an admitted delivery holds besides its lane slot: quick room and room at its host, or
/// a share of the slow budget.
struct Held {
    quick: Option<OwnedSemaphorePermit>,
    share: Option<SlowShare>,
    /// Its tenant's room at its host (quick attempts only).
    host: Option<OwnedSemaphorePermit>,
}

/// The deliver stage's hub: it owns the lanes, the budgets and the stores a delivery's fate
/// is written to. Outside the stage it offers `deliver`, `expire`, `test_send`, `spawn`,
/// `drained`, lane upkeep and a look at its circuits and endpoints; `pull` (inside the stage) reads its parts.
pub(crate) struct Dispatcher {
    pub(super) cfg: DispatchConfig,
    client: HttpClient,
    guard: Guard,
    pub(super) live: LiveIndex,
    global: Arc<Semaphore>,
    pub(super) slow: Arc<Budget>,
    retry: RetryQueue,
    pub(super) park: ParkQueue,
    pub(super) breaker: Arc<Breaker>,
    dlq: Dlq,
    log: AttemptLog,
    pub(super) store: Store,
    pub(super) metrics: Arc<Metrics>,
    /// None when traces are off.
    tracer: Option<Tracer>,
    stop: Shutdown,
    pub(super) notices: Notices,
    /// Wakes the backlog puller when a backlogged lane frees a slot.
    pub(super) wake: Arc<Notify>,
    /// Every running delivery, so shutdown can wait for them (slow ones hold no room).
    tasks: TaskTracker,
    /// Which runtime a fresh delivery from the stream runs on.
    placement: Placement,
    lanes: Lanes,
    hosts: Hosts,
    tenant_rooms: TenantRooms,
}

/// The parts a dispatcher works with.
pub(crate) struct Parts {
    pub(crate) client: HttpClient,
    pub(crate) guard: Guard,
    pub(crate) live: LiveIndex,
    pub(crate) max_in_flight: usize,
    /// The room the consumers share for fresh deliveries (each tenant may hold half).
    pub(crate) consumer_room: usize,
    pub(crate) retry: RetryQueue,
    pub(crate) park: ParkQueue,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) dlq: Dlq,
    pub(crate) log: AttemptLog,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracer: Option<Tracer>,
    pub(crate) stop: Shutdown,
    /// Operational events: circuits, a 410's disable, dead letters.
    pub(crate) notices: Notices,
    /// The hot path's runtime (`support::hot`).
    pub(crate) hot: tokio::runtime::Handle,
}

/// New slow attempts may together hold this share of `max_in_flight` (beside the quick ones),
/// one tenant half of that; attempts that turn slow while running, up to all of it.
const SLOW_SHARE: f64 = 0.75;

impl Dispatcher {
    pub(crate) fn new(cfg: DispatchConfig, p: Parts) -> Dispatcher {
        let per_endpoint = cfg.per_endpoint;
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
            tracer: p.tracer,
            stop: p.stop,
            notices: p.notices,
            wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            placement: Placement::new(p.hot),
            lanes: Lanes::new(per_endpoint),
            hosts: Hosts::new(p.max_in_flight, per_endpoint),
            tenant_rooms: TenantRooms::new(p.consumer_room),
        }
    }

    /// Runs a delivery (or anything that ends in one) as a task shutdown waits for.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Runs a delivery read from the stream: on the hot thread if `hot` and it has room
    /// (`support::hot`), else like `spawn`.
    pub(crate) fn spawn_delivery<F>(&self, task: F, hot: bool)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.placement.spawn(&self.tasks, task, hot);
    }

    /// Waits until every delivery task has ended; none may start after this is called.
    pub(crate) async fn drained(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The circuits as this replica sees them (the portal shows them).
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The endpoints as this replica dispatches to them.
    pub(crate) fn live(&self) -> &LiveIndex {
        &self.live
    }

    /// A tenant's share of the consumer's room.
    pub(crate) fn tenant_room(&self, tenant: &TenantId) -> Arc<TenantRoom> {
        self.tenant_rooms.of(tenant)
    }

    pub(crate) fn lane(&self, id: &Arc<str>) -> Arc<Lane> {
        self.lanes.get(id)
    }

    /// Per-endpoint attempts in flight in this replica.
    pub(crate) fn in_flight(&self) -> Vec<(Arc<str>, usize)> {
        self.lanes.in_flight()
    }

    /// Runs a delivery to its end. True when its fate is safely recorded (delivered, queued
    /// for a retry, parked, or dead-lettered), so the stream entry it came from may be
    /// acknowledged.
    pub(crate) async fn deliver(&self, mut d: Delivery) -> bool {
        let ep = self.live.snapshot().endpoint(&d.endpoint_id).cloned();
        let Some(ep) = ep else {
            return Box::pin(self.endpoint_missing(d)).await;
        };
        let lane = self.lane(&ep.id);
        // Past its tenant's half of the room, only a delivery to an endpoint that has answered
        // is held without asking (`tenant_room`); boxed, as the wait it may take is rare.
        let crowded = match d.past_share.take() {
            Some(share) if !lane.answered() => Box::pin(share.turns_away(&lane)).await,
            _ => false,
        };
        let gate = Gate {
            disabled: ep.disabled,
            quarantined: ep.quarantined.is_some(),
            circuit_open: self.breaker.blocks(&ep.id),
            probe: d.probe,
            fresh: d.source == Source::Stream,
            backlogged: lane.backlogged(),
            crowded,
        };
        match decide::before(gate) {
            // Enabled in Redis since this replica's index was refreshed (an enable followed
            // at once by a replay, say): it waits for the index instead of dying again. Boxed
            // like every rare path here: inline, its Redis call would grow every delivery's
            // future.
            Before::DeadLetter(_)
                if ep.disabled && Box::pin(self.enabled_in_store(&ep.id)).await =>
            {
                return Box::pin(self.park(d, &lane, Why::UnknownEndpoint)).await;
            }
            Before::DeadLetter(why) => {
                d.last_error = Some(why.into());
                return Box::pin(self.dead_letter(&d)).await;
            }
            // Behind a backlog a fresh delivery may wait for it to drain, as it may wait for
            // a slot (`Lane::wait_behind`).
            Before::Park(Why::Backlog) if lane.wait_behind(self.cfg.lane_wait).await => {}
            Before::Park(why) => return Box::pin(self.park(d, &lane, why)).await,
            Before::Attempt => {}
        }
        // Under a rate limit, the delivery waits for its slot, or is parked if that is far.
        if let Some(per_sec) = ep.rate_limit.filter(|_| !d.probe) {
            match lane.reserve(per_sec, self.cfg.lane_wait) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                Some(_) => {}
                None => return Box::pin(self.park(d, &lane, Why::RateLimit)).await,
            }
        }
        let slot = match lane.admit(self.cfg.lane_wait).await {
            Admission::Go(s) => s,
            Admission::Park => return Box::pin(self.park(d, &lane, Why::Busy)).await,
        };
        if !d.probe && self.breaker.blocks(&ep.id) {
            drop(slot);
            return Box::pin(self.park(d, &lane, Why::Circuit)).await;
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
                    return Box::pin(self.park(d, &lane, Why::SlowBudget)).await;
                }
            }
            d.leave_room();
        }
        // A tenant's quick attempts to one host are bounded (`hosts`), asked for only with a
        // lane slot in hand: the lane's own bounds (wait briefly or park) keep how many
        // deliveries wait here, holding the consumer's room, to one per slot.
        let host = match share {
            Some(_) => None,
            None => Some(self.hosts.room(&ep).await),
        };
        let quick = match share {
            Some(_) => None,
            None => Some(
                self.global
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed"),
            ),
        };
        // Boxed: thousands of deliveries may wait above (for their lane, for room), and a
        // waiting task is as large as its largest state; this one holds the attempt's.
        Box::pin(self.attempt(d, ep, lane, slot, Held { quick, share, host })).await
    }

    /// The attempt of an admitted delivery, then its fate.
    async fn attempt(
        &self,
        mut d: Delivery,
        ep: Arc<Endpoint>,
        lane: Arc<Lane>,
        slot: Slot,
        held: Held,
    ) -> bool {
        let Held {
            mut quick,
            mut share,
            mut host,
        } = held;
        let now = now_ms();
        if d.first_attempt_at == 0 {
            d.first_attempt_at = now;
        }
        self.metrics.in_flight.inc();
        let event = d.event.clone();
        let span = self
            .tracer
            .as_ref()
            .map(|t| t.attempt_begins(event.trace, &event.body));
        // The send is most of an attempt's size. Pinned where it is made (`tokio::pin!` would
        // move it into a second place), inside a future awaited once: one awaited at two
        // points keeps its place beside `finish`'s future instead of sharing it.
        let outcome = async {
            let mut send = std::pin::pin!(attempt::send(
                &self.client,
                &self.guard,
                AttemptSpec {
                    endpoint: &ep,
                    msg_id: &event.id,
                    body: &event.body,
                    timeout: self.cfg.timeout,
                    now_ms: now,
                    traceparent: span.map(|s| s.context),
                },
            ));
            if share.is_some() {
                send.await
            } else {
                tokio::select! {
                    o = &mut send => o,
                    _ = tokio::time::sleep(lane.slow_after()) => {
                        // Turned slow: its quick room goes back to the quick endpoints, and
                        // the consumer reads on.
                        share = self.slow.take_running(&ep.tenant);
                        if share.is_some() {
                            quick = None;
                            host = None;
                            d.leave_room();
                        }
                        send.await
                    }
                }
            }
        }
        .await;
        self.metrics.in_flight.dec();
        drop(quick);
        drop(host);
        drop(share);
        lane.finished(outcome.latency, outcome.succeeded());
        if let Some(place) = &d.place {
            place.finished();
        }
        drop(slot);
        if lane.backlogged() {
            self.wake.notify_one();
        }
        d.attempts += 1;
        d.stored = false;
        if let (Some(tracer), Some(span)) = (&self.tracer, span) {
            let facts = AttemptFacts {
                event_id: &event.id,
                endpoint_id: &ep.id,
                url: &ep.url,
                attempt: d.attempts,
                status: outcome.status,
                latency: outcome.latency,
                error: outcome.error.as_deref(),
            };
            tracer.attempt_ends(span, facts);
        }
        self.metrics
            .attempt_duration
            .observe(outcome.latency.as_secs_f64());
        self.finish(d, &ep, &lane, outcome).await
    }
}
