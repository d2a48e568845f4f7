//! The noisy neighbour of an isolation run: N endpoints that are slow, hang, refuse
//! connections or answer 500, owned by a second tenant (`bench_noisy`) or by the healthy
//! tenant itself, and M events of their own type, each matching all N of them.
//!
//! The noisy endpoints' only filter is [`NOISY_TYPE`], and the healthy events never have that
//! type, so the healthy load never reaches a noisy endpoint; in the same tenant, the healthy
//! endpoints' filters must not match [`NOISY_TYPE`] either ([`check_separation`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use webhookd::event::filter::Pattern;

use super::plan::Plan;
use super::publisher::Events;
use super::receiver::{accept, serve};

/// The type of every noisy event, and the only filter of every noisy endpoint.
pub const NOISY_TYPE: &str = "bench.noisy";
/// The noisy tenant, unless it is the healthy one (`--noisy-same-tenant`).
pub const NOISY_TENANT: &str = "bench_noisy";
/// A hanging connection's unanswered bytes kept while looking for a request's end.
const MAX_REQUEST: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// 200 after --noisy-delay.
    Slow,
    /// Reads the request and never answers; the connection stays open.
    Hang,
    /// Nothing listens on the endpoint's port.
    Refuse,
    /// 500 at once.
    Error,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slow => "slow",
            Kind::Hang => "hang",
            Kind::Refuse => "refuse",
            Kind::Error => "error",
        }
    }
}

/// Who the noisy endpoints and events are.
pub struct Noisy {
    pub kind: Kind,
    pub endpoints: u32,
    pub events: u64,
    pub delay: Duration,
    pub same_tenant: bool,
    /// The tenant of every noisy endpoint and event.
    pub tenant: String,
    tag: String,
}

impl Noisy {
    pub fn new(
        kind: Kind,
        endpoints: u32,
        events: u64,
        delay: Duration,
        same_tenant: bool,
        plan: &Plan,
    ) -> Noisy {
        Noisy {
            kind,
            endpoints,
            events,
            delay,
            same_tenant,
            tenant: if same_tenant {
                plan.tenant(0)
            } else {
                NOISY_TENANT.to_string()
            },
            tag: plan.tag.clone(),
        }
    }

    pub fn endpoint_id(&self, k: u32) -> String {
        format!("{}_nz{k}", self.tag)
    }

    pub fn path(k: u32) -> String {
        format!("/nz/{k}")
    }

    pub fn event_id(&self, j: u64) -> String {
        format!("{}-nz{j}", self.tag)
    }

    /// `<tag>-nz<j>` → j.
    fn event_seq(&self, id: &str) -> Option<u64> {
        let j = id
            .strip_prefix(self.tag.as_str())?
            .strip_prefix("-nz")?
            .parse()
            .ok()?;
        (j < self.events).then_some(j)
    }

    /// Every noisy event matches every noisy endpoint.
    pub fn expected(&self) -> u64 {
        self.endpoints as u64 * self.events
    }

    fn delivery_bit(&self, path: &str, webhook_id: &str) -> Option<u64> {
        let k: u32 = path.strip_prefix("/nz/")?.parse().ok()?;
        let j = self.event_seq(webhook_id)?;
        (k < self.endpoints).then(|| k as u64 * self.events + j)
    }

    /// The noisy load for the publisher.
    pub fn load(self: &Arc<Self>) -> Events {
        let ids = self.clone();
        let tenant = self.tenant.clone();
        Events {
            count: self.events,
            event_type: NOISY_TYPE.to_string(),
            id: Box::new(move |j| ids.event_id(j)),
            tenant: Box::new(move |_| tenant.clone()),
        }
    }
}

/// The healthy load must never reach a noisy endpoint, nor the noisy load a healthy one.
pub fn check_separation(
    healthy_filters: &[String],
    healthy_type: &str,
    same_tenant: bool,
) -> Result<(), String> {
    if healthy_type == NOISY_TYPE {
        return Err(format!(
            "--event-type must not be `{NOISY_TYPE}`, the noisy events' type"
        ));
    }
    if same_tenant {
        for f in healthy_filters {
            if Pattern::parse(f).is_ok_and(|p| p.matches(NOISY_TYPE)) {
                return Err(format!(
                    "with --noisy-same-tenant, the healthy endpoints' --filters must not match \
                     `{NOISY_TYPE}` (the noisy events), e.g. --filters 'outbound.*'; `{f}` does"
                ));
            }
        }
    }
    Ok(())
}

/// What the noisy endpoints received.
pub struct NoisyTally {
    noisy: Arc<Noisy>,
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// First copies of noisy deliveries.
    pub first: AtomicU64,
    /// Further copies of one noisy delivery: retries after a 500 or a timeout, or duplicates.
    pub repeats: AtomicU64,
    /// `slow`: 200s actually sent (webhookd still waiting after the delay).
    pub answered: AtomicU64,
    pub unexpected: AtomicU64,
    seen: Box<[AtomicU64]>,
}

impl NoisyTally {
    pub fn new(noisy: Arc<Noisy>) -> NoisyTally {
        let words = noisy.expected().div_ceil(64) as usize;
        NoisyTally {
            noisy,
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            first: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            seen: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, path: &str, webhook_id: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(bit) = self.noisy.delivery_bit(path, webhook_id) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mask = 1u64 << (bit % 64);
        if self.seen[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed) & mask != 0 {
            self.repeats.fetch_add(1, Ordering::Relaxed);
        } else {
            self.first.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now, for the JSON line.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        json!({
            "connections": get(&self.connections),
            "requests": get(&self.requests),
            "delivered": get(&self.first),
            "repeats": get(&self.repeats),
            "answered": (self.noisy.kind == Kind::Slow).then(|| get(&self.answered)),
            "unexpected": get(&self.unexpected),
        })
    }
}

/// The noisy endpoints' addresses, and what must live as long as they should behave.
pub struct Served {
    pub addrs: Vec<SocketAddr>,
    /// `refuse`: sockets bound but never listening, so no one else takes their ports.
    _held: Vec<TcpSocket>,
}

/// Starts the noisy receiver: `count` listeners (endpoint k on listener k % count).
pub async fn start(tally: Arc<NoisyTally>, count: usize) -> std::io::Result<Served> {
    let mut addrs = Vec::new();
    let mut held = Vec::new();
    for _ in 0..count.max(1) {
        if tally.noisy.kind == Kind::Refuse {
            // Bound but not listening: a connection attempt gets a RST (ECONNREFUSED), and
            // unlike a closed port, no other process can start listening on it meanwhile.
            let socket = TcpSocket::new_v4()?;
            socket.bind("127.0.0.1:0".parse().expect("an address"))?;
            addrs.push(socket.local_addr()?);
            held.push(socket);
            continue;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(accept_loop(listener, tally.clone()));
    }
    Ok(Served { addrs, _held: held })
}

async fn accept_loop(listener: TcpListener, tally: Arc<NoisyTally>) {
    loop {
        let stream = accept(&listener).await;
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let tally = tally.clone();
        if tally.noisy.kind == Kind::Hang {
            tokio::spawn(hang(stream, tally));
            continue;
        }
        serve(stream, move |req| handle(tally.clone(), req));
    }
}

async fn handle(
    tally: Arc<NoisyTally>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let id = parts
        .headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let _ = body.collect().await;
    tally.record(parts.uri.path(), id);
    let code = match tally.noisy.kind {
        Kind::Slow => {
            tokio::time::sleep(tally.noisy.delay).await;
            // Dropped before this line when webhookd gives up on the request.
            tally.answered.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = Response::new(Empty::new());
    *r.status_mut() = code;
    Ok(r)
}

/// `hang`: reads (and counts) requests, never writes a byte; the connection lives until the
/// client closes it or the run ends.
async fn hang(mut stream: TcpStream, tally: Arc<NoisyTally>) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(req) = parse_request(&buf) {
            tally.record(&req.path, &req.webhook_id);
            buf.drain(..req.len);
        }
        if buf.len() > MAX_REQUEST {
            buf.clear();
        }
    }
}

/// One complete HTTP/1.1 request at the start of `buf`.
#[derive(Debug, PartialEq)]
struct RawRequest {
    len: usize,
    path: String,
    webhook_id: String,
}

fn parse_request(buf: &[u8]) -> Option<RawRequest> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let mut body_len = 0usize;
    let mut webhook_id = String::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("webhook-id") {
            webhook_id = value.to_string();
        }
    }
    let len = head_end + body_len;
    (buf.len() >= len).then_some(RawRequest {
        len,
        path,
        webhook_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tenants: u32) -> Plan {
        Plan {
            events: 10,
            endpoints: 2,
            tenants,
            slow: 0,
            phases: 2,
            tag: "b7".into(),
            matches: true,
        }
    }

    #[test]
    fn noisy_endpoints_belong_to_their_own_tenant_or_to_the_healthy_one() {
        let p = plan(3);
        let other = Noisy::new(Kind::Slow, 4, 5, Duration::ZERO, false, &p);
        assert_eq!(other.tenant, "bench_noisy");
        assert!((0..3).all(|t| p.tenant(t) != other.tenant));
        let same = Noisy::new(Kind::Hang, 4, 5, Duration::ZERO, true, &p);
        assert_eq!(same.tenant, p.tenant(0));
        // Ids never collide with the healthy ones, of any phase.
        assert_ne!(same.endpoint_id(0), p.endpoint_id(0));
        assert_eq!(p.event_seq(&same.event_id(3)), None);
        assert_eq!(same.event_seq(&p.event_id(1, 3)), None);
    }

    #[test]
    fn every_noisy_delivery_has_its_own_bit() {
        let n = Noisy::new(Kind::Error, 3, 4, Duration::ZERO, false, &plan(1));
        let mut bits = std::collections::HashSet::new();
        for k in 0..3 {
            for j in 0..4 {
                let b = n
                    .delivery_bit(&Noisy::path(k), &n.event_id(j))
                    .expect("expected");
                assert!(b < n.expected() && bits.insert(b));
            }
        }
        assert_eq!(n.delivery_bit("/nz/3", &n.event_id(0)), None);
        assert_eq!(n.delivery_bit("/nz/0", &n.event_id(4)), None);
        assert_eq!(n.delivery_bit("/ep/0", &n.event_id(0)), None);
    }

    #[test]
    fn repeats_are_counted_apart_from_first_copies() {
        let n = Arc::new(Noisy::new(
            Kind::Error,
            2,
            2,
            Duration::ZERO,
            false,
            &plan(1),
        ));
        let t = NoisyTally::new(n.clone());
        t.record("/nz/1", &n.event_id(1));
        t.record("/nz/1", &n.event_id(1));
        t.record("/nz/0", &n.event_id(1));
        t.record("/ep/0", "b7-1");
        assert_eq!(t.first.load(Ordering::Relaxed), 2);
        assert_eq!(t.repeats.load(Ordering::Relaxed), 1);
        assert_eq!(t.unexpected.load(Ordering::Relaxed), 1);
        assert_eq!(t.requests.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn the_same_tenant_needs_filters_that_keep_the_loads_apart() {
        let star = vec!["*".to_string()];
        let outbound = vec!["outbound.*".to_string()];
        assert!(check_separation(&star, "outbound.delivered", false).is_ok());
        assert!(check_separation(&star, "outbound.delivered", true).is_err());
        assert!(check_separation(&outbound, "outbound.delivered", true).is_ok());
        assert!(check_separation(&outbound, NOISY_TYPE, false).is_err());
    }

    #[test]
    fn hanging_requests_are_parsed_whole_or_not_at_all() {
        let req = b"POST /nz/3 HTTP/1.1\r\nhost: x\r\nwebhook-id: b7-nz2\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_request(&req[..req.len() - 1]), None);
        assert_eq!(parse_request(&req[..20]), None);
        let mut two = req.to_vec();
        two.extend_from_slice(b"POST /nz/4");
        assert_eq!(
            parse_request(&two),
            Some(RawRequest {
                len: req.len(),
                path: "/nz/3".into(),
                webhook_id: "b7-nz2".into(),
            })
        );
    }
}
