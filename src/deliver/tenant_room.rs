//! A tenant's part of the consumer's room. Every delivery read from the stream holds a place
//! in that room until its attempt ends, turns slow, or it is parked; when the room is full the
//! consumer reads nothing more, for anyone. New endpoints that never answer filled it with
//! attempts and waiters that gave their places back only when their lanes turned slow, after
//! a second for an endpoint that has never answered: every other tenant's events stayed unread
//! that long (0.87-1.03 s beside 200 and 500 of them sent 50 events a second, in an outside
//! probe; issue 16's twenty-fifth slice).
//!
//! So each tenant has half the room to itself. Past its half, a delivery goes on only to an
//! endpoint that has answered before (its lane's own bounds apply, as for any), or to a new one
//! with no attempt out yet while the tenant's attempts are finishing (a fan-out to new
//! endpoints; such a delivery waits up to `STALLED` for one to finish). Any other is parked
//! (`tenant_share`), so the other half stays the other tenants'. A latency spike at endpoints
//! that answered before parks nothing here: those wait in memory as before. The consumer only
//! notes which deliveries are past the half; the dispatcher, which has their lanes in hand,
//! decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::deliver::lane::Lane;
use crate::ids::TenantId;

/// A tenant none of whose attempts has finished for this long is not moving. Far above a
/// healthy endpoint's answers under load (ms), and short beside the second an unanswered
/// attempt may hold its place.
const STALLED: Duration = Duration::from_millis(100);
/// How often a delivery waiting to see whether its tenant moves looks again.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// The tenants' shares of the consumer's room.
pub(crate) struct TenantRooms {
    per_tenant: usize,
    map: Mutex<HashMap<TenantId, Arc<TenantRoom>>>,
}

/// One tenant's share.
pub(crate) struct TenantRoom {
    places: Arc<Semaphore>,
    made: Instant,
    /// When an attempt of a delivery holding a place here last finished: ms after `made`,
    /// plus one (0: none yet).
    last_done: AtomicU64,
}

/// A delivery's place in its tenant's share; given back on drop.
pub(crate) struct TenantPlace {
    _permit: OwnedSemaphorePermit,
    room: Arc<TenantRoom>,
}

impl TenantRooms {
    /// Half of `consumer_room` per tenant (at least one place).
    pub(crate) fn new(consumer_room: usize) -> TenantRooms {
        TenantRooms {
            per_tenant: (consumer_room / 2).max(1),
            map: Mutex::new(HashMap::default()),
        }
    }

    pub(crate) fn of(&self, tenant: &TenantId) -> Arc<TenantRoom> {
        let mut map = self.map.lock().expect("tenant rooms");
        if let Some(r) = map.get(tenant) {
            return r.clone();
        }
        let room = Arc::new(TenantRoom {
            places: Arc::new(Semaphore::new(self.per_tenant)),
            made: Instant::now(),
            last_done: AtomicU64::new(0),
        });
        map.insert(tenant.clone(), room.clone());
        room
    }

    /// Drops the shares no delivery holds a place in: only the map's handle is left.
    pub(crate) fn prune(&self) {
        self.map
            .lock()
            .expect("tenant rooms")
            .retain(|_, r| Arc::strong_count(r) > 1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl TenantRoom {
    /// A place, if the tenant's half has one.
    pub(crate) fn place(self: &Arc<Self>) -> Option<TenantPlace> {
        let permit = self.places.clone().try_acquire_owned().ok()?;
        Some(TenantPlace {
            _permit: permit,
            room: self.clone(),
        })
    }

    /// Whether the tenant's attempts are finishing: one has within `STALLED`, or one does
    /// before `STALLED` has passed since the last (or since the share was made).
    pub(crate) async fn moving(&self) -> bool {
        loop {
            let now = self.now();
            let last = self.last_done.load(Ordering::Relaxed);
            let quiet = now.saturating_sub(last.saturating_sub(1));
            if last > 0 && quiet < STALLED.as_millis() as u64 {
                return true;
            }
            if quiet >= STALLED.as_millis() as u64 {
                return false;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// Whether a delivery past the tenant's half, to an endpoint that has not answered yet, is
    /// parked rather than held: unless that endpoint has no attempt out and the tenant's
    /// attempts are finishing (one endpoint that has answered is held whatever this says).
    pub(crate) async fn turns_away(&self, lane: &Lane) -> bool {
        lane.in_flight() > 0 || !self.moving().await
    }

    fn now(&self) -> u64 {
        self.made.elapsed().as_millis() as u64
    }
}

impl TenantPlace {
    /// Its delivery's attempt finished: the tenant is moving.
    pub(crate) fn finished(&self) {
        let now = self.room.now() + 1;
        self.room.last_done.fetch_max(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    #[tokio::test]
    async fn a_tenant_holds_at_most_half_the_room_and_others_keep_theirs() {
        let rooms = TenantRooms::new(8);
        let a = rooms.of(&tenant("a"));
        let held: Vec<_> = (0..4).map(|_| a.place().expect("a place")).collect();
        assert!(a.place().is_none(), "a's half is taken");
        assert!(rooms.of(&tenant("b")).place().is_some(), "b has its own");
        drop(held);
        assert!(a.place().is_some(), "places are given back");
    }

    #[tokio::test]
    async fn a_tenant_moves_while_its_attempts_finish_and_not_once_they_stop() {
        let rooms = TenantRooms::new(8);
        let a = rooms.of(&tenant("a"));
        let place = a.place().expect("a place");
        // Nothing finished yet: an attempt finishing within `STALLED` shows it moves.
        let finish = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            place.finished();
        };
        let (moving, ()) = tokio::join!(a.moving(), finish);
        assert!(moving, "an attempt finished while it looked");
        assert!(a.moving().await, "one finished within `STALLED`");
        // Nothing more finishes: once `STALLED` has passed since the last, it is not moving,
        // and says so without waiting.
        tokio::time::sleep(STALLED + Duration::from_millis(20)).await;
        let began = Instant::now();
        assert!(!a.moving().await);
        assert!(began.elapsed() < STALLED, "answered at once");
        // A share that never saw an attempt finish waits out `STALLED` from when it was made.
        let b = rooms.of(&tenant("b"));
        let began = Instant::now();
        assert!(!b.moving().await);
        let waited = began.elapsed();
        assert!(
            waited >= STALLED / 2 && waited < Duration::from_secs(1),
            "not moving after {waited:?}"
        );
    }

    #[tokio::test]
    async fn shares_nobody_holds_are_dropped() {
        let rooms = TenantRooms::new(8);
        let place = rooms.of(&tenant("a")).place();
        rooms.prune();
        assert_eq!(rooms.len(), 1, "a share with a place held stays");
        drop(place);
        rooms.prune();
        assert_eq!(rooms.len(), 0);
    }
}
