//! This replica's lanes, one per endpoint that has had a delivery lately.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use crate::deliver::lane::Lane;
use crate::registry::Snapshot;

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

    /// Drops lanes with nothing in flight, waiting or parked (deleted or quiet endpoints).
    pub(crate) fn prune(&self, live: &Snapshot) {
        self.map.lock().expect("lane map").retain(|id, lane| {
            !lane.idle() || (live.endpoint(id).is_some() && Arc::strong_count(lane) > 1)
        });
    }

    /// The lanes flagged as having parked deliveries.
    pub(crate) fn backlogged(&self) -> Vec<(Arc<str>, Arc<Lane>)> {
        self.map
            .lock()
            .expect("lane map")
            .iter()
            .filter(|(_, l)| l.backlogged.load(Ordering::Relaxed))
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
