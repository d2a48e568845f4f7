//! The one pooled HTTP client for deliveries. Its resolver applies the SSRF guard to every
//! resolved address, so a hostname that points inside the network is refused at connect time.
//!
//! HTTP/1 over hyper's own connections, pooled here rather than by hyper-util's legacy
//! `Client`: a delivery takes an idle connection (or opens one), sends, reads the answer, and
//! gives the connection back, with nothing else between. The legacy client's checkout (a race
//! of the pool against a new connection, boxed futures, a per-request lookup of connect info)
//! was a sixth of a fan-out delivery's instructions (issue 16); what is left is a lock, a
//! lookup and a push.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use foldhash::HashMap;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::secure::ssrf::Guard;
use crate::support::https::{innermost, tls_over};

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;
type Body = Full<Bytes>;
/// Connections are shared by scheme and authority, as hyper-util's pool shares them.
type Key = (Scheme, Authority);

/// How long an idle pooled connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// How long a lent connection may take to be ready for the next request once its answer was
/// read (it usually is at once); past this it is closed.
const READY_WAIT: Duration = Duration::from_secs(10);

/// DNS through the system resolver, keeping only addresses the guard allows.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    guard: Arc<Guard>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(kind) => {
                        refused = Some(kind);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.map_or("no address".to_string(), |k| format!("{k} address"));
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to {why}, which is not allowed"),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

pub(crate) fn build(guard: Guard, connect_timeout: Duration, pool_per_host: usize) -> HttpClient {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver {
        guard: Arc::new(guard),
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    HttpClient {
        pool: Arc::new(Pool {
            connector: tls_over(http),
            hosts: Mutex::new(HashMap::default()),
            per_host: pool_per_host.max(1),
        }),
    }
}

/// Sends requests over pooled HTTP/1 connections (cheap to clone: one pool).
#[derive(Clone)]
pub(crate) struct HttpClient {
    pool: Arc<Pool>,
}

struct Pool {
    connector: Connector,
    /// Keyed with foldhash, as the endpoint index is: SipHash over the authority was half the
    /// pool's cost.
    hosts: Mutex<HashMap<Key, Host>>,
    /// Idle connections kept per host.
    per_host: usize,
}

/// Stale waiters (their request connected first) are swept once a host has this many.
const WAITERS_SWEPT_PAST: usize = 64;

#[derive(Default)]
struct Host {
    /// Most recently used last; at most `per_host`.
    idle: Vec<Idle>,
    /// Requests connecting anew, oldest first, each taking a connection given back before its
    /// own is up: a connect that stalls (a SYN dropped by a full accept queue costs a second)
    /// then holds up no request while others finish.
    waiters: VecDeque<oneshot::Sender<SendRequest<Body>>>,
}

struct Idle {
    tx: SendRequest<Body>,
    since: Instant,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The URL has no scheme or host.
    Url,
    /// Resolving, connecting or the TLS handshake failed.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while sending or before the answer's head.
    Send(hyper::Error),
}

impl ClientError {
    /// What went wrong, in a line: the innermost cause, which says what actually happened.
    pub(crate) fn describe(&self) -> String {
        match self {
            ClientError::Url => "the URL has no scheme or host".into(),
            ClientError::Connect(e) => match innermost(&**e) {
                m if m.starts_with("connect") => m,
                m => format!("connect: {m}"),
            },
            ClientError::Send(e) => innermost(e),
        }
    }
}

/// A connection idle this long may have been closed by its server (Node's and uvicorn's
/// keep-alive timeouts are 5 s, gunicorn's 2 s, some a fraction of a second).
const MAYBE_CLOSED_AFTER: Duration = Duration::from_millis(250);

/// A copy of `req` to send again (its body is shared, not copied).
fn copy(req: &Request<Body>) -> Request<Body> {
    let mut again = Request::new(req.body().clone());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Whether a send failed because the connection was closed (or reset) under it before any
/// answer came.
fn closed_while_idle(e: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            );
        }
        source = s.source();
    }
    false
}

/// A connection lent to one exchange: `finished` once its answer was read to the end gives it
/// back for the next request; dropped otherwise, it is closed.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    key: Key,
    tx: SendRequest<Body>,
}

impl Lease {
    pub(crate) fn finished(self) {
        let Lease { pool, key, mut tx } = self;
        if tx.is_ready() {
            pool.put(key, tx);
        } else if !tx.is_closed() {
            // The connection has not taken the answer's end in yet: it is given back when it
            // has, without keeping the delivery waiting.
            tokio::spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, tx.ready()).await {
                    pool.put(key, tx);
                }
            });
        }
    }
}

impl HttpClient {
    /// Sends `req` (an absolute URL) and answers the response's head, with the connection
    /// it came on. A request a reused connection could not take (closed while idle) goes
    /// on another, as hyper-util's client retries it: it was never sent.
    pub(crate) async fn request(
        &self,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), ClientError> {
        let uri = req.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ClientError::Url);
        };
        let key = (scheme.clone(), authority.clone());
        if !req.headers().contains_key(HOST) {
            if let Some(host) = host_header(&uri) {
                req.headers_mut().insert(HOST, host);
            }
        }
        *req.uri_mut() = origin_form(&uri);
        loop {
            let (mut tx, reused, idle_for) = match self.pool.checkout(&key) {
                Ok((tx, idle_for)) => (tx, true, idle_for),
                // Boxed: a connect's future (resolver, TCP, TLS, handshake) is kilobytes, and
                // every request's future would otherwise be that size, connecting or not.
                Err(given) => {
                    let (tx, reused) = Box::pin(self.pool.connect_or_wait(&uri, given)).await?;
                    (tx, reused, Duration::ZERO)
                }
            };
            // A server may close a connection idle past its keep-alive timeout just as this
            // request goes out on it; kept, the request goes again on another (below). Only
            // then: a copy of every request would cost each one its headers' allocations.
            let spare = (idle_for >= MAYBE_CLOSED_AFTER).then(|| copy(&req));
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        pool: self.pool.clone(),
                        key,
                        tx,
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match (e.take_message(), spare) {
                    (Some(unsent), _) if reused => req = unsent,
                    // Closed or reset before any answer: the server closed it while idle
                    // (as Go's client judges it); what it may have read it did not act on.
                    (_, Some(again)) if closed_while_idle(e.error()) => req = again,
                    _ => return Err(ClientError::Send(e.into_error())),
                },
            }
        }
    }

    /// Closes idle connections past their time or closed by their server, and forgets hosts
    /// with none left, so the pool holds only what may still be reused.
    pub(crate) fn prune(&self) {
        let mut hosts = self.pool.hosts.lock().expect("connection pool");
        hosts.retain(|_, host| {
            host.idle
                .retain(|c| c.tx.is_ready() && c.since.elapsed() < POOL_IDLE);
            host.waiters.retain(|w| !w.is_closed());
            !host.idle.is_empty() || !host.waiters.is_empty()
        });
    }

    /// Idle connections held, over all hosts.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let hosts = self.pool.hosts.lock().expect("connection pool");
        hosts.values().map(|h| h.idle.len()).sum()
    }

    /// Idle connections held that are still open.
    #[cfg(test)]
    fn idle_open(&self) -> usize {
        let hosts = self.pool.hosts.lock().expect("connection pool");
        hosts
            .values()
            .flat_map(|h| &h.idle)
            .filter(|c| c.tx.is_ready())
            .count()
    }
}

impl Pool {
    /// The most recently used idle connection to `key` that is still open and not stale, or
    /// a place in line for the next one given back.
    /// An idle connection to `key` and how long it was idle, or a place in the queue for one.
    fn checkout(
        &self,
        key: &Key,
    ) -> Result<(SendRequest<Body>, Duration), oneshot::Receiver<SendRequest<Body>>> {
        let mut hosts = self.hosts.lock().expect("connection pool");
        let host = match hosts.get_mut(key) {
            Some(host) => host,
            None => hosts.entry(key.clone()).or_default(),
        };
        while let Some(c) = host.idle.pop() {
            let idle_for = c.since.elapsed();
            if c.tx.is_ready() && idle_for < POOL_IDLE {
                return Ok((c.tx, idle_for));
            }
        }
        if host.waiters.len() >= WAITERS_SWEPT_PAST {
            host.waiters.retain(|w| !w.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        host.waiters.push_back(tx);
        Err(rx)
    }

    /// Gives a ready connection to the oldest request waiting for one, or keeps it idle.
    fn put(&self, key: Key, mut tx: SendRequest<Body>) {
        let mut hosts = self.hosts.lock().expect("connection pool");
        let host = hosts.entry(key).or_default();
        while let Some(waiter) = host.waiters.pop_front() {
            match waiter.send(tx) {
                Ok(()) => return,
                Err(back) => tx = back,
            }
        }
        if host.idle.len() < self.per_host {
            host.idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// A new connection to `uri`, or one given back first (the connect is then dropped: the
    /// host has a connection to spare). Answers whether the connection was used before.
    async fn connect_or_wait(
        self: &Arc<Self>,
        uri: &Uri,
        mut given: oneshot::Receiver<SendRequest<Body>>,
    ) -> Result<(SendRequest<Body>, bool), ClientError> {
        tokio::select! {
            biased;
            made = self.clone().connect(uri.clone()) => made.map(|tx| (tx, false)),
            Ok(tx) = &mut given => Ok((tx, true)),
        }
    }

    async fn connect(self: Arc<Self>, uri: Uri) -> Result<SendRequest<Body>, ClientError> {
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(ClientError::Connect)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(ClientError::Send)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "delivery connection ended");
            }
        });
        Ok(tx)
    }
}

/// The `Host` header for `uri`: its host, and its port unless that is the scheme's default,
/// as hyper-util's client makes it. Most URLs' authority is exactly that, taken as it is.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match authority.port_u16() {
        Some(p) if p == default_port => Cow::Borrowed(authority.host()),
        _ if !authority.as_str().contains('@') => Cow::Borrowed(authority.as_str()),
        Some(p) => Cow::Owned(format!("{}:{p}", authority.host())),
        None => Cow::Borrowed(authority.host()),
    };
    HeaderValue::from_str(&value).ok()
}

/// The request target HTTP/1 sends: the path and query.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => Uri::from(pq.clone()),
        _ => Uri::from_static("/"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;

    /// A receiver (hyper's HTTP/1 server) answering `200 ok` to each request; with
    /// `close_after`, it closes each connection that long after its first answer (without
    /// saying so). Answers its port and the connections it accepted.
    async fn receiver(close_after: Option<Duration>) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answered = Arc::new(tokio::sync::Notify::new());
                let told = answered.clone();
                let service = hyper::service::service_fn(move |_req| {
                    told.notify_one();
                    let ok = Response::new(Full::new(Bytes::from_static(b"ok")));
                    async { Ok::<_, std::convert::Infallible>(ok) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
                tokio::spawn(async move {
                    let Some(idle) = close_after else {
                        let _ = conn.await;
                        return;
                    };
                    // Dropping the connection closes its socket.
                    tokio::select! {
                        _ = conn => {}
                        _ = async {
                            answered.notified().await;
                            tokio::time::sleep(idle).await;
                        } => {}
                    }
                });
            }
        });
        (port, accepted)
    }

    fn client() -> HttpClient {
        let loopback = vec!["127.0.0.0/8".parse().unwrap()];
        build(Guard::new(loopback), Duration::from_secs(5), 8)
    }

    async fn post(client: &HttpClient, port: u16) -> Result<u16, String> {
        post_to(client, &format!("http://127.0.0.1:{port}/in?x=1")).await
    }

    async fn post_to(client: &HttpClient, url: &str) -> Result<u16, String> {
        let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = url.parse().unwrap();
        let (resp, lease) = client.request(req).await.map_err(|e| e.describe())?;
        let status = resp.status().as_u16();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?;
        lease.finished();
        Ok(status)
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_carries_the_next_request() {
        let (port, accepted) = receiver(None).await;
        let client = client();
        for _ in 0..5 {
            assert_eq!(post(&client, port).await, Ok(200));
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for all five"
        );
        assert_eq!(client.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_its_server_closed_while_idle_is_not_reused_and_is_pruned() {
        let (port, accepted) = receiver(Some(Duration::from_millis(50))).await;
        let client = client();
        let closed = || async {
            let start = Instant::now();
            while client.idle_open() > 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "the close is seen"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        for round in 1..=3 {
            assert_eq!(post(&client, port).await, Ok(200), "request {round}");
            assert_eq!(client.idle_count(), 1, "kept for the next request");
            closed().await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "a new connection each time"
        );
        assert_eq!(
            client.idle_count(),
            1,
            "the closed one waits for the upkeep"
        );
        client.prune();
        assert_eq!(client.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_given_back_goes_to_the_oldest_request_still_waiting() {
        let (port, _) = receiver(None).await;
        let client = client();
        let pool = &client.pool;
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let key = (Scheme::HTTP, uri.authority().unwrap().clone());
        let connection = || pool.clone().connect(uri.clone());
        let (Err(gone), Err(first), Err(second)) = (
            pool.checkout(&key),
            pool.checkout(&key),
            pool.checkout(&key),
        ) else {
            panic!("nothing is idle yet");
        };
        drop(gone); // its request connected first
        pool.put(key.clone(), connection().await.unwrap());
        let mut second = second;
        assert!(first.await.is_ok(), "the oldest waiting request takes it");
        assert!(second.try_recv().is_err(), "one connection, one request");
        assert_eq!(client.idle_count(), 0);
        pool.put(key.clone(), connection().await.unwrap());
        assert!(second.await.is_ok());
        pool.put(key.clone(), connection().await.unwrap());
        assert_eq!(client.idle_count(), 1, "with nobody waiting, it is kept");
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_fails_at_connect_and_says_why() {
        // Literal addresses are checked before the client (`attempt::send`); names here.
        let client = build(Guard::new(Vec::new()), Duration::from_secs(5), 8);
        let err = post_to(&client, "http://localhost:9/").await.unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
        assert!(err.starts_with("connect"), "{err}");
    }

    #[test]
    fn host_header_is_what_hyper_utils_client_would_send() {
        let host = |url: &str| host_header(&url.parse().unwrap()).unwrap();
        let is = |url: &str, want: &str| assert_eq!(host(url), want, "{url}");
        is("https://hooks.example.com/in", "hooks.example.com");
        is("https://hooks.example.com:80/", "hooks.example.com:80");
        is("http://hooks.example.com:443/", "hooks.example.com:443");
        is("http://127.0.0.1:8080/x?y=1", "127.0.0.1:8080");
        is("http://[::1]:9000/", "[::1]:9000");
        is("https://hooks.example.com:443/in", "hooks.example.com");
        is("http://hooks.example.com:80/", "hooks.example.com");
        is("http://user:pw@hooks.example.com/", "hooks.example.com");
        is(
            "http://user:pw@hooks.example.com:8080/",
            "hooks.example.com:8080",
        );
    }

    #[test]
    fn the_request_target_is_the_path_and_query() {
        let target = |url: &str| origin_form(&url.parse().unwrap()).to_string();
        assert_eq!(target("https://h.example/in?a=1&b=2"), "/in?a=1&b=2");
        assert_eq!(target("https://h.example"), "/");
        assert_eq!(target("https://h.example/"), "/");
    }
}
