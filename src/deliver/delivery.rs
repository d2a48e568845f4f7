//! A delivery: one event on its way to one endpoint, with what its attempts so far left.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::deliver::lane::SlowShare;
use crate::deliver::tenant_room::{TenantPlace, TenantRoom};
use crate::ids::{DeliveryId, EndpointId, EventId, EventType, TenantId};
use crate::ops::TraceParent;
use crate::retry::shards::Queue;
use crate::retry::Job;
use crate::support::clock::now_ms;

/// The event as every one of its deliveries shares it.
#[derive(Debug)]
pub(crate) struct EventInfo {
    pub(crate) id: EventId,
    pub(crate) event_type: EventType,
    pub(crate) tenant: TenantId,
    pub(crate) body: Bytes,
    /// Unix ms the event entered the stream.
    pub(crate) published_at: i64,
    /// Its fan-out span, the parent of every attempt's span (traces on only).
    pub(crate) trace: Option<TraceParent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// First attempt, straight from the input stream.
    Stream,
    /// Taken (leased) from this retry queue.
    Queue(Queue),
}

impl Source {
    /// The retry queue it was taken from.
    pub(crate) fn queue(self) -> Option<Queue> {
        match self {
            Source::Queue(q) => Some(q),
            Source::Stream => None,
        }
    }
}

pub(crate) struct Delivery {
    pub(crate) id: DeliveryId,
    pub(crate) event: Arc<EventInfo>,
    pub(crate) endpoint_id: EndpointId,
    pub(crate) attempts: u32,
    pub(crate) first_attempt_at: i64,
    /// Unix ms this delivery's schedule began to count when it has no attempt yet.
    pub(crate) queued_at: i64,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    pub(crate) source: Source,
    /// Its job in the retry queue is current (no attempt since it was read from there).
    pub(crate) stored: bool,
    /// The one attempt an open circuit allows.
    pub(crate) probe: bool,
    /// Its share of the room for deliveries held in memory; given up when it is parked or
    /// its attempt turns slow, so neither holds the consumer back.
    pub(crate) room: Option<OwnedSemaphorePermit>,
    /// Its place in its tenant's share of that room (fresh deliveries), given up with it.
    pub(crate) place: Option<TenantPlace>,
    /// Read from the stream when its tenant's share had no place left: that share, for the
    /// dispatcher to decide whether it is held anyway or parked (`deliver::tenant_room`).
    pub(crate) past_share: Option<Arc<TenantRoom>>,
    /// A share of the slow budget taken for it in advance (by the backlog puller).
    pub(crate) slow_share: Option<SlowShare>,
}

impl Delivery {
    /// A first delivery of a stream entry's event.
    pub(crate) fn fresh(
        id: DeliveryId,
        event: Arc<EventInfo>,
        endpoint_id: EndpointId,
    ) -> Delivery {
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
            place: None,
            past_share: None,
            slow_share: None,
        }
    }

    pub(crate) fn from_job(job: Job, queue: Queue) -> Delivery {
        Delivery {
            event: Arc::new(EventInfo {
                id: EventId::stored(job.event_id),
                event_type: EventType::stored(job.event_type),
                tenant: TenantId::stored(job.tenant),
                body: Bytes::from(job.body),
                published_at: job.published_at,
                trace: job.trace.as_deref().and_then(TraceParent::parse),
            }),
            endpoint_id: EndpointId::stored(job.endpoint_id),
            id: DeliveryId::stored(job.id),
            attempts: job.attempts,
            first_attempt_at: job.first_attempt_at,
            queued_at: job.queued_at,
            last_status: job.last_status,
            last_error: job.last_error,
            source: Source::Queue(queue),
            stored: true,
            probe: false,
            room: None,
            place: None,
            past_share: None,
            slow_share: None,
        }
    }

    /// Gives back its place in the consumer's room and in its tenant's share, which travel
    /// together: its attempt turned slow, so neither holds the consumer back.
    pub(crate) fn leave_room(&mut self) {
        self.room = None;
        self.place = None;
    }

    pub(crate) fn to_job(&self) -> Job {
        Job {
            id: self.id.to_string(),
            tenant: self.event.tenant.to_string(),
            endpoint_id: self.endpoint_id.to_string(),
            event_id: self.event.id.to_string(),
            event_type: self.event.event_type.to_string(),
            body: String::from_utf8_lossy(&self.event.body).into_owned(),
            attempts: self.attempts,
            first_attempt_at: self.first_attempt_at,
            published_at: self.event.published_at,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            deferrals: 0,
            queued_at: self.queued_at,
            trace: self.event.trace.map(|t| t.to_string()),
        }
    }

    /// When its schedule runs out: the sum of the delays after its first attempt (or after
    /// it was queued, if it has none yet).
    pub(crate) fn deadline(&self, schedule_total: Duration) -> i64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::bodies::{load, Stored};

    fn fresh(trace: Option<TraceParent>) -> Delivery {
        let event = Arc::new(EventInfo {
            id: EventId::stored("evt_1"),
            event_type: EventType::stored("a.b"),
            tenant: TenantId::stored("t"),
            body: Bytes::from_static(b"{}"),
            published_at: 1,
            trace,
        });
        Delivery::fresh(
            DeliveryId::stored("1-0:ep".into()),
            event,
            EndpointId::stored("ep"),
        )
    }

    #[test]
    fn the_fan_out_span_travels_with_a_queued_delivery() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let d = fresh(tp);
        let stored = Stored::of(&d.to_job());
        let back = Delivery::from_job(load(&stored.raw, stored.body).unwrap(), 0);
        assert_eq!(back.event.trace, tp);
    }

    #[test]
    fn a_job_without_a_trace_stores_none_and_loads_without_one() {
        let d = fresh(None);
        let stored = Stored::of(&d.to_job());
        assert!(!stored.raw.contains("trace"), "{}", stored.raw);
        let back = Delivery::from_job(load(&stored.raw, stored.body).unwrap(), 0);
        assert_eq!(back.event.trace, None);
    }
}
