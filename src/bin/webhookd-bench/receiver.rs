//! The fast receiver: one hyper HTTP/1.1 listener (keep-alive) serves every endpoint at
//! `/ep/<n>`, answers 200 with an empty body, and records each request lock-free.
//!
//! What it records per request: whether it was expected (endpoint n, event i of the same
//! tenant), whether it is a duplicate (one bit per expected delivery), and, for the first
//! copy, the latency from the `sent_at_ns` stamp in `data` to the end of the body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use webhookd::secure::sign::{verify_header, SigningKey};

use super::plan::Plan;

/// Where in `data` the publisher puts its send time (ns since the run's clock origin).
pub const STAMP: &[u8] = b"\"sent_at_ns\":";

/// What the receiver counts for one phase of the load (one set of event ids).
pub struct PhaseTally {
    pub healthy: AtomicU64,
    pub slow: AtomicU64,
    /// Second copies of this phase's deliveries, whenever they come.
    pub duplicates: AtomicU64,
    /// Latest first-copy receipt at a healthy endpoint (ns since `t0`).
    pub last_healthy_ns: AtomicU64,
    /// One bit per expected (endpoint, event) pair.
    seen: Box<[AtomicU64]>,
    /// Healthy first-copy latencies in ns, pre-sized to the expected count.
    latencies: Box<[AtomicU64]>,
    latency_len: AtomicUsize,
}

impl PhaseTally {
    fn new(plan: &Plan) -> PhaseTally {
        let bits = plan.endpoints as u64 * plan.rounds();
        let words = bits.div_ceil(64) as usize;
        let expected = plan.expected_healthy() as usize;
        PhaseTally {
            healthy: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last_healthy_ns: AtomicU64::new(0),
            seen: (0..words).map(|_| AtomicU64::new(0)).collect(),
            latencies: (0..expected).map(|_| AtomicU64::new(0)).collect(),
            latency_len: AtomicUsize::new(0),
        }
    }

    /// The healthy first-copy latencies recorded so far (ns, unsorted).
    pub fn latencies(&self) -> Vec<u64> {
        let n = self
            .latency_len
            .load(Ordering::Acquire)
            .min(self.latencies.len());
        self.latencies[..n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }
}

/// Everything the receiver counts; shared by every connection task.
pub struct Tally {
    pub plan: Arc<Plan>,
    /// The run's clock origin: publisher stamps and receipts are ns since this instant.
    pub t0: Instant,
    /// Per-endpoint keys, when signatures are verified.
    keys: Option<Vec<SigningKey>>,
    slow_delay: Duration,
    pub requests: AtomicU64,
    pub unexpected: AtomicU64,
    pub bad_signatures: AtomicU64,
    phases: Box<[PhaseTally]>,
}

impl Tally {
    pub fn new(
        plan: Arc<Plan>,
        t0: Instant,
        keys: Option<Vec<SigningKey>>,
        slow_delay: Duration,
    ) -> Tally {
        let phases = (0..plan.phases.max(1))
            .map(|_| PhaseTally::new(&plan))
            .collect();
        Tally {
            plan,
            t0,
            keys,
            slow_delay,
            requests: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            bad_signatures: AtomicU64::new(0),
            phases,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// The counters of one phase (0 when the load is published once).
    pub fn phase(&self, p: u64) -> &PhaseTally {
        &self.phases[p as usize]
    }

    /// Records one request; true when its endpoint is one of the slow ones.
    fn record(&self, path: &str, webhook_id: &str, ts: &str, sig: &str, body: &[u8]) -> bool {
        let at = self.now_ns();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (Some(n), Some((phase, i))) = (endpoint_of(path), self.plan.event_seq(webhook_id))
        else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let Some(bit) = self.plan.delivery_bit(n, i) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if let Some(keys) = &self.keys {
            let ok = ts
                .parse::<i64>()
                .is_ok_and(|ts| verify_header(&keys[n as usize], webhook_id, ts, body, sig));
            if !ok {
                self.bad_signatures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let p = &self.phases[phase as usize];
        let slow = self.plan.is_slow(n);
        let mask = 1u64 << (bit % 64);
        if p.seen[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed) & mask != 0 {
            p.duplicates.fetch_add(1, Ordering::Relaxed);
            return slow;
        }
        if slow {
            p.slow.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if let Some(sent) = sent_at(body) {
            let slot = p.latency_len.fetch_add(1, Ordering::AcqRel);
            if let Some(cell) = p.latencies.get(slot) {
                cell.store(at.saturating_sub(sent), Ordering::Relaxed);
            }
        }
        p.last_healthy_ns.fetch_max(at, Ordering::AcqRel);
        p.healthy.fetch_add(1, Ordering::AcqRel);
        false
    }
}

/// `/ep/<n>` → n.
fn endpoint_of(path: &str) -> Option<u32> {
    path.strip_prefix("/ep/")?.parse().ok()
}

/// The `sent_at_ns` value in a body, found by substring: no JSON parse on the hot path.
fn sent_at(body: &[u8]) -> Option<u64> {
    let at = body.windows(STAMP.len()).position(|w| w == STAMP)? + STAMP.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Binds `count` listeners on 127.0.0.1 and serves them until the runtime ends.
pub async fn start(tally: Arc<Tally>, count: usize) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(accept_loop(listener, tally.clone()));
    }
    Ok(addrs)
}

async fn accept_loop(listener: TcpListener, tally: Arc<Tally>) {
    loop {
        let stream = accept(&listener).await;
        let tally = tally.clone();
        serve(stream, move |req| handle(tally.clone(), req));
    }
}

/// The next connection, with Nagle off; an error (out of file descriptors, most likely) backs
/// off instead of spinning.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(e) => {
                eprintln!("webhookd-bench: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves HTTP/1.1 with keep-alive on `stream`, in a task of its own, each request to `handle`.
pub fn serve<F, Fut>(stream: TcpStream, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Empty<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service_fn(handle))
            .await;
    });
}

async fn handle(
    tally: Arc<Tally>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let slow = tally.record(
        parts.uri.path(),
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
    );
    if slow {
        tokio::time::sleep(tally.slow_delay).await;
    }
    Ok(status(StatusCode::OK))
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_found_without_parsing() {
        assert_eq!(
            sent_at(br#"{"data":{"sent_at_ns":12345,"x":1}}"#),
            Some(12345)
        );
        assert_eq!(sent_at(br#"{"data":{}}"#), None);
        assert_eq!(endpoint_of("/ep/42"), Some(42));
        assert_eq!(endpoint_of("/other"), None);
    }
}
