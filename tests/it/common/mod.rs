//! Shared helpers for integration tests: a real Redis (each test under its own key prefix),
//! real HTTP receivers on 127.0.0.1, and the real `webhookd` binary.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ENCRYPTION_KEY: &str = "d2ViaG9va2QtZGVtby1rZXktbm90LWZvci1wcm9kISE=";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The Redis tests use: `WEBHOOKD_TEST_REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("WEBHOOKD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or run) shares.
pub fn unique_prefix(name: &str) -> String {
    format!("t:{name}:{:08x}:", rand::random::<u32>())
}

pub fn redis() -> redis::Connection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_connection()
        .expect("a Redis for the tests (set WEBHOOKD_TEST_REDIS_URL)")
}

/// Polls `check` every 20 ms until it holds or `limit` passes; true if it held.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port, never the same twice in this test process: whoever asked binds it
/// later, so the OS may offer it again meanwhile (to another server of the same test, or of a
/// test running beside it).
/// As `wait_until`, for a check that has to wait itself (an HTTP call, say).
pub async fn wait_until_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn free_port() -> u16 {
    static GIVEN: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// How a receiver answers its n-th request (0-based): status, extra headers, delay.
pub type Behavior =
    Arc<dyn Fn(usize, &Received) -> (u16, Vec<(String, String)>, Duration) + Send + Sync>;

pub fn always(status: u16) -> Behavior {
    Arc::new(move |_, _| (status, vec![], Duration::ZERO))
}

/// Answers `status` to every request, the n-th (0-based) after `delay(n)`.
pub fn late(status: u16, delay: impl Fn(usize) -> Duration + Send + Sync + 'static) -> Behavior {
    Arc::new(move |n, _| (status, vec![], delay(n)))
}

/// Answers `status` to the first `n` requests, 200 after.
pub fn first_then_ok(n: usize, status: u16) -> Behavior {
    Arc::new(move |i, _| (if i < n { status } else { 200 }, vec![], Duration::ZERO))
}

/// A real HTTP server on 127.0.0.1 that records what it receives.
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(behavior: Behavior) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let got2 = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let got = got2.clone();
                let behavior = behavior.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let got = got.clone();
                        let behavior = behavior.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let rec = Received {
                                path,
                                headers,
                                body,
                                at: Instant::now(),
                            };
                            let n = {
                                let mut g = got.lock().unwrap();
                                g.push(rec.clone());
                                g.len() - 1
                            };
                            let (status, extra, delay) = behavior(n, &rec);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut resp = Response::builder().status(status);
                            for (k, v) in extra {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from_static(b"ok"))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, got, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        wait_until(limit, || self.count() >= n).await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A static endpoint line for the config.
pub fn endpoint_yaml(id: &str, tenant: &str, url: &str, filters: &[&str]) -> String {
    let filters: Vec<String> = filters.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "  - {{id: {id}, tenant: {tenant}, url: \"{url}\", filters: [{}], secret: \"{SECRET}\"}}\n",
        filters.join(", ")
    )
}

/// Builds a config for one test: its own prefix and port, loopback receivers allowed.
#[derive(Clone)]
pub struct Setup {
    pub prefix: String,
    pub port: u16,
    /// The `redis` section's keys besides `key_prefix` (default: `url` of the test Redis).
    pub redis: Option<String>,
    pub extra: String,
    /// More keys of the `http` section (indented two spaces).
    pub http: String,
    pub endpoints: Vec<String>,
    pub consumer: String,
}

impl Setup {
    pub fn new(name: &str) -> Setup {
        Setup {
            prefix: unique_prefix(name),
            port: free_port(),
            redis: None,
            extra: String::new(),
            http: String::new(),
            endpoints: Vec::new(),
            consumer: format!("c-{:06x}", rand::random::<u32>() >> 8),
        }
    }

    /// Another replica on the same keys and endpoints: its own consumer name and port.
    pub fn replica(&self, consumer: &str) -> Setup {
        Setup {
            port: free_port(),
            consumer: consumer.to_string(),
            ..self.clone()
        }
    }

    /// Shard `i` of the input stream (`stream.shards` > 1).
    pub fn shard_stream(&self, i: u32) -> String {
        format!("{}events:{{{i}}}", self.prefix)
    }

    /// Endpoints `ep<t>` of tenants `acct_<t>` for t < n, each taking every event, at `url`.
    pub fn endpoint_per_tenant(mut self, n: usize, url: &str) -> Setup {
        for t in 0..n {
            self = self.endpoint(&format!("ep{t}"), &format!("acct_{t}"), url, &["*"]);
        }
        self
    }

    pub fn endpoint(mut self, id: &str, tenant: &str, url: &str, filters: &[&str]) -> Setup {
        self.endpoints.push(endpoint_yaml(id, tenant, url, filters));
        self
    }

    /// The `redis` section's keys (indented two spaces) instead of the test Redis's URL.
    pub fn redis(mut self, keys: &str) -> Setup {
        self.redis = Some(keys.to_string());
        self
    }

    /// More keys of the `http` section, e.g. "  public_url: https://h.example\n".
    pub fn with_http(mut self, keys: &str) -> Setup {
        self.http.push_str(keys);
        self
    }

    /// Extra top-level YAML (whole sections), e.g. "retry:\n  schedule: [100ms]\n".
    pub fn with(mut self, yaml: &str) -> Setup {
        self.extra.push_str(yaml);
        self
    }

    pub fn yaml(&self) -> String {
        let redis = self
            .redis
            .clone()
            .unwrap_or_else(|| format!("  url: \"{}\"\n", redis_url()));
        let mut y = format!(
            "redis:\n{redis}  key_prefix: \"{}\"\n\
             http:\n  listen: \"127.0.0.1:{}\"\n  admin_tokens: [\"{ADMIN_TOKEN}\"]\n{}",
            self.prefix, self.port, self.http
        );
        if !self.extra.contains("signing:") {
            y.push_str(&format!(
                "signing:\n  encryption_key: \"{ENCRYPTION_KEY}\"\n"
            ));
        }
        if !self.extra.contains("shutdown_grace:") {
            y.push_str("shutdown_grace: 10s\n");
        }
        if !self.extra.contains("delivery:") {
            y.push_str(
                "delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n  timeout: 5s\n",
            );
        }
        if !self.extra.contains("stream:") {
            y.push_str(&format!(
                "stream:\n  consumer: {}\n  block: 200ms\n",
                self.consumer
            ));
        }
        if self.extra.contains("stream:\n") && !self.extra.contains("consumer:") {
            // The test's own stream section, with this setup's consumer name in it.
            let named = format!("stream:\n  consumer: {}\n", self.consumer);
            y.push_str(&self.extra.replacen("stream:\n", &named, 1));
        } else {
            y.push_str(&self.extra);
        }
        if !self.endpoints.is_empty() {
            y.push_str("endpoints:\n");
            for e in &self.endpoints {
                y.push_str(e);
            }
        }
        y
    }

    pub fn write(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, self.yaml()).unwrap();
        (dir, path)
    }

    pub fn stream(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// This test's endpoint registry, and the sealer its encryption key makes.
    pub async fn registry(&self) -> (webhookd::registry::Store, webhookd::secure::seal::Sealer) {
        use base64::Engine;
        let conn = webhookd::db::conn::connect(&redis_url(), Duration::from_secs(5))
            .await
            .expect("redis");
        let store = webhookd::registry::Store::new(
            conn,
            webhookd::db::keys::Keys::new(&self.prefix, "events"),
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(ENCRYPTION_KEY)
            .unwrap();
        let sealer = webhookd::secure::seal::Sealer::new(Some(key.try_into().unwrap()));
        (store, sealer)
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Endpoint `id`'s record as stored in this test's registry (`null` when there is none).
pub fn stored_record(setup: &Setup, id: &str) -> serde_json::Value {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(format!("{}{{endpoints}}:all", setup.prefix))
        .arg(id)
        .query(&mut redis())
        .unwrap();
    raw.map_or(serde_json::Value::Null, |r| {
        serde_json::from_str(&r).unwrap()
    })
}

/// The sealed secrets of endpoint `id` as stored in this test's registry.
pub fn stored_secrets(setup: &Setup, id: &str) -> Vec<String> {
    let rec = stored_record(setup, id);
    rec["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sealed"].as_str().unwrap().to_string())
        .collect()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_webhookd")
}

/// The build a test measuring webhookd's speed runs: `WEBHOOKD_TEST_TIMING_BIN` (a release
/// build of this checkout, which `scripts/test.sh` makes and names), else the debug build.
pub fn timing_bin() -> String {
    std::env::var("WEBHOOKD_TEST_TIMING_BIN").unwrap_or_else(|_| bin().to_string())
}

/// A running `webhookd serve`, killed when dropped.
pub struct Webhookd {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Webhookd {
    /// Starts the binary and waits (bounded) until `/readyz` answers 200.
    pub async fn start(setup: &Setup) -> Webhookd {
        Self::start_with_env(setup, &[]).await
    }

    pub async fn start_with_env(setup: &Setup, env: &[(&str, &str)]) -> Webhookd {
        Self::start_program(bin(), setup, env).await
    }

    /// Starts `program` (another build of webhookd) like [`Webhookd::start_with_env`].
    pub async fn start_program(program: &str, setup: &Setup, env: &[(&str, &str)]) -> Webhookd {
        let (dir, config) = setup.write();
        let log = dir.path().join("webhookd.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn webhookd");
        let w = Webhookd {
            child,
            port: setup.port,
            _dir: dir,
            config,
            log,
        };
        let url = format!("http://127.0.0.1:{}/readyz", setup.port);
        let ready = wait_ready(&url, Duration::from_secs(20)).await;
        assert!(
            ready,
            "webhookd did not become ready; log:\n{}",
            w.log_text()
        );
        w
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends SIGTERM and waits (at most `limit`) for exit code 0; how long it took.
    pub async fn terminate(&mut self, limit: Duration) -> Duration {
        self.terminate_twice(None, limit).await
    }

    /// As `terminate`, with a second SIGTERM `again` after the first, if given.
    pub async fn terminate_twice(&mut self, again: Option<Duration>, limit: Duration) -> Duration {
        let asked = Instant::now();
        self.signal("TERM");
        if let Some(gap) = again {
            tokio::time::sleep(gap).await;
            self.signal("TERM");
        }
        let code = self.wait_exit(limit).await;
        let took = asked.elapsed();
        assert_eq!(
            code,
            Some(0),
            "exit 0 after SIGTERM; log:\n{}",
            self.log_text()
        );
        took
    }

    /// Waits (bounded) for the process to exit; its exit code, if it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a metric sample (every 100 ms, for 30 s at most) until `done` holds; the last
    /// value read.
    pub async fn metric_until(&self, sample: &str, done: impl Fn(f64) -> bool) -> f64 {
        let mut last = f64::NAN;
        for _ in 0..300 {
            last = metric(&self.metrics().await, sample);
            if done(last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .1
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a metric sample line, e.g. `webhookd_deliveries_total{outcome="success"}`.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

pub async fn wait_ready(url: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if http_get(url).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A plain GET; (0, "") when nothing answers.
pub async fn http_get(url: &str) -> (u16, String) {
    http(hyper::Method::GET, url, None, None).await
}

/// A request with an optional bearer token and JSON body; (status, body text).
pub async fn http(
    method: hyper::Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let (status, _, body) = http_with_headers(method, url, token, body).await;
    (status, body)
}

/// As `http`, with the answer's headers too.
pub async fn http_with_headers(
    method: hyper::Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, http::HeaderMap, String) {
    let auth = token.map(|t| ("authorization", format!("Bearer {t}")));
    http_request(method, url, auth.as_slice(), body).await
}

/// A request with any headers (a JSON body gets its content type); (status, headers, body).
pub async fn http_request(
    method: hyper::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> (u16, http::HeaderMap, String) {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, headers, String::from_utf8_lossy(&body).into_owned())
        }
        _ => (0, http::HeaderMap::new(), String::new()),
    }
}

/// Publishes envelopes straight to the stream with one pipeline; returns the entry ids.
pub fn publish(
    conn: &mut dyn redis::ConnectionLike,
    stream: &str,
    envelopes: &[String],
) -> Vec<String> {
    let mut ids = Vec::with_capacity(envelopes.len());
    for chunk in envelopes.chunks(1000) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.cmd("XADD").arg(stream).arg("*").arg("event").arg(e);
        }
        let got: Vec<String> = pipe.query(conn).unwrap();
        ids.extend(got);
    }
    ids
}

pub fn envelope(id: &str, event_type: &str, tenant: &str, data: serde_json::Value) -> String {
    serde_json::json!({"id": id, "type": event_type, "tenant": tenant, "created_at": 1704825600, "data": data})
        .to_string()
}

/// Verifies a received request with the independent `standardwebhooks` implementation.
pub fn verify(r: &Received, secret: &str) -> bool {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, r.header(name).parse().unwrap());
    }
    wh.verify(&r.body, &headers).is_ok()
}

/// Counts of each value among received requests' `webhook-id`.
pub fn by_webhook_id(got: &[Received]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in got {
        *m.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
    }
    m
}

/// A redis-server of the test's own on `port`, without persistence; killed when dropped. Its
/// working directory is a temporary one: a replica writes the RDB it receives to disk even
/// without `save`, and it must not land in the checkout.
pub struct OwnRedis {
    port: u16,
    child: std::process::Child,
    _dir: Option<tempfile::TempDir>,
}

impl OwnRedis {
    pub async fn start(port: u16) -> OwnRedis {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut r = OwnRedis::spawn(port, dir.path(), false).await;
        r._dir = Some(dir);
        r
    }

    /// One that writes every change to its append-only file in `dir` before answering, so a
    /// kill -9 and a start on the same `dir` lose nothing.
    pub async fn persistent(port: u16, dir: &std::path::Path) -> OwnRedis {
        OwnRedis::spawn(port, dir, true).await
    }

    async fn spawn(port: u16, dir: &std::path::Path, aof: bool) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if aof { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--dir",
                &dir.to_string_lossy(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let url = format!("redis://127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(10), || redis::Client::open(
                url.as_str()
            )
            .and_then(|c| c.get_connection())
            .is_ok())
            .await
        );
        OwnRedis {
            port,
            child,
            _dir: None,
        }
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 whose new connections go to `target`'s port, while the ones
/// already open stay where they were: a Kubernetes Service (or a DNS name) that moved to a
/// new Redis primary after a failover.
pub struct Proxy {
    pub port: u16,
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(target));
        let to = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Proxy { port, target, task }
    }

    /// New connections go to `port` from now on.
    pub fn point_to(&self, port: u16) {
        self.target.store(port, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tests' own port picker: a port it hands out is bound later by whoever asked, so the OS
/// may offer it again meanwhile; two servers of one test (or of two tests running at once) must
/// never be given the same one.
#[test]
fn the_tests_never_get_the_same_free_port_twice() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let port = free_port();
        assert!(seen.insert(port), "port {port} was handed out twice");
    }
}

/// Entries of `stream` the group `webhookd` has read but not yet acknowledged.
pub fn pending(conn: &mut redis::Connection, stream: &str) -> u64 {
    let p: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg("webhookd")
        .query(conn)
        .unwrap();
    p.0
}

/// `MEMORY USAGE` of the keys matching `pattern`: their sum, the largest, and how many.
pub fn memory_of(pattern: &str) -> (u64, u64, usize) {
    let mut r = redis();
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut r).unwrap();
    let sizes: Vec<u64> = keys
        .iter()
        .map(|k| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .arg("SAMPLES")
                .arg(0)
                .query::<Option<u64>>(&mut r)
                .unwrap()
                .unwrap_or(0)
        })
        .collect();
    let max = sizes.iter().copied().max().unwrap_or(0);
    (sizes.iter().sum(), max, keys.len())
}

/// Runs `webhookd <args> --config <config>`, which must succeed; its standard output.
pub fn webhookd_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "webhookd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Most requests in flight at once among `got`, each taken to last `held` from its arrival.
pub fn most_at_once(got: &[&Received], held: Duration) -> usize {
    let mut edges: Vec<(std::time::Instant, i32)> = got
        .iter()
        .flat_map(|r| [(r.at, 1), (r.at + held, -1)])
        .collect();
    // An end before a start at the same instant: the interval is half open.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}
