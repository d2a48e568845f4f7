//! One delivery's life: wait for room at its endpoint, attempt, then record its fate
//! (delivered, scheduled again, or dead-lettered) before the caller may acknowledge it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::attempt_log::{self, AttemptLog, AttemptRecord};
use crate::clock::now_ms;
use crate::deliver::attempt::{self, AttemptSpec, Outcome};
use crate::deliver::client::HttpClient;
use crate::deliver::ssrf::Guard;
use crate::dlq::Dlq;
use crate::lane::{Admission, Lane};
use crate::metrics::Metrics;
use crate::registry::{Endpoint, LiveIndex, Store};
use crate::retry::{self, Job, RetryQueue};

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

#[derive(Debug)]
pub struct Delivery {
    pub id: String,
    pub event: Arc<EventInfo>,
    pub endpoint_id: Arc<str>,
    pub attempts: u32,
    pub first_attempt_at: i64,
    /// Times this delivery was handed back to the queue unattempted (saturated endpoint).
    pub deferrals: u32,
    pub source: Source,
}

impl Delivery {
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
            deferrals: job.deferrals,
            source: Source::Queue,
        }
    }

    fn to_job(&self, last: Option<&Outcome>) -> Job {
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
            last_status: last.and_then(|o| o.status),
            last_error: last.and_then(|o| o.error.clone()),
            deferrals: self.deferrals,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub timeout: Duration,
    pub per_endpoint: usize,
    /// The longest expected wait for a busy endpoint that a delivery sits out in memory;
    /// longer, and it is deferred to the retry queue (see `lane`).
    pub lane_wait: Duration,
    pub schedule: Vec<Duration>,
    pub jitter: f64,
    /// How long a deferred delivery first waits before it is tried again; doubles with each
    /// further deferral, up to `defer_max`.
    pub defer: Duration,
    pub defer_max: Duration,
}

pub struct Dispatcher {
    pub cfg: DispatchConfig,
    pub client: HttpClient,
    pub guard: Guard,
    pub live: LiveIndex,
    pub global: Arc<Semaphore>,
    pub retry: RetryQueue,
    pub dlq: Dlq,
    pub log: AttemptLog,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    lanes: Mutex<HashMap<Arc<str>, Arc<Lane>>>,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: DispatchConfig,
        client: HttpClient,
        guard: Guard,
        live: LiveIndex,
        max_in_flight: usize,
        retry: RetryQueue,
        dlq: Dlq,
        log: AttemptLog,
        store: Store,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Dispatcher {
        Dispatcher {
            cfg,
            client,
            guard,
            live,
            global: Arc::new(Semaphore::new(max_in_flight)),
            retry,
            dlq,
            log,
            store,
            metrics,
            stop,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn lane(&self, id: &Arc<str>) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("lane map");
        lanes
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Lane::new(self.cfg.per_endpoint)))
            .clone()
    }

    /// Runs a delivery to its end. True when its fate is safely recorded, so the stream
    /// entry it came from may be acknowledged.
    pub async fn deliver(&self, mut d: Delivery) -> bool {
        let ep = self.live.snapshot().endpoint(&d.endpoint_id).cloned();
        let Some(ep) = ep else {
            // The endpoint was deleted: its pending deliveries go with it.
            return self.settled(&d).await;
        };
        if ep.disabled {
            let job = d.to_job(None);
            let job = Job {
                last_error: Some("endpoint is disabled".into()),
                ..job
            };
            return self.dead_letter(&d, job).await;
        }
        let lane = self.lane(&ep.id);
        // Under a rate limit, the delivery waits for its slot, or is deferred if that is far.
        if let Some(per_sec) = ep.rate_limit {
            match lane.reserve(per_sec, self.cfg.lane_wait) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                Some(_) => {}
                None => return self.defer(&d).await,
            }
        }
        // A leased retry waits at most once: it must finish well inside its lease.
        let persist = d.source == Source::Stream;
        let _lane_permit = match lane.admit(self.cfg.lane_wait, persist).await {
            Admission::Go(p) => p,
            Admission::Defer => return self.defer(&d).await,
        };
        let _global = self.global.acquire().await.expect("never closed");
        let now = now_ms();
        if d.first_attempt_at == 0 {
            d.first_attempt_at = now;
        }
        self.metrics.in_flight.inc();
        let outcome = attempt::send(
            &self.client,
            &self.guard,
            AttemptSpec {
                endpoint: &ep,
                msg_id: &d.event.id,
                body: &d.event.body,
                timeout: self.cfg.timeout,
                now_ms: now,
            },
        )
        .await;
        self.metrics.in_flight.dec();
        drop(_global);
        lane.finished(outcome.latency);
        drop(_lane_permit);
        d.attempts += 1;
        d.deferrals = 0;
        self.metrics
            .attempt_duration
            .observe(outcome.latency.as_secs_f64());
        self.finish(d, &ep, outcome).await
    }

    async fn finish(&self, d: Delivery, ep: &Endpoint, outcome: Outcome) -> bool {
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
        if outcome.succeeded() {
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
        let job = d.to_job(Some(&outcome));
        if gone {
            let reason = "endpoint answered 410 Gone";
            let disabled = self
                .persist(|| attempt_log::disable(&self.store, &ep.id, reason))
                .await;
            if disabled {
                self.metrics.endpoints_disabled.inc();
            }
            return self.dead_letter(&d, job).await;
        }
        let unit: f64 = rand::random();
        match retry::next_delay(
            &self.cfg.schedule,
            d.attempts,
            self.cfg.jitter,
            unit,
            outcome.retry_after,
        ) {
            Some(delay) => {
                self.metrics.retried.inc();
                let due = now_ms() + delay.as_millis() as i64;
                self.persist(|| self.retry.schedule(&job, due)).await
            }
            None => self.dead_letter(&d, job).await,
        }
    }

    async fn dead_letter(&self, d: &Delivery, job: Job) -> bool {
        self.metrics.dead.inc();
        if !self.persist(|| self.dlq.add(&job)).await {
            return false;
        }
        self.settled(d).await
    }

    /// A delivery's fate is recorded: one taken from the retry queue leaves it. False only if
    /// that removal never landed (its lease then makes it due again).
    async fn settled(&self, d: &Delivery) -> bool {
        match d.source {
            Source::Queue => self.persist(|| self.retry.complete(&d.id)).await,
            Source::Stream => true,
        }
    }

    /// Hands a delivery whose endpoint is saturated to the retry queue, without an attempt.
    async fn defer(&self, d: &Delivery) -> bool {
        self.metrics.deferred.inc();
        let backoff = self
            .cfg
            .defer
            .saturating_mul(1 << d.deferrals.min(10))
            .min(self.cfg.defer_max);
        let spread = 0.5 + rand::random::<f64>();
        let due = now_ms() + backoff.mul_f64(spread).as_millis() as i64;
        let mut job = d.to_job(None);
        job.deferrals = d.deferrals + 1;
        self.persist(|| self.retry.schedule(&job, due)).await
    }

    /// Retries a Redis write with backoff until it lands or shutdown; false if it never did.
    async fn persist<F, Fut, T>(&self, op: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(usize::MAX);
        op.retry(policy)
            .when(|_| !self.stop.is_cancelled())
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "redis write failed; retrying"))
            .await
            .is_ok()
    }
}
