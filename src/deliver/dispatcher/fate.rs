//! Recording a delivery's fate: delivered, scheduled again, parked, or dead-lettered. Each is
//! a Redis write retried until it lands (or shutdown): only then may the delivery's source be
//! let go.

use std::time::Duration;

use backon::Retryable;

use super::Dispatcher;
use crate::deliver::attempt::{AttemptRecord, Outcome};
use crate::deliver::attempt_log;
use crate::deliver::breaker::Transition;
use crate::deliver::decide::{self, AfterFailure, Verdict, Why};
use crate::deliver::delivery::{Delivery, Source};
use crate::deliver::lane::Lane;
use crate::notice::{is_operational, Notice, Reason};
use crate::registry::Endpoint;
use crate::retry::bodies::Stored;
use crate::retry::capped_wait;
use crate::retry::park::ParkRequest;
use crate::support::clock::now_ms;

impl Dispatcher {
    pub(super) async fn finish(
        &self,
        mut d: Delivery,
        ep: &Endpoint,
        lane: &Lane,
        mut outcome: Outcome,
    ) -> bool {
        let verdict = decide::verdict(&outcome);
        self.log
            .record(AttemptRecord {
                at: now_ms(),
                event_id: d.event.id.as_str().to_owned(),
                attempt: d.attempts,
                status: outcome.status,
                latency_ms: outcome.latency.as_millis() as u64,
                error: outcome.error.clone(),
                // Nothing after the record reads the answer's excerpt.
                response: std::mem::take(&mut outcome.response),
                endpoint_id: ep.id.clone(),
                tenant: ep.tenant.clone(),
                gone: verdict == Verdict::Gone,
            })
            .await;
        d.last_status = outcome.status;
        d.last_error = outcome.error.clone();
        if verdict == Verdict::Delivered {
            match self.breaker.record_success(&ep.id).await {
                Ok(Transition::Closed(open_for)) => self.notices.send(Notice::circuit_closed(
                    &ep.tenant,
                    &ep.id,
                    now_ms() - open_for,
                    open_for,
                )),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(endpoint = %ep.id, error = %e, "recording a success on the circuit failed")
                }
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
        if verdict == Verdict::Gone {
            let reason = "endpoint answered 410 Gone";
            let disabled = self
                .persisted(|| attempt_log::disable_record(&self.store, &ep.id, reason))
                .await;
            if let Some(Some(rec)) = disabled {
                self.metrics.endpoints_disabled.inc();
                self.notices.send(Notice::disabled(
                    &rec.tenant,
                    &rec.id,
                    Reason::Gone,
                    reason,
                    rec.updated_at,
                ));
            }
            return self.dead_letter(&d).await;
        }
        let error = outcome.failure_text();
        let asked = outcome
            .retry_after
            .map(|w| capped_wait(&self.cfg.schedule, w));
        match self
            .breaker
            .record_failure(&ep.id, &error, asked, d.probe)
            .await
        {
            Ok(Transition::Opened) => {
                if let Some(c) = self.breaker.circuit(&ep.id) {
                    self.notices.send(Notice::circuit_opened(
                        &ep.tenant,
                        &ep.id,
                        &error,
                        c.failures,
                        c.opened_at,
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(endpoint = %ep.id, error = %e, "recording a failure on the circuit failed")
            }
        }
        let next = decide::after_failure(
            &self.cfg.schedule,
            self.cfg.jitter,
            d.attempts,
            rand::random(),
            &outcome,
            self.breaker.blocks(&ep.id),
        );
        match next {
            // It will be attempted again when its circuit lets it: a retry, like one queued.
            AfterFailure::WaitForProbe => {
                self.metrics.retried.inc();
                d.probe = false;
                self.park(d, lane, Why::Circuit).await
            }
            AfterFailure::Retry(delay) => {
                self.metrics.retried.inc();
                let due = now_ms() + delay.as_millis() as i64;
                let job = d.to_job();
                let from = d.source.queue();
                self.persist(|| self.retry.reschedule(&job, due, from))
                    .await
            }
            AfterFailure::DeadLetter => self.dead_letter(&d).await,
        }
    }

    pub(super) async fn dead_letter(&self, d: &Delivery) -> bool {
        self.metrics.dead.inc();
        let job = d.to_job();
        let Some(trimmed) = self.persisted(|| self.dlq.add(&job)).await else {
            return false;
        };
        self.metrics.dlq_trimmed.inc_by(trimmed);
        // Not for a disabled endpoint's unattempted letters, nor about an operational event.
        if job.attempts > 0 && !is_operational(&job.event_type) {
            self.notices.send(Notice::dead_lettered(
                &job.tenant,
                &job.endpoint_id,
                &job.event_id,
                &job.event_type,
                job.attempts,
                job.last_status,
                job.last_error.as_deref(),
                job.first_attempt_at,
            ));
        }
        self.settled(d).await
    }

    /// Dead-letters a parked delivery whose schedule ran out while its circuit was open.
    pub(crate) async fn expire(&self, mut d: Delivery) -> bool {
        let last = self
            .breaker
            .circuit(&d.endpoint_id)
            .map(|c| c.last_error)
            .or(d.last_error.take())
            .unwrap_or_else(|| "no attempt succeeded".into());
        d.last_error = Some(format!("circuit open: {last}"));
        self.dead_letter(&d).await
    }

    /// A delivery's fate is recorded: one taken from a retry queue leaves it. False only if
    /// that removal never landed (its lease then makes it due again).
    pub(super) async fn settled(&self, d: &Delivery) -> bool {
        match d.source {
            Source::Queue(q) => self.persist(|| self.retry.complete(q, &d.id)).await,
            Source::Stream => true,
        }
    }

    /// Parks a delivery in its endpoint's backlog in Redis, without an attempt: written once,
    /// then it waits for a slot or for its circuit's probe.
    /// Its room is held until the write lands, so parking too is bounded in memory.
    /// One taken from a queue being drained is parked at home, then leaves that queue.
    pub(super) async fn park(&self, d: Delivery, lane: &Lane, why: Why) -> bool {
        self.metrics.parked(why.label());
        let home = self.retry.shards().home_of(&d.endpoint_id);
        let at_home = d.source == Source::Queue(home);
        let req = ParkRequest {
            id: d.id.to_string(),
            endpoint_id: d.endpoint_id.as_arc().clone(),
            deadline: d.deadline(self.cfg.schedule_total()),
            job: (!d.stored || !at_home).then(|| Stored::of(&d.to_job())),
            from_due: at_home,
        };
        let from = d.source.queue();
        let ok = self.persist(|| self.park.park(req.clone())).await
            && self
                .persist(|| self.retry.leave(&req.id, &req.endpoint_id, from))
                .await;
        if ok {
            lane.set_backlogged(true);
        }
        ok
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
