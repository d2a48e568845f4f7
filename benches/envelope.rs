//! Envelope validation and the delivered body (`event::parse`), once per stream entry.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhookd::event;

const MAX: usize = 256 * 1024;

/// A typical bounce, about 150 bytes.
fn small() -> String {
    r#"{"id":"evt_018f3a2b4c5d9e8f7a6b","type":"outbound.bounced","tenant":"acct_42","created_at":1704825600,"data":{"uid":"msg-1","to":"x@example.com","bounce_type":"hard"}}"#.to_string()
}

/// An inbound message with headers and an excerpt, about 4 KiB.
fn large() -> String {
    let headers: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#""X-Header-{i:02}":"value number {i} of a header the provider kept for us ....""#
            )
        })
        .collect();
    let excerpt =
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit \\\"quoted\\\". ".repeat(14);
    format!(
        r#"{{"id":"evt_018f3a2b4c5d9e8f7a6b","type":"inbound.received","tenant":"acct_42","created_at":1704825600,"data":{{"uid":"msg-1","from":"a@example.org","to":["b@example.com","c@example.com"],"subject":"Quarterly numbers","headers":{{{}}},"excerpt":"{excerpt}","size":48211,"spam_score":0.4}}}}"#,
        headers.join(",")
    )
}

fn bench_envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope_parse");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for raw in [small(), large()] {
        assert!(
            event::parse(raw.as_bytes(), MAX).is_ok(),
            "bench input must be valid"
        );
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{}B", raw.len())),
            &raw,
            |b, raw| b.iter(|| event::parse(black_box(raw.as_bytes()), MAX).unwrap()),
        );
    }
    g.finish();
}

criterion_group!(benches, bench_envelope);
criterion_main!(benches);
