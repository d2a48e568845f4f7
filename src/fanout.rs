//! Fan-out: an event becomes one delivery per endpoint of its tenant whose filters match its
//! type (SPEC 3). A delivery's id is its stream entry's id and its endpoint's id, so the same
//! entry read again makes the same ids. With traces on, each fan-out is a span, and its
//! deliveries carry it as their attempts' parent.

use std::sync::Arc;

use crate::db::shards::letter_id;
use crate::deliver::delivery::{Delivery, EventInfo};
use crate::event::Event;
use crate::ids::{DeliveryId, EndpointId};
use crate::ops::trace::{FanOutFacts, Tracer};
use crate::ops::TraceParent;
use crate::registry::{Endpoint, LiveIndex};
use crate::retry::order::{key_of, OrderQueue, Ordered};
use crate::retry::RetryQueue;
use crate::support::clock::now_ms;

#[derive(Clone)]
pub(crate) struct FanOut {
    live: LiveIndex,
    retry: RetryQueue,
    order: OrderQueue,
    /// Wakes the promoter (`deliver::ordered`) when deliveries are queued under their keys.
    order_wake: Arc<tokio::sync::Notify>,
    /// None when traces are off.
    tracer: Option<Tracer>,
}

impl FanOut {
    pub(crate) fn new(
        live: LiveIndex,
        retry: RetryQueue,
        tracer: Option<Tracer>,
        order_wake: Arc<tokio::sync::Notify>,
    ) -> FanOut {
        FanOut {
            order: OrderQueue::new(retry.conn(), retry.shards().clone()),
            order_wake,
            live,
            retry,
            tracer,
        }
    }

    /// The deliveries a stream entry's event makes. An entry read again (after a restart or
    /// a claim) leaves out the deliveries the retry queue already owns, so none is scheduled
    /// twice; `Err` when the queue could not be asked (the entry then stays pending).
    ///
    /// A delivery is named after its entry and endpoint; in a sharded stream the entry's name
    /// includes its shard (`<i>:<entry id>`), since entry ids are unique per stream only.
    pub(crate) async fn deliveries(
        &self,
        shard: Option<u32>,
        entry: &str,
        ev: Event,
        reread: bool,
    ) -> redis::RedisResult<Vec<Delivery>> {
        let name = letter_id(shard, entry);
        let span = self.tracer.as_ref().map(|t| t.fan_out_begins(&ev.body));
        let mut matched = Vec::new();
        self.live
            .snapshot()
            .matching(&ev.tenant, &ev.event_type, &mut matched);
        let endpoints = matched.len();
        if reread && !matched.is_empty() {
            let ids: Vec<(String, &str)> = matched
                .iter()
                .map(|ep| (DeliveryId::of(&name, &ep.id).to_string(), &*ep.id))
                .collect();
            let mut queued = self.retry.contains(&ids).await?.into_iter();
            matched.retain(|_| !queued.next().unwrap_or(false));
        }
        let trace = span.map(|s| s.context);
        if let (Some(tracer), Some(span)) = (&self.tracer, span) {
            let facts = FanOutFacts {
                event_id: &ev.id,
                event_type: &ev.event_type,
                tenant: &ev.tenant,
                endpoints,
                entry: &name,
            };
            tracer.fan_out_ends(span, facts);
        }
        let keys = ordering_keys(&matched, &ev.body);
        let mut all = deliveries(&name, published_at(entry), ev, matched, trace);
        if let Some(keys) = keys {
            self.queue_ordered(shard, entry, &mut all, keys).await?;
        }
        Ok(all)
    }

    /// Takes out the deliveries whose key (`keys`, one per delivery) is known, and queues them
    /// under their keys (`retry::order`): queued is their fate.
    async fn queue_ordered(
        &self,
        shard: Option<u32>,
        entry: &str,
        all: &mut Vec<Delivery>,
        keys: Vec<Option<String>>,
    ) -> redis::RedisResult<()> {
        let mut keyed = Vec::new();
        let mut rest = Vec::with_capacity(all.len());
        for (d, key) in all.drain(..).zip(keys) {
            match key {
                Some(key) => keyed.push((d, key)),
                None => rest.push(d),
            }
        }
        *all = rest;
        if keyed.is_empty() {
            return Ok(());
        }
        let stream = shard.map_or_else(|| "-".to_string(), |i| i.to_string());
        let items: Vec<Ordered> = keyed
            .iter()
            .map(|(d, key)| Ordered {
                job: d.to_job(),
                stream: stream.clone(),
                key,
                entry,
            })
            .collect();
        self.order.enqueue(&items).await?;
        self.order_wake.notify_one();
        Ok(())
    }
}

/// Each matched endpoint's ordering key in this event (`None`: unordered), read from the body
/// parsed once; `None` at all when no matched endpoint orders, the usual case, at no cost.
fn ordering_keys(matched: &[Arc<Endpoint>], body: &[u8]) -> Option<Vec<Option<String>>> {
    if matched.iter().all(|ep| ep.ordering.is_none()) {
        return None;
    }
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    Some(
        matched
            .iter()
            .map(|ep| key_of(parsed.as_ref()?, ep.ordering.as_deref()?))
            .collect(),
    )
}

/// One delivery per matched endpoint, all sharing the event (and its body) in memory.
fn deliveries(
    name: &str,
    published_at: i64,
    ev: Event,
    matched: Vec<Arc<Endpoint>>,
    trace: Option<TraceParent>,
) -> Vec<Delivery> {
    if matched.is_empty() {
        return Vec::new();
    }
    let info = Arc::new(EventInfo {
        id: ev.id,
        event_type: ev.event_type,
        tenant: ev.tenant,
        body: ev.body,
        published_at,
        trace,
    });
    matched
        .into_iter()
        .map(|ep| {
            let endpoint = EndpointId::stored(ep.id.clone());
            Delivery::fresh(DeliveryId::of(name, &ep.id), info.clone(), endpoint)
        })
        .collect()
}

/// When the entry entered the stream: the milliseconds of its id (`<ms>-<seq>`).
fn published_at(entry: &str) -> i64 {
    entry
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{EndpointRecord, Snapshot};
    use crate::secure::seal::Sealer;

    fn record(id: &str, tenant: &str, filter: &str) -> EndpointRecord {
        EndpointRecord {
            filters: vec![filter.into()],
            ..EndpointRecord::for_test(id, tenant, "https://example.com/")
        }
    }

    fn event(tenant: &str, event_type: &str) -> Event {
        let raw = crate::event::envelope_json(
            "evt_1",
            event_type,
            tenant,
            1_700_000_000,
            &serde_json::json!({}),
        );
        crate::event::parse(raw.as_bytes(), 1 << 20).expect("a valid envelope")
    }

    fn fan_out(snapshot: &Snapshot, entry: &str, ev: Event) -> Vec<Delivery> {
        let mut matched = Vec::new();
        snapshot.matching(&ev.tenant, &ev.event_type, &mut matched);
        deliveries(entry, published_at(entry), ev, matched, None)
    }

    #[test]
    fn each_matching_endpoint_of_the_events_tenant_gets_one_delivery() {
        let snapshot = Snapshot::from_records(
            &[
                record("ep_a", "t1", "outbound.*"),
                record("ep_b", "t1", "inbound.*"),
                record("ep_c", "t1", "*.delivered"),
                record("ep_d", "t2", "outbound.*"),
            ],
            &Sealer::new(None),
        );
        let out = fan_out(
            &snapshot,
            "1700000000123-4",
            event("t1", "outbound.delivered"),
        );
        let mut ids: Vec<&str> = out.iter().map(|d| d.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["1700000000123-4:ep_a", "1700000000123-4:ep_c"]);
        assert!(
            Arc::ptr_eq(&out[0].event, &out[1].event),
            "one event shared in memory"
        );
        let ev = &out[0].event;
        assert_eq!((ev.id.as_str(), ev.tenant.as_str()), ("evt_1", "t1"));
        assert_eq!(
            ev.published_at, 1_700_000_000_123,
            "the entry id's milliseconds"
        );
        assert!(out.iter().all(|d| d.attempts == 0 && d.room.is_none()));
    }

    #[test]
    fn an_event_no_endpoint_wants_makes_no_delivery() {
        let snapshot = Snapshot::from_records(
            &[record("ep_a", "t1", "inbound.*"), record("ep_b", "t2", "*")],
            &Sealer::new(None),
        );
        assert!(fan_out(&snapshot, "1-0", event("t1", "outbound.sent")).is_empty());
        assert!(fan_out(&snapshot, "1-0", event("t3", "outbound.sent")).is_empty());
    }

    #[test]
    fn an_entry_id_without_milliseconds_is_stamped_now() {
        let before = now_ms();
        assert!(published_at("not-an-id") >= before);
        assert_eq!(published_at("42-7"), 42);
    }
}
