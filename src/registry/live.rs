//! The in-memory match index every replica keeps, refreshed from Redis's change log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::model::{Endpoint, EndpointRecord};
use super::store::Store;
use crate::filter::{Pattern, PatternIndex};
use crate::seal::Sealer;

/// How often each replica looks for endpoint changes (SPEC: visible within 1 s).
const POLL: Duration = Duration::from_millis(200);
/// A full reload now and then repairs anything a lost change-log entry missed.
const FULL_RELOAD: Duration = Duration::from_secs(60);

/// One tenant's endpoints and the index over their patterns.
#[derive(Default)]
pub struct TenantEndpoints {
    pub endpoints: Vec<Arc<Endpoint>>,
    index: PatternIndex,
}

impl TenantEndpoints {
    fn build(records: &[&EndpointRecord], sealer: &Sealer) -> TenantEndpoints {
        let mut t = TenantEndpoints::default();
        for rec in records {
            let ep = match Endpoint::from_record(rec, sealer) {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::warn!(endpoint = %rec.id, error = %e, "endpoint skipped");
                    continue;
                }
            };
            let slot = t.endpoints.len() as u32;
            for f in &rec.filters {
                if let Ok(p) = Pattern::parse(f) {
                    t.index.insert(&p, slot);
                }
            }
            t.endpoints.push(Arc::new(ep));
        }
        t
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
        let mut by_tenant: HashMap<&str, Vec<&EndpointRecord>> = HashMap::new();
        for r in records {
            by_tenant.entry(r.tenant.as_str()).or_default().push(r);
        }
        let mut snap = Snapshot::default();
        for (tenant, mut recs) in by_tenant {
            recs.sort_by(|a, b| a.id.cmp(&b.id));
            let t = TenantEndpoints::build(&recs, sealer);
            for e in &t.endpoints {
                snap.by_id.insert(e.id.clone(), e.clone());
            }
            snap.tenants.insert(tenant.into(), Arc::new(t));
        }
        snap
    }

    /// The enabled endpoints of `tenant` whose filters match `event_type`.
    pub fn matching(&self, tenant: &str, event_type: &str, out: &mut Vec<Arc<Endpoint>>) {
        let Some(t) = self.tenants.get(tenant) else {
            return;
        };
        let mut slots = Vec::new();
        t.index.matches(event_type, &mut slots);
        out.extend(
            slots
                .into_iter()
                .map(|s| &t.endpoints[s as usize])
                .filter(|e| !e.disabled)
                .cloned(),
        );
    }

    pub fn endpoint(&self, id: &str) -> Option<&Arc<Endpoint>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The shared, lock-free handle the dispatcher reads.
#[derive(Clone, Default)]
pub struct LiveIndex {
    current: Arc<ArcSwap<Snapshot>>,
}

impl LiveIndex {
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

/// The single writer of a [`LiveIndex`]: keeps the records and rebuilds touched tenants.
pub struct Syncer {
    store: Store,
    sealer: Sealer,
    live: LiveIndex,
    records: HashMap<String, EndpointRecord>,
    cursor: String,
}

impl Syncer {
    pub fn new(store: Store, sealer: Sealer) -> Self {
        Syncer {
            store,
            sealer,
            live: LiveIndex::default(),
            records: HashMap::new(),
            cursor: "0-0".into(),
        }
    }

    pub fn live(&self) -> LiveIndex {
        self.live.clone()
    }

    /// Loads every record; the change-log head is read first so no change falls between.
    pub async fn full_load(&mut self) -> redis::RedisResult<()> {
        let head = self.store.log_head().await?;
        let all = self.store.all().await?;
        self.records = all.into_iter().map(|r| (r.id.clone(), r)).collect();
        self.cursor = head;
        self.rebuild_all();
        Ok(())
    }

    /// Applies changes since the last poll; returns how many endpoints changed.
    pub async fn poll(&mut self) -> redis::RedisResult<usize> {
        let (ids, cursor) = self.store.changes(&self.cursor).await?;
        if ids.is_empty() {
            self.cursor = cursor;
            return Ok(0);
        }
        let mut tenants: Vec<String> = Vec::new();
        for (id, rec) in self.store.get_many(&ids).await? {
            if let Some(old) = self.records.remove(&id) {
                tenants.push(old.tenant);
            }
            if let Some(rec) = rec {
                tenants.push(rec.tenant.clone());
                self.records.insert(id, rec);
            }
        }
        self.cursor = cursor;
        tenants.sort();
        tenants.dedup();
        self.rebuild_tenants(&tenants);
        Ok(ids.len())
    }

    fn rebuild_all(&self) {
        let snap = Snapshot::from_records(self.records.values(), &self.sealer);
        self.live.current.store(Arc::new(snap));
    }

    fn rebuild_tenants(&self, tenants: &[String]) {
        let old = self.live.current.load();
        let mut tenants_map = old.tenants.clone();
        let mut by_id = old.by_id.clone();
        for tenant in tenants {
            if let Some(prev) = tenants_map.remove(tenant.as_str()) {
                for e in &prev.endpoints {
                    by_id.remove(&e.id);
                }
            }
            let mut recs: Vec<&EndpointRecord> = self
                .records
                .values()
                .filter(|r| &r.tenant == tenant)
                .collect();
            if recs.is_empty() {
                continue;
            }
            recs.sort_by(|a, b| a.id.cmp(&b.id));
            let t = TenantEndpoints::build(&recs, &self.sealer);
            for e in &t.endpoints {
                by_id.insert(e.id.clone(), e.clone());
            }
            tenants_map.insert(tenant.as_str().into(), Arc::new(t));
        }
        self.live.current.store(Arc::new(Snapshot {
            tenants: tenants_map,
            by_id,
        }));
    }

    /// Polls until cancelled; Redis errors are logged and retried on the next tick.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut last_full = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let result = if last_full.elapsed() >= FULL_RELOAD {
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
