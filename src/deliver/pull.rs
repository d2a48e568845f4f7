//! Moves work from Redis back into the dispatcher: due retries, and parked backlogs (drained
//! as their endpoint's lane has room, probed while its circuit is open, swept when their
//! schedule runs out).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::deliver::delivery::Delivery;
use crate::deliver::dispatcher::Dispatcher;
use crate::deliver::lane::SlowShare;
use crate::deliver::looks::Looks;
use crate::ops::health::Health;
use crate::retry::park::Probe;
use crate::retry::shards::Queue;
use crate::retry::{Job, RetryQueue};
use crate::support::clock::now_ms;
use crate::support::shutdown::Shutdown;

/// Deliveries taken per script call.
const TAKE: usize = 500;
/// Pause when nothing was due (for one queue; more queues are each looked at less often).
const IDLE: Duration = Duration::from_millis(100);
/// How often the quarantine is looked at for jobs this build can read, and how many at most.
const RESTORE_EVERY: Duration = Duration::from_secs(60);
const RESTORE_LOOK: usize = 1000;

pub(crate) async fn run(
    queue: RetryQueue,
    dispatcher: Arc<Dispatcher>,
    outstanding: Arc<Semaphore>,
    lease: Duration,
    health: Arc<Health>,
    stop: Shutdown,
) {
    let mut next_restore = tokio::time::Instant::now();
    let queues: Vec<Queue> = queue.shards().all().map(|(q, _)| q).collect();
    let mut looks = Looks::new(queues.len(), IDLE);
    while !stop.begun() {
        let now = tokio::time::Instant::now();
        if now >= next_restore {
            next_restore = now + RESTORE_EVERY;
            if let Err(e) = queue.restore_quarantined(RESTORE_LOOK).await {
                tracing::warn!(error = %e, "looking at quarantined retry jobs failed");
            }
        }
        for (i, &q) in queues.iter().enumerate() {
            if stop.begun() {
                return;
            }
            if !looks.due(i, now) {
                continue;
            }
            match take(&queue, q, &dispatcher, &outstanding, lease, &health, &stop).await {
                // No room: it waited a little; look again at once.
                None => {}
                Some(Took::Full) => looks.yielded(i, now, Duration::ZERO),
                Some(Took::Some) => looks.yielded(i, now, IDLE),
                Some(Took::Nothing(next_due)) => {
                    looks.empty(i, now);
                    if let Some(due) = next_due {
                        let ahead = (due - now_ms()).max(0) as u64;
                        looks.not_after(i, now + Duration::from_millis(ahead));
                    }
                }
            }
        }
        let wait = looks
            .earliest()
            .saturating_duration_since(tokio::time::Instant::now());
        if !wait.is_zero() {
            stop.sleep(wait).await;
        }
    }
}

/// What one take from a queue found.
pub(crate) enum Took {
    /// As many as there was room for: there may be more.
    Full,
    Some,
    /// Nothing due; the next is due at this Unix ms, if there is one.
    Nothing(Option<i64>),
}

/// Takes what is due in one queue, as far as there is room (`None`: there was none).
pub(crate) async fn take(
    queue: &RetryQueue,
    q: Queue,
    dispatcher: &Arc<Dispatcher>,
    outstanding: &Arc<Semaphore>,
    lease: Duration,
    health: &Health,
    stop: &Shutdown,
) -> Option<Took> {
    let room = outstanding.available_permits().min(TAKE);
    if room == 0 {
        stop.sleep(Duration::from_millis(10)).await;
        return None;
    }
    let now = now_ms();
    let taken = queue
        .take_due(q, now, room, now + lease.as_millis() as i64)
        .await;
    health.note("taking due retries", &taken);
    let (jobs, next_due) = match taken {
        Ok(taken) => {
            dispatcher
                .metrics
                .retry_jobs_quarantined
                .inc_by(taken.quarantined as u64);
            (taken.jobs, taken.next_due)
        }
        Err(e) => {
            tracing::warn!(error = %e, "taking due retries failed");
            stop.sleep(Duration::from_secs(1)).await;
            return Some(Took::Nothing(None));
        }
    };
    let took = match jobs.len() {
        0 => Took::Nothing(next_due),
        n if n == room => Took::Full,
        _ => Took::Some,
    };
    for job in jobs {
        let room = outstanding
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        spawn(dispatcher, job, q, Some(room), |d, del| async move {
            d.deliver(del).await
        });
    }
    Some(took)
}

/// Endpoints with a backlog looked at per pass.
const BACKLOGS_PER_PASS: usize = 512;
/// Parked deliveries pulled for one endpoint at a time, at most.
const PULL_MAX: usize = 256;
/// Expired parked deliveries taken at once for an endpoint, and sweeps of that many in one
/// look at its backlog (a look's dead letters run as tasks at once: bounded).
const SWEEP: usize = 100;
const SWEEPS: usize = 20;
/// Pause between passes over the backlogs (a lane with room wakes the puller sooner).
const PARKED_EVERY: Duration = Duration::from_millis(100);

/// Pulls parked deliveries back as their endpoints can take them.
pub(crate) async fn run_parked(
    dispatcher: Arc<Dispatcher>,
    outstanding: Arc<Semaphore>,
    lease: Duration,
    health: Arc<Health>,
    stop: Shutdown,
) {
    let wake = dispatcher.wake.clone();
    let shards = dispatcher.park.shards().clone();
    // Passes walk each queue's ready backlogs a page at a time, so every one gets its turn
    // however many there are.
    let mut offsets: Vec<(Queue, usize)> = shards.all().map(|(q, _)| (q, 0)).collect();
    let mut looks = Looks::new(offsets.len(), PARKED_EVERY);
    while !stop.begun() {
        let (now, now_ms) = (tokio::time::Instant::now(), now_ms());
        for (i, (q, offset)) in offsets.iter_mut().enumerate() {
            if !looks.due(i, now) {
                continue;
            }
            // A queue being drained is drained at once, whenever its backlogs were due a look.
            let until = if shards.is_drained(*q) {
                i64::MAX
            } else {
                now_ms
            };
            let ready = dispatcher
                .park
                .ready(*q, until, *offset, BACKLOGS_PER_PASS)
                .await;
            health.note("reading the parked backlogs", &ready);
            match ready {
                Ok(endpoints) => {
                    *offset = if endpoints.len() < BACKLOGS_PER_PASS {
                        0
                    } else {
                        *offset + BACKLOGS_PER_PASS
                    };
                    if endpoints.is_empty() {
                        looks.empty(i, now);
                    } else {
                        looks.yielded(i, now, PARKED_EVERY);
                    }
                    for ep in endpoints {
                        let at_home = !shards.is_drained(*q) && shards.home_of(&ep) == *q;
                        let pulled = if at_home {
                            pull(&dispatcher, &outstanding, &ep, lease).await
                        } else {
                            drain(&dispatcher, &outstanding, *q, &ep, lease).await
                        };
                        health.note("pulling parked deliveries", &pulled);
                        if let Err(e) = pulled {
                            tracing::warn!(endpoint = %ep, error = %e, "pulling parked deliveries failed");
                        }
                    }
                }
                Err(e) => {
                    looks.empty(i, now);
                    tracing::warn!(error = %e, "reading the parked backlogs failed")
                }
            }
        }
        // A lane with room wakes the look at the queues with backlogs.
        tokio::select! {
            _ = tokio::time::sleep_until(looks.earliest()) => {}
            _ = wake.notified() => looks.wake(),
            _ = stop.wait() => {}
        }
    }
}

/// Moves a backlog left in a queue that is not its endpoint's home (an earlier shard count)
/// on: its deliveries are taken as they are, and each is delivered or parked again at home.
async fn drain(
    d: &Arc<Dispatcher>,
    outstanding: &Arc<Semaphore>,
    q: Queue,
    ep: &str,
    lease: Duration,
) -> redis::RedisResult<()> {
    let rooms: Vec<OwnedSemaphorePermit> = (0..PULL_MAX)
        .map_while(|_| outstanding.clone().try_acquire_owned().ok())
        .collect();
    if rooms.is_empty() {
        return Ok(());
    }
    let lease_until = now_ms() + lease.as_millis() as i64;
    // Its circuit there is stale (the home's counts): cleared, so everything may go.
    let (_, jobs) = d.park.take(q, ep, rooms.len(), lease_until, true).await?;
    for ((_, job), room) in jobs.into_iter().zip(rooms) {
        if let Some(job) = job {
            spawn(d, job, q, Some(room), |d, del| async move {
                d.deliver(del).await
            });
        }
    }
    Ok(())
}

async fn pull(
    d: &Arc<Dispatcher>,
    outstanding: &Arc<Semaphore>,
    ep: &str,
    lease: Duration,
) -> redis::RedisResult<()> {
    let home = d.park.shards().home_of(ep);
    let now = now_ms();
    let lease_until = now + lease.as_millis() as i64;
    let id: Arc<str> = Arc::from(ep);
    // One look at the index for the whole pass over this endpoint.
    let endpoint = d.live.snapshot().endpoint(ep).cloned();
    let known = endpoint.is_some();
    let gone = !known && d.store.get(ep).await?.is_none();
    if !gone && d.breaker.blocks(ep) {
        // Open: dead-letter what waited past its schedule, and probe when it is time. The
        // backlog is looked at again only at the next probe, so a look takes up to
        // `SWEEPS` sweeps: one sweep a look took 100 a probe, N/100 probes for N expired.
        for _ in 0..SWEEPS {
            let expired = d.park.take_expired(ep, now, SWEEP, lease_until).await?;
            let more = expired.len() == SWEEP;
            for (_, job) in expired {
                if let Some(job) = job {
                    spawn(
                        d,
                        job,
                        home,
                        None,
                        |d, del| async move { d.expire(del).await },
                    );
                }
            }
            if !more {
                break;
            }
        }
        if let Probe::Take(Some(job)) = d.park.take_probe(ep, now, lease_until).await? {
            d.breaker.note_half_open(&id, lease_until);
            let room = outstanding.clone().try_acquire_owned().ok();
            spawn(d, *job, home, room, |d, mut del| async move {
                del.probe = true;
                d.deliver(del).await
            });
        }
        return Ok(());
    }
    if !known && !gone {
        return Ok(()); // not loaded here yet; another pass will see it
    }
    if endpoint.as_ref().is_some_and(|e| e.quarantined.is_some()) {
        return Ok(()); // a replica that can deliver them pulls them
    }
    let lane = d.lane(&id);
    let tenant = endpoint.as_ref().map(|e| e.tenant.clone());
    let slow = tenant.is_some() && lane.is_slow();
    let want = match &endpoint {
        None => PULL_MAX,
        Some(_) if slow => lane.free(),
        // Under a rate limit, only those whose slot is near enough to wait for in memory.
        Some(e) => e
            .rate_limit
            .map_or(usize::MAX, |r| lane.slots_within(r, d.cfg.lane_wait))
            .min(lane.room(d.cfg.lane_wait)),
    }
    .min(PULL_MAX);
    let rooms: Vec<OwnedSemaphorePermit> = (0..want)
        .map_while(|_| outstanding.clone().try_acquire_owned().ok())
        .collect();
    // A slow endpoint's pulled deliveries carry their share of the slow budget, taken here, so
    // no more are pulled than can start.
    let mut shares: Vec<SlowShare> = match (&tenant, slow) {
        (Some(t), true) => (0..rooms.len()).map_while(|_| d.slow.try_take(t)).collect(),
        _ => Vec::new(),
    };
    let take = if slow { shares.len() } else { rooms.len() };
    if take == 0 {
        return Ok(());
    }
    // Without a breaker (or for an endpoint that is gone), a stale circuit must not hold it.
    let clear = gone || !d.breaker.enabled();
    let (emptied, jobs) = d.park.take(home, ep, take, lease_until, clear).await?;
    for ((_, job), room) in jobs.into_iter().zip(rooms) {
        if let Some(job) = job {
            let share = shares.pop();
            spawn(d, job, home, Some(room), |d, mut del| async move {
                del.slow_share = share;
                d.deliver(del).await
            });
        }
    }
    // After the last of the backlog is on its way: fresh deliveries waiting behind it follow.
    lane.set_backlogged(!emptied);
    Ok(())
}

fn spawn<F, Fut>(
    d: &Arc<Dispatcher>,
    job: Job,
    from: Queue,
    room: Option<OwnedSemaphorePermit>,
    run: F,
) where
    F: FnOnce(Arc<Dispatcher>, Delivery) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let mut del = Delivery::from_job(job, from);
    del.room = room;
    let d2 = d.clone();
    // Whatever happens, the lease makes an unrecorded delivery due again.
    d.spawn(async move {
        run(d2, del).await;
    });
}
