//! Matching one event against the endpoint index (SPEC 3: cost must not grow with other
//! tenants' endpoints, nor linearly with the tenant's own).
//!
//! 10, 1,000 and 100,000 endpoints spread round-robin over 10,000 tenants, with a mix of
//! realistic filters. `snapshot` is the dispatcher's real path (`Snapshot::matching`: the
//! tenant lookup, the trie walk, the `Arc<Endpoint>` clones); `pattern_index` is the trie
//! alone for the busiest tenant.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use webhookd::event::filter::{Pattern, PatternIndex};
use webhookd::registry::{Endpoint, EndpointRecord, Snapshot};
use webhookd::secure::seal::Sealer;

const TENANTS: usize = 10_000;
const SIZES: [usize; 3] = [10, 1_000, 100_000];
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Filter sets as customers write them; endpoint `n` takes set `n % len`.
const FILTER_SETS: &[&[&str]] = &[
    &["*"],
    &["outbound.*"],
    &["outbound.bounced"],
    &["*.delivered"],
    &[
        "outbound.delivered",
        "outbound.bounced",
        "outbound.complaint",
    ],
    &["inbound.*"],
    &["outbound.opened", "outbound.clicked"],
];

fn tenant(n: usize) -> String {
    format!("acct_{}", n % TENANTS)
}

fn records(count: usize) -> Vec<EndpointRecord> {
    (0..count)
        .map(|n| {
            EndpointRecord::new(
                format!("ep_{n:08}"),
                tenant(n),
                format!("https://hooks.example.com/t/{n}"),
                FILTER_SETS[(n / TENANTS + n) % FILTER_SETS.len()]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                format!("plain:{SECRET}"),
                0,
            )
        })
        .collect()
}

fn bench_filter(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let sealer = Sealer::new(None);
    for size in SIZES {
        let recs = records(size);
        let snap = Snapshot::from_records(&recs, &sealer);
        // Tenant 0 always has endpoints (the most of any tenant at each size).
        let mut out: Vec<Arc<Endpoint>> = Vec::with_capacity(64);
        snap.matching("acct_0", "outbound.delivered", &mut out);
        assert!(!out.is_empty());
        g.bench_with_input(BenchmarkId::new("snapshot_hit", size), &snap, |b, snap| {
            b.iter(|| {
                out.clear();
                snap.matching(
                    black_box("acct_0"),
                    black_box("outbound.delivered"),
                    &mut out,
                );
                out.len()
            })
        });
        g.bench_with_input(
            BenchmarkId::new("snapshot_other_tenant", size),
            &snap,
            |b, snap| {
                b.iter(|| {
                    out.clear();
                    // A tenant with no endpoints at any size: the common case of a quiet customer.
                    snap.matching(
                        black_box("acct_x"),
                        black_box("outbound.delivered"),
                        &mut out,
                    );
                    out.len()
                })
            },
        );

        let mut idx = PatternIndex::default();
        for (slot, r) in recs.iter().filter(|r| r.tenant == "acct_0").enumerate() {
            for f in &r.filters {
                idx.insert(&Pattern::parse(f).unwrap(), slot as u32);
            }
        }
        let mut slots = Vec::with_capacity(64);
        g.bench_with_input(BenchmarkId::new("pattern_index", size), &idx, |b, idx| {
            b.iter(|| {
                slots.clear();
                idx.matches(black_box("outbound.delivered"), &mut slots);
                slots.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_filter);
criterion_main!(benches);
