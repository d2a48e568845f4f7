//! This replica's lanes, one per endpoint that has had a delivery lately.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap;

use crate::deliver::lane::Lane;
use crate::registry::Snapshot;

/// How long an endpoint's lane outlives its last attempt.
pub(crate) const LANE_QUIET: Duration = Duration::from_secs(60);

pub(crate) struct Lanes {
    per_endpoint: usize,
    map: Mutex<HashMap<Arc<str>, Arc<Lane>>>,
}

impl Lanes {
    pub(crate) fn new(per_endpoint: usize) -> Lanes {
        Lanes {
            per_endpoint,
            map: Mutex::new(HashMap::default()),
        }
    }

    pub(crate) fn get(&self, id: &Arc<str>) -> Arc<Lane> {
        let mut lanes = self.map.lock().expect("lane map");
        lanes
            .entry(id.clone())
            .or_insert_with(|| Lane::new(self.per_endpoint))
            .clone()
    }

    /// Drops the lanes of deleted endpoints once nothing is in flight, waiting or parked, and
    /// those of endpoints quiet for `quiet` (`LANE_QUIET`) that no delivery holds. A lane
    /// learns its endpoint's limit and latency as it goes: one dropped the moment it was idle,
    /// mid-burst, came back at one slot and an unmeasured latency, and parked much of the rest.
    pub(crate) fn prune(&self, live: &Snapshot, quiet: Duration) {
        self.map.lock().expect("lane map").retain(|id, lane| {
            if live.endpoint(id).is_none() {
                !lane.idle()
            } else {
                Arc::strong_count(lane) > 1 || !lane.idle_for(quiet)
            }
        });
    }

    /// The lanes flagged as having parked deliveries.
    pub(crate) fn backlogged(&self) -> Vec<(Arc<str>, Arc<Lane>)> {
        self.map
            .lock()
            .expect("lane map")
            .iter()
            .filter(|(_, l)| l.backlogged())
            .map(|(id, l)| (id.clone(), l.clone()))
            .collect()
    }

    /// Per-endpoint attempts in flight.
    pub(crate) fn in_flight(&self) -> Vec<(Arc<str>, usize)> {
        self.map
            .lock()
            .expect("lane map")
            .iter()
            .filter(|(_, l)| l.in_flight() > 0)
            .map(|(id, l)| (id.clone(), l.in_flight()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::EndpointRecord;
    use crate::secure::seal::Sealer;

    fn live(ids: &[&str]) -> Snapshot {
        let records: Vec<EndpointRecord> = ids
            .iter()
            .map(|id| EndpointRecord::for_test(id, "t", "https://h.example/"))
            .collect();
        Snapshot::from_records(&records, &Sealer::new(None))
    }

    #[test]
    fn a_lane_is_kept_until_its_endpoint_is_quiet_or_gone() {
        let lanes = Lanes::new(8);
        let (a, gone): (Arc<str>, Arc<str>) = ("a".into(), "gone".into());
        for id in [&a, &gone] {
            lanes.get(id).finished(Duration::from_millis(1), true);
        }
        assert_eq!(lanes.get(&a).limit(), 2, "learnt from one answer");
        let live = live(&["a"]);
        lanes.prune(&live, LANE_QUIET);
        assert_eq!(lanes.get(&a).limit(), 2, "idle a moment ago: kept");
        assert_eq!(
            lanes.map.lock().unwrap().len(),
            1,
            "a deleted endpoint's goes"
        );
        let held = lanes.get(&a);
        lanes.prune(&live, Duration::ZERO);
        assert_eq!(lanes.get(&a).limit(), 2, "held by a delivery: kept");
        drop(held);
        lanes.prune(&live, Duration::ZERO);
        assert_eq!(
            lanes.get(&a).limit(),
            1,
            "quiet long enough: dropped, starts over"
        );
    }
}
