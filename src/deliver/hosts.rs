//! A tenant's quick attempts to one host, bounded: a fan-out to thousands of endpoints that
//! live on one server would otherwise open `max_in_flight` connections to it at once, each
//! with its buffers (about 25 KB here), and go no faster for it (BENCHMARKS.md, issue 16).
//! Bounded per tenant and host, so tenants that share a host never wait for each other;
//! slow attempts hold no host room (the slow budget bounds them), so a hanging host cannot
//! keep its tenant's other deliveries to it waiting for more than the quick ones' turns.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::registry::Endpoint;

/// One tenant's hosts (`authority` of the URL) → their room.
type TenantHosts = HashMap<String, Arc<Semaphore>>;

pub(crate) struct Hosts {
    per_host: usize,
    map: Mutex<HashMap<Arc<str>, TenantHosts>>,
}

impl Hosts {
    /// A quarter of the overall in-flight limit per tenant and host, but never less than one
    /// endpoint may have on its own.
    pub(crate) fn new(max_in_flight: usize, per_endpoint: usize) -> Hosts {
        Hosts {
            per_host: (max_in_flight / 4).max(per_endpoint).max(1),
            map: Mutex::new(HashMap::default()),
        }
    }

    /// Waits for room for one attempt of `ep`'s tenant at `ep`'s host.
    pub(crate) async fn room(&self, ep: &Endpoint) -> OwnedSemaphorePermit {
        self.semaphore(ep)
            .acquire_owned()
            .await
            .expect("host semaphores are never closed")
    }

    fn semaphore(&self, ep: &Endpoint) -> Arc<Semaphore> {
        let host = ep.url.authority().map_or("", |a| a.as_str());
        let mut map = self.map.lock().expect("host map");
        let hosts = match map.get_mut(&*ep.tenant) {
            Some(h) => h,
            None => map.entry(ep.tenant.clone()).or_default(),
        };
        if let Some(s) = hosts.get(host) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.per_host));
        hosts.insert(host.to_string(), s.clone());
        s
    }

    /// Drops the room of hosts nothing is waiting for or attempting: a waiter and every
    /// permit hold a clone of the semaphore, so the map's is the only one left.
    pub(crate) fn prune(&self) {
        self.map.lock().expect("host map").retain(|_, hosts| {
            hosts.retain(|_, s| Arc::strong_count(s) > 1);
            !hosts.is_empty()
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{EndpointRecord, Snapshot};
    use crate::secure::seal::Sealer;

    fn endpoint(id: &str, tenant: &str, url: &str) -> Arc<Endpoint> {
        let rec = EndpointRecord::for_test(id, tenant, url);
        let snapshot = Snapshot::from_records(&[rec], &Sealer::new(None));
        snapshot.endpoint(id).cloned().expect("loaded")
    }

    #[tokio::test]
    async fn room_is_per_tenant_and_host() {
        let hosts = Hosts::new(8, 1);
        let a1 = endpoint("a1", "ta", "https://h.example/1");
        let a2 = endpoint("a2", "ta", "https://h.example/2");
        let b = endpoint("b", "tb", "https://h.example/3");
        let other = endpoint("a3", "ta", "https://other.example/");
        let held: Vec<_> = [&a1, &a2]
            .iter()
            .map(|ep| hosts.semaphore(ep).try_acquire_owned().unwrap())
            .collect();
        assert!(
            hosts.semaphore(&a1).try_acquire_owned().is_err(),
            "two of eight/4 taken: ta's room at h.example is full, whichever endpoint asks"
        );
        assert!(
            hosts.semaphore(&b).try_acquire_owned().is_ok(),
            "tb has its own"
        );
        assert!(
            hosts.semaphore(&other).try_acquire_owned().is_ok(),
            "another host too"
        );
        hosts.prune();
        assert_eq!(hosts.len(), 1, "a host with room held stays");
        drop(held);
        hosts.prune();
        assert_eq!(hosts.len(), 0, "idle hosts are dropped");
    }

    #[test]
    fn one_endpoint_is_never_held_below_its_own_limit() {
        assert_eq!(Hosts::new(1024, 8).per_host, 256);
        assert_eq!(Hosts::new(16, 8).per_host, 8);
    }
}
