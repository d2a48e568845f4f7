//! Standard Webhooks signing (`SigningKey::sign`: HMAC-SHA256 + base64) at three body sizes.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhookd::secure::sign::SigningKey;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MSG_ID: &str = "evt_018f3a2b4c5d9e8f7a6b5c4d";

fn bench_sign(c: &mut Criterion) {
    let key = SigningKey::from_secret(SECRET).unwrap();
    let mut g = c.benchmark_group("sign");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, len) in [("150B", 150), ("4KiB", 4096), ("64KiB", 65536)] {
        let body = vec![b'x'; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| key.sign(black_box(MSG_ID), black_box(1_704_825_600), black_box(body)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sign);
criterion_main!(benches);
