//! The API's test send: one signed delivery through the same limits as every delivery.

use bytes::Bytes;

use super::Dispatcher;
use crate::deliver::attempt::{self, AttemptSpec, Outcome};
use crate::deliver::lane::Admission;
use crate::registry::Endpoint;
use crate::support::clock::now_ms;

/// Why an API test send was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Busy {
    #[error("the endpoint has no free delivery slot; try again shortly")]
    Endpoint,
    #[error("webhookd is at its in-flight limit; try again shortly")]
    Overall,
}

impl Dispatcher {
    /// One signed test delivery through the same limits as every delivery (the endpoint's
    /// slots and rate limit, and the overall in-flight limit), or why not now.
    pub(crate) async fn test_send(
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
                traceparent: None,
            },
        )
        .await;
        self.metrics.in_flight.dec();
        drop(global);
        lane.finished(outcome.latency, outcome.succeeded());
        drop(slot);
        Ok(outcome)
    }
}
