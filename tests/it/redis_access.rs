//! SPEC 8, `redis`: the managed Redis users run — TLS (`rediss://`, a CA of their own in
//! `redis.ca_file`) and ACL users (`redis.username` / `redis.password`). A real redis-server
//! with TLS, its CA and certificate made here with `openssl`, and a user of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);
pub(crate) const USER: &str = "webhookd";
pub(crate) const PASSWORD: &str = "acl-pass-8d1f";

/// A CA (certificate and key) made for one test.
struct Ca {
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key, unencrypted: what every `openssl req` here makes.
const NEW_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn make_ca(dir: &Path, name: &str) -> Ca {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN={name}");
    let rest = [
        "-keyout", &key, "-out", &cert, "-days", "2", "-subj", &subject,
    ];
    openssl(dir, &[&["req", "-x509"][..], NEW_KEY, &rest].concat());
    Ca {
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

/// A CA made for one test and a certificate for 127.0.0.1 it signed, in a directory of their
/// own: what a TLS redis-server (or sentinel) here presents.
pub(crate) struct TlsFiles {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl TlsFiles {
    pub(crate) fn make() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = make_ca(d, "test-ca");
        let rest = [
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ];
        openssl(d, &[&["req"][..], NEW_KEY, &rest].concat());
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "test-ca.pem",
                "-CAkey",
                "test-ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        TlsFiles { dir, ca }
    }

    pub(crate) fn ca_cert(&self) -> &Path {
        &self.ca.cert
    }

    /// A redis-server's (or a sentinel's) TLS settings as `(name, value)` pairs: its
    /// certificate, the CA, no client certificates, and TLS to the servers it replicates or
    /// watches too.
    pub(crate) fn server_settings(&self) -> Vec<(&'static str, String)> {
        let at = |f: &str| self.dir.path().join(f).display().to_string();
        vec![
            ("tls-cert-file", at("server.pem")),
            ("tls-key-file", at("server.key")),
            ("tls-ca-cert-file", at("test-ca.pem")),
            ("tls-auth-clients", "no".into()),
            ("tls-replication", "yes".into()),
        ]
    }

    /// A client of `url` (`rediss://`) that trusts the CA.
    pub(crate) fn client(&self, url: &str) -> redis::Client {
        let ca = std::fs::read(&self.ca.cert).unwrap();
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            },
        )
        .unwrap()
    }
}

/// A redis-server answering only TLS on a free port, with its certificate signed by the
/// test's CA, the default user off and one ACL user; no persistence. Killed when dropped.
struct TlsRedis {
    port: u16,
    child: Child,
    tls: TlsFiles,
}

impl TlsRedis {
    /// `acl`: the rules of the user `webhookd`.
    fn start(acl: &[String]) -> TlsRedis {
        let tls = TlsFiles::make();
        let port = free_port();
        let settings = tls
            .server_settings()
            .into_iter()
            .flat_map(|(k, v)| [format!("--{k}"), v]);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(settings)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(tls.dir.path())
            .args(["--user", "default", "off", "--user", USER])
            .args(acl)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let r = TlsRedis { port, child, tls };
        let limit = Instant::now() + Duration::from_secs(10);
        while r.client().get_connection().is_err() {
            assert!(
                Instant::now() < limit,
                "the TLS redis-server never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// A client of the test's own: the same CA, the ACL user.
    fn client(&self) -> redis::Client {
        self.tls.client(&format!(
            "rediss://{USER}:{PASSWORD}@127.0.0.1:{}",
            self.port
        ))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ACL README.md documents for webhookd's user, for keys under `prefix`.
pub(crate) fn readme_acl(prefix: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ACL SETUSER webhookd "))
        .expect("README.md documents the ACL user");
    line.split_whitespace()
        .skip(3)
        .map(|rule| match rule {
            ">CHANGE-ME" => format!(">{PASSWORD}"),
            "~webhookd:*" => format!("~{prefix}*"),
            other => other.to_string(),
        })
        .collect()
}

pub(crate) fn redis_keys(url: &str, ca: &Path) -> String {
    format!(
        "  url: \"{url}\"\n  username: \"{USER}\"\n  password: \"{PASSWORD}\"\n  ca_file: \"{}\"\n",
        ca.display()
    )
}

/// A TLS Redis whose user `webhookd` has the rules `acl`, `setup` pointed at it, the webhookd
/// it runs, and a connection of the test's own as that user.
async fn as_acl_user(setup: &mut Setup, acl: &[String]) -> (TlsRedis, Webhookd, redis::Connection) {
    let tls = TlsRedis::start(acl);
    *setup = setup
        .clone()
        .redis(&redis_keys(&tls.url(), &tls.tls.ca.cert));
    let w = Webhookd::start(setup).await;
    let conn = tls.client().get_connection().unwrap();
    (tls, w, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhookd_delivers_through_a_tls_redis_as_an_acl_user() {
    let rx = Receiver::start(always(200)).await;
    let retry_rx = Receiver::start(first_then_ok(1, 500)).await;
    let gone_rx = Receiver::start(always(410)).await;
    let mut setup = Setup::new("tls_acl")
        .with("retry:\n  schedule: [1s]\n  jitter: 0\nstream:\n  claim_idle: 2s\n")
        .endpoint("ep_tls", "t", &rx.url("/"), &["outbound.sent"])
        .endpoint("ep_retry", "t", &retry_rx.url("/"), &["outbound.bounced"])
        .endpoint("ep_gone", "t", &gone_rx.url("/"), &["outbound.complaint"]);
    // Only the commands and keys README.md lists.
    let acl = readme_acl(&setup.prefix);
    let (_tls, w, mut conn) = as_acl_user(&mut setup, &acl).await;
    publish(
        &mut conn,
        &setup.stream(),
        &[
            envelope("evt_tls", "outbound.sent", "t", json!({"over": "tls"})),
            envelope("evt_retry", "outbound.bounced", "t", json!({})),
            envelope("evt_gone", "outbound.complaint", "t", json!({})),
        ],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "the event arrives; log:\n{}", w.log_text());
    assert_eq!(got[0].header("webhook-id"), "evt_tls");
    assert_eq!(retry_rx.wait_for(2, WAIT).await.len(), 2, "retried once");
    let dlq = format!("{}dlq", setup.prefix);
    let dead = wait_until(WAIT, || {
        redis::cmd("XLEN")
            .arg(&dlq)
            .query::<u64>(&mut conn)
            .unwrap_or(0)
            == 1
    })
    .await;
    assert!(dead, "the 410 is dead-lettered; log:\n{}", w.log_text());
    // The API's reads, the gauges' and the periodic claim's commands run as this user too.
    let (status, letters) = crate::api_common::Api::admin(&setup)
        .get("/v1/tenants/t/dlq")
        .await;
    assert_eq!(status, 200, "{letters}");
    assert!(w.metrics().await.contains("webhookd_stream_lag"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = w.log_text().to_lowercase();
    assert!(
        !log.contains("noperm") && !log.contains("can't run this command"),
        "a command the ACL does not allow:\n{}",
        w.log_text()
    );
    assert!(
        !w.log_text().contains(PASSWORD),
        "the Redis password is never logged"
    );
}

/// An ACL user missing one of README's commands (here `HSETNX`, which the duplicate check
/// needs) makes the replica not ready, naming what it cannot do, instead of answering ready
/// while every event stays pending (found by probing: 200 from /readyz, a warning a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_acl_permission_makes_the_replica_not_ready_naming_the_part() {
    let rx = Receiver::start(always(200)).await;
    let mut setup = Setup::new("tls_acl_short").endpoint("ep_1", "t", &rx.url("/"), &["*"]);
    let acl: Vec<String> = readme_acl(&setup.prefix)
        .into_iter()
        .filter(|rule| rule != "+hsetnx")
        .collect();
    let (_tls, w, mut conn) = as_acl_user(&mut setup, &acl).await;
    publish(
        &mut conn,
        &setup.stream(),
        &[envelope("evt_denied", "outbound.sent", "t", json!({}))],
    );
    let ready = format!("http://127.0.0.1:{}/readyz", setup.port);
    let refused = wait_until_async(WAIT, || async { http_get(&ready).await.0 == 503 }).await;
    let (_, text) = http_get(&ready).await;
    assert!(refused, "still ready: {text}; log:\n{}", w.log_text());
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["permissions_missing"],
        json!(["duplicate check"]),
        "{body}"
    );
    assert_eq!(rx.count(), 0);
}

/// Runs `webhookd serve` expecting it to fail at start; its exit code and its stderr.
fn serve_fails(setup: &Setup) -> (Option<i32>, String) {
    let (_dir, config) = setup.write();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("webhookd kept running against a server it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_server_whose_certificate_another_ca_signed_is_refused_in_one_line() {
    let tls = TlsRedis::start(&readme_acl(""));
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_ca(other_dir.path(), "other-ca");
    let setup = Setup::new("tls_wrong_ca").redis(&redis_keys(&tls.url(), &other.cert));
    let (code, err) = serve_fails(&setup);
    assert_ne!(code, Some(0));
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    assert!(line.contains("cannot connect to Redis"), "{line}");
    assert!(!line.contains(PASSWORD), "no password in: {line}");
    let _ = other.key;
}

#[test]
fn a_wrong_acl_password_is_refused_in_one_line_without_the_password() {
    let tls = TlsRedis::start(&readme_acl(""));
    let keys = redis_keys(&tls.url(), &tls.tls.ca.cert).replace(PASSWORD, "not-the-password");
    let (code, err) = serve_fails(&Setup::new("tls_bad_pass").redis(&keys));
    assert_ne!(code, Some(0));
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    assert!(line.contains("Redis"), "{line}");
    assert!(!line.contains("not-the-password"), "no password in: {line}");
}

/// The set-up scripts/test.sh starts, as a variable's value (the tests fail, naming the
/// script, without it).
pub(crate) fn started_by_test_sh(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test.sh, which starts it")
    })
}

/// The TLS server scripts/test.sh starts (its CA made at run time), as its ACL user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_tls_server_test_sh_starts_events_are_delivered() {
    let url = started_by_test_sh("WEBHOOKD_TEST_TLS_URL");
    let ca = started_by_test_sh("WEBHOOKD_TEST_TLS_CA");
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("shared_tls")
        .redis(&format!(
            "  url: \"{url}\"\n  username: webhookd\n  password: test-secret\n  ca_file: \"{ca}\"\n"
        ))
        .endpoint("ep", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let api = crate::api_common::Api::admin(&setup);
    let (status, body) = api.publish_event("evt_tls", "t").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        rx.wait_for(1, WAIT).await.len(),
        1,
        "log:\n{}",
        w.log_text()
    );
    assert!(!w.log_text().contains("test-secret"));
}

/// A registry larger than what Redis lets one reply to a normal client grow to (an operator's
/// `client-output-buffer-limit normal`) still loads: the full load reads it a page at a time.
/// One `HGETALL` of it (the build before this test) was cut off by Redis at the limit, so the
/// replica never started; it also kept every other client of that Redis waiting while Redis
/// built a reply of the whole registry, tens of MB at 100,000 endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_larger_than_one_reply_may_be_loads_a_page_at_a_time() {
    const FILLERS: usize = 3_000;
    let server = OwnRedis::start(free_port()).await;
    let url = server.url();
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("registry_pages").endpoint("ep_real", "t", &rx.url("/"), &["*"]);
    let (_, sealer) = setup.registry().await;
    let conn = webhookd::db::conn::connect(&url, Duration::from_secs(5))
        .await
        .expect("the test's own redis");
    let store = webhookd::registry::Store::new(
        conn,
        webhookd::db::keys::Keys::new(&setup.prefix, "events"),
    );
    // About 1.3 KB a record: 4 MB of registry, past the 2 MB limit set below; a page of
    // records stays far under it.
    let description = "x".repeat(1_200);
    for i in 0..FILLERS {
        let id = format!("ep_fill_{i:05}");
        let rec = webhookd::registry::EndpointRecord {
            description: description.clone(),
            ..webhookd::registry::EndpointRecord::new(
                id.clone(),
                "filler".into(),
                "https://filler.example/".into(),
                vec!["*".into()],
                sealer.seal(&webhookd::secure::sign::generate_secret(), &id),
                1,
            )
        };
        store.put(&rec).await.expect("a filler record");
    }
    let mut r = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("normal 2mb 2mb 0")
        .query(&mut r)
        .unwrap();
    let w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_REDIS__URL", &url)]).await;
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_pages", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "delivered; log:\n{}", w.log_text());
    let all = wait_until_async(WAIT, || async {
        metric(&w.metrics().await, "webhookd_endpoints ") == (FILLERS + 1) as f64
    })
    .await;
    assert!(
        all,
        "the index holds every endpoint: {}",
        metric(&w.metrics().await, "webhookd_endpoints ")
    );
}
