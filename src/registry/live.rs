//! The in-memory match index every replica keeps, refreshed from Redis's change log.

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::model::{Endpoint, EndpointRecord, StoredSecret};
use super::store::Store;
use crate::config::StaticEndpoint;
use crate::event::filter::PatternIndex;
use crate::secure::seal::Sealer;
use crate::support::shutdown::Shutdown;

/// How often each replica looks for endpoint changes (SPEC: visible within 1 s).
const POLL: Duration = Duration::from_millis(200);
/// A full reload now and then repairs anything a lost change-log entry missed.
const FULL_RELOAD: Duration = Duration::from_secs(60);

/// One tenant's endpoints and the index over their patterns.
#[derive(Default)]
pub(crate) struct TenantEndpoints {
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    index: PatternIndex,
}

impl TenantEndpoints {
    fn build(mut endpoints: Vec<Arc<Endpoint>>) -> TenantEndpoints {
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        let mut index = PatternIndex::default();
        for (slot, ep) in endpoints.iter().enumerate() {
            for p in &ep.filters {
                index.insert(p, slot as u32);
            }
        }
        TenantEndpoints { endpoints, index }
    }
}

/// A snapshot being built from records as they arrive, a page at a time in a full load. Keyed
/// by id, so a record read twice (`HSCAN` may return one twice) is indexed once.
#[derive(Default)]
struct Loading {
    by_id: HashMap<Arc<str>, Arc<Endpoint>>,
}

impl Loading {
    fn add(&mut self, rec: &EndpointRecord, old: &Snapshot, sealer: &Sealer) {
        if let Some(ep) = live_endpoint(rec, old.by_id.get(rec.id.as_str()), sealer) {
            self.by_id.insert(ep.id.clone(), ep);
        }
    }

    fn finish(self) -> Snapshot {
        let mut by_tenant: HashMap<Arc<str>, Vec<Arc<Endpoint>>> = HashMap::default();
        for ep in self.by_id.values() {
            by_tenant
                .entry(ep.tenant.clone())
                .or_default()
                .push(ep.clone());
        }
        let tenants = by_tenant
            .into_iter()
            .map(|(t, eps)| (t, Arc::new(TenantEndpoints::build(eps))))
            .collect();
        Snapshot {
            tenants,
            by_id: self.by_id,
        }
    }
}

/// Builds the live endpoint of a record, reusing `previous` when the record did not change
/// (no secret is decrypted and no key derived again).
fn live_endpoint(
    rec: &EndpointRecord,
    previous: Option<&Arc<Endpoint>>,
    sealer: &Sealer,
) -> Option<Arc<Endpoint>> {
    if let Some(p) = previous.filter(|p| p.updated_at == rec.updated_at && *p.tenant == *rec.tenant)
    {
        return Some(p.clone());
    }
    match Endpoint::from_record(rec, sealer) {
        Ok(ep) => Some(Arc::new(ep)),
        Err(e) => {
            tracing::warn!(endpoint = %rec.id, error = %e, "endpoint quarantined: its deliveries wait parked until a replica can deliver them");
            Some(Arc::new(Endpoint::quarantined(rec, e.to_string())))
        }
    }
}

/// An immutable view of every tenant's endpoints; swapped whole on change.
#[derive(Default)]
pub struct Snapshot {
    tenants: HashMap<Arc<str>, Arc<TenantEndpoints>>,
    by_id: HashMap<Arc<str>, Arc<Endpoint>>,
}

impl Snapshot {
    /// Indexes every record, as a full load does (also used by the benches).
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a EndpointRecord>,
        sealer: &Sealer,
    ) -> Snapshot {
        Snapshot::rebuilt(records, &Snapshot::default(), sealer)
    }

    /// Every record indexed, reusing `old`'s live endpoints where records are unchanged.
    fn rebuilt<'a>(
        records: impl IntoIterator<Item = &'a EndpointRecord>,
        old: &Snapshot,
        sealer: &Sealer,
    ) -> Snapshot {
        let mut loading = Loading::default();
        for rec in records {
            loading.add(rec, old, sealer);
        }
        loading.finish()
    }

    /// A copy with some endpoints replaced (`Some`) or removed (`None`); only the tenants
    /// they touch are re-indexed.
    fn with_changes(&self, changes: Vec<(String, Option<Arc<Endpoint>>)>) -> Snapshot {
        let mut tenants = self.tenants.clone();
        let mut by_id = self.by_id.clone();
        let mut added: HashMap<Arc<str>, Vec<Arc<Endpoint>>> = HashMap::default();
        // An id changed twice in one batch counts once, as its latest state.
        let changes: HashMap<String, Option<Arc<Endpoint>>> = changes.into_iter().collect();
        for (id, new) in changes {
            if let Some(old) = by_id.remove(id.as_str()) {
                added.entry(old.tenant.clone()).or_default();
            }
            if let Some(ep) = new {
                by_id.insert(ep.id.clone(), ep.clone());
                added.entry(ep.tenant.clone()).or_default().push(ep);
            }
        }
        for (tenant, new) in added {
            // Unchanged endpoints are those still current under their id and not re-added.
            let renewed: std::collections::HashSet<&str> = new.iter().map(|n| &*n.id).collect();
            let mut eps: Vec<Arc<Endpoint>> = tenants
                .get(&tenant)
                .map(|t| {
                    t.endpoints
                        .iter()
                        .filter(|e| by_id.get(&e.id).is_some_and(|cur| Arc::ptr_eq(cur, e)))
                        .filter(|e| !renewed.contains(&*e.id))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            eps.extend(new);
            if eps.is_empty() {
                tenants.remove(&tenant);
            } else {
                tenants.insert(tenant, Arc::new(TenantEndpoints::build(eps)));
            }
        }
        Snapshot { tenants, by_id }
    }

    /// The endpoints of `tenant` whose filters match `event_type`, disabled ones included: a
    /// delivery to a disabled endpoint still gets a fate (a dead letter its tenant can replay).
    pub fn matching(&self, tenant: &str, event_type: &str, out: &mut Vec<Arc<Endpoint>>) {
        let Some(t) = self.tenants.get(tenant) else {
            return;
        };
        let mut slots = Vec::new();
        t.index.matches(event_type, &mut slots);
        out.extend(slots.into_iter().map(|s| t.endpoints[s as usize].clone()));
    }

    pub fn endpoint(&self, id: &str) -> Option<&Arc<Endpoint>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every endpoint, in no particular order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.by_id.values()
    }

    /// Endpoints this replica cannot deliver to (see `Endpoint::quarantined`).
    pub fn quarantined(&self) -> usize {
        self.by_id
            .values()
            .filter(|e| e.quarantined.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The shared, lock-free handle the dispatcher reads.
#[derive(Clone, Default)]
pub(crate) struct LiveIndex {
    current: Arc<ArcSwap<Snapshot>>,
}

impl LiveIndex {
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

/// The single writer of a [`LiveIndex`]: applies the change log to the snapshot.
pub(crate) struct Syncer {
    store: Store,
    sealer: Sealer,
    live: LiveIndex,
    cursor: String,
    /// The config's endpoints: written again before every full load, so they exist for as
    /// long as the config says so, even after Redis lost its data.
    statics: Vec<StaticEndpoint>,
}

impl Syncer {
    pub(crate) fn new(store: Store, sealer: Sealer, statics: Vec<StaticEndpoint>) -> Self {
        Syncer {
            store,
            sealer,
            live: LiveIndex::default(),
            cursor: "0-0".into(),
            statics,
        }
    }

    pub(crate) fn live(&self) -> LiveIndex {
        self.live.clone()
    }

    /// Writes the static endpoints (where missing or changed), then loads every record; the
    /// change-log head is read first so no change falls between. Records are read and indexed
    /// a page at a time (`Store::page`), so neither Redis nor this replica holds the whole
    /// registry as one reply.
    pub(crate) async fn full_load(&mut self) -> redis::RedisResult<()> {
        super::statics::sync_static(&self.store, &self.statics, &self.sealer).await?;
        if !self.store.mark().await? {
            tracing::info!("the registry mark is new: a new Redis, or one that lost its data");
        }
        let head = self.store.log_head().await?;
        let old = self.live.current.load_full();
        let mut loading = Loading::default();
        let (mut cursor, mut resealed) = (0, 0);
        loop {
            let (next, page) = self.store.page(cursor).await?;
            resealed += self.reseal(&page).await;
            for rec in &page {
                loading.add(rec, &old, &self.sealer);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if resealed > 0 {
            tracing::info!(
                count = resealed,
                "endpoint secrets sealed again under the current encryption key"
            );
        }
        self.live.current.store(Arc::new(loading.finish()));
        self.cursor = head;
        Ok(())
    }

    /// Seals again, under the current key and bound to their endpoint, the secrets stored
    /// otherwise (in the clear before a key was set, under a previous key, or by an older build);
    /// returns how many records it rewrote.
    async fn reseal(&self, all: &[EndpointRecord]) -> usize {
        let mut resealed = 0;
        for rec in all {
            let mut changed = false;
            let mut secrets = Vec::with_capacity(rec.secrets.len());
            for s in &rec.secrets {
                match self.sealer.open_checked(&s.sealed, &rec.id) {
                    Ok((secret, false)) => {
                        changed = true;
                        secrets.push(StoredSecret {
                            sealed: self.sealer.seal(&secret, &rec.id),
                            ..s.clone()
                        });
                    }
                    // Current, or not readable here (left for the replica that can).
                    _ => secrets.push(s.clone()),
                }
            }
            if !changed {
                continue;
            }
            let new = EndpointRecord {
                secrets,
                ..rec.clone()
            };
            match self.store.replace_unchanged(&new).await {
                Ok(true) => resealed += 1,
                Ok(false) => {} // changed meanwhile: the next full load tries again
                Err(e) => {
                    tracing::warn!(endpoint = %rec.id, error = %e, "sealing a secret again failed")
                }
            }
        }
        resealed
    }

    /// Applies changes since the last poll; returns how many endpoints changed.
    pub(crate) async fn poll(&mut self) -> redis::RedisResult<usize> {
        let (ids, cursor) = self.store.changes(&self.cursor).await?;
        if ids.is_empty() {
            self.cursor = cursor;
            return Ok(0);
        }
        let old = self.live.current.load_full();
        let changes: Vec<(String, Option<Arc<Endpoint>>)> = self
            .store
            .get_many(&ids)
            .await?
            .into_iter()
            .map(|(id, rec)| {
                let new =
                    rec.and_then(|r| live_endpoint(&r, old.by_id.get(id.as_str()), &self.sealer));
                (id, new)
            })
            .collect();
        self.live.current.store(Arc::new(old.with_changes(changes)));
        self.cursor = cursor;
        Ok(ids.len())
    }

    /// Polls until cancelled; Redis errors are logged and retried on the next tick.
    pub(crate) async fn run(mut self, stop: Shutdown) {
        let mut last_full = tokio::time::Instant::now();
        loop {
            if !stop.sleep(POLL).await {
                return;
            }
            // A Redis that lost its data is refilled at once, not at the next full reload.
            let lost = matches!(self.store.marked().await, Ok(false));
            let result = if lost || last_full.elapsed() >= FULL_RELOAD {
                last_full = tokio::time::Instant::now();
                self.full_load().await.map(|_| 0)
            } else {
                self.poll().await
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "endpoint index refresh failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tenant: &str, updated_at: i64) -> EndpointRecord {
        EndpointRecord {
            filters: vec!["outbound.*".into()],
            created_at: updated_at,
            updated_at,
            ..EndpointRecord::for_test(id, tenant, "https://example.com/")
        }
    }

    fn matching(s: &Snapshot, tenant: &str) -> Vec<String> {
        let mut out = Vec::new();
        s.matching(tenant, "outbound.sent", &mut out);
        out.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn an_id_changed_twice_in_one_batch_is_indexed_once() {
        let sealer = Sealer::new(None);
        let base = Snapshot::from_records(&[record("a", "t", 1)], &sealer);
        let b1 = live_endpoint(&record("b", "t", 1), None, &sealer);
        let b2 = live_endpoint(&record("b", "t", 2), None, &sealer);
        let s = base.with_changes(vec![("b".into(), b1), ("b".into(), b2)]);
        assert_eq!(matching(&s, "t"), ["a", "b"]);
    }

    /// `HSCAN` may return a record twice in one full load; indexed twice, each matching
    /// event would be delivered to it twice.
    #[test]
    fn a_record_read_twice_in_one_load_is_indexed_once() {
        let sealer = Sealer::new(None);
        let twice = [
            record("a", "t", 1),
            record("b", "t", 1),
            record("a", "t", 1),
        ];
        let s = Snapshot::rebuilt(&twice, &Snapshot::default(), &sealer);
        assert_eq!(matching(&s, "t"), ["a", "b"]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn unchanged_records_reuse_their_live_endpoint_and_moves_leave_the_old_tenant() {
        let sealer = Sealer::new(None);
        let old = Snapshot::from_records(&[record("a", "t1", 1), record("b", "t1", 1)], &sealer);
        let again = Snapshot::rebuilt(&[record("a", "t1", 1), record("b", "t2", 2)], &old, &sealer);
        assert!(Arc::ptr_eq(
            old.endpoint("a").unwrap(),
            again.endpoint("a").unwrap()
        ));
        assert_eq!(matching(&again, "t1"), ["a"]);
        assert_eq!(matching(&again, "t2"), ["b"]);
        let removed = again.with_changes(vec![("a".into(), None)]);
        assert!(matching(&removed, "t1").is_empty() && removed.endpoint("a").is_none());
    }
}
