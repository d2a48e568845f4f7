//! SPEC 8, `redis`: the managed Redis users run — TLS (`rediss://`, a CA of their own in
//! `redis.ca_file`) and ACL users (`redis.username` / `redis.password`). A real redis-server
//! with TLS, its CA and certificate made here with `openssl`, and a user of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "webhookd";
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

/// A redis-server answering only TLS on a free port, with its certificate signed by `ca`, the
/// default user off and one ACL user; no persistence. Killed when dropped.
struct TlsRedis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    ca: Ca,
}

impl TlsRedis {
    /// `acl`: the rules of the user `webhookd`.
    fn start(acl: &[String]) -> TlsRedis {
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
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "test-ca.pem",
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                ".",
                "--user",
                "default",
                "off",
                "--user",
                USER,
            ])
            .args(acl)
            .current_dir(d)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let r = TlsRedis {
            port,
            child,
            _dir: dir,
            ca,
        };
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
        let url = format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{}", self.port);
        let ca = std::fs::read(&self.ca.cert).unwrap();
        redis::Client::build_with_tls(
            url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            },
        )
        .unwrap()
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

fn redis_keys(url: &str, ca: &Path) -> String {
    format!(
        "  url: \"{url}\"\n  username: \"{USER}\"\n  password: \"{PASSWORD}\"\n  ca_file: \"{}\"\n",
        ca.display()
    )
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
    let tls = TlsRedis::start(&readme_acl(&setup.prefix));
    setup = setup.redis(&redis_keys(&tls.url(), &tls.ca.cert));
    let w = Webhookd::start(&setup).await;
    let mut conn = tls.client().get_connection().unwrap();
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
    let keys = redis_keys(&tls.url(), &tls.ca.cert).replace(PASSWORD, "not-the-password");
    let (code, err) = serve_fails(&Setup::new("tls_bad_pass").redis(&keys));
    assert_ne!(code, Some(0));
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    assert!(line.contains("Redis"), "{line}");
    assert!(!line.contains("not-the-password"), "no password in: {line}");
}

/// A redis-server in sentinel mode on a free port watching `master` as `mymaster`; killed
/// when dropped.
struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 4000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        Sentinel {
            port,
            child,
            _dir: dir,
        }
    }

    fn conn(&self) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .ok()?
            .get_connection()
            .ok()
    }

    /// The port the sentinel names as the master now.
    fn master_port(&self) -> Option<u16> {
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("mymaster")
            .query(&mut self.conn()?)
            .ok()?;
        addr.get(1)?.parse().ok()
    }

    /// How many replicas of the master the sentinel knows.
    fn replicas(&self) -> usize {
        let Some(mut c) = self.conn() else { return 0 };
        redis::cmd("SENTINEL")
            .arg("replicas")
            .arg("mymaster")
            .query::<Vec<redis::Value>>(&mut c)
            .map_or(0, |r| r.len())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn role(port: u16) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
        .ok()
        .and_then(|r| match r.first() {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A primary (`a`) with a replica (`b`), three sentinels watching it as `mymaster`, a
/// receiver, and a webhookd in sentinel mode delivering every event to it.
struct SentinelSetup {
    pa: u16,
    pb: u16,
    a: OwnRedis,
    _b: OwnRedis,
    sentinels: Vec<Sentinel>,
    rx: Receiver,
    setup: Setup,
    w: Webhookd,
}

impl SentinelSetup {
    async fn start(name: &str) -> SentinelSetup {
        let (pa, pb) = (free_port(), free_port());
        let a = OwnRedis::start(pa).await;
        let b = OwnRedis::start(pb).await;
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(pa)
            .query(&mut node(pb))
            .unwrap();
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(pa)).collect();
        assert!(
            wait_until(Duration::from_secs(30), || sentinels
                .iter()
                .all(|s| s.replicas() == 1 && s.master_port() == Some(pa)))
            .await,
            "the sentinels never saw the master and its replica"
        );
        let rx = Receiver::start(always(200)).await;
        let urls: Vec<String> = sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect();
        let setup = Setup::new(name)
            .redis(&format!(
                "  mode: sentinel\n  sentinel_master: mymaster\n  url: \"{}\"\n",
                urls.join(",")
            ))
            .endpoint("ep_s", "t", &rx.url("/"), &["*"]);
        let w = Webhookd::start(&setup).await;
        SentinelSetup {
            pa,
            pb,
            a,
            _b: b,
            sentinels,
            rx,
            setup,
            w,
        }
    }
}

/// A connection to the redis-server on `port`.
fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sentinel_mode_webhookd_finds_the_master_and_follows_a_failover() {
    let SentinelSetup {
        pa,
        pb,
        a: _a,
        sentinels,
        rx,
        setup,
        w: _w,
        _b,
    } = SentinelSetup::start("sentinel").await;
    let master = node;
    publish(
        &mut master(pa),
        &setup.stream(),
        &[envelope("evt_before", "outbound.sent", "t", json!({}))],
    );
    assert_eq!(
        rx.wait_for(1, WAIT).await.len(),
        1,
        "delivered through the first master"
    );

    // A sentinel answers NOGOODSLAVE until it has a fresh enough view of the replica (it asks
    // for INFO every 10 s); ask again until it starts the failover.
    let mut last = String::new();
    let started = wait_until(Duration::from_secs(40), || match sentinels[0].conn() {
        Some(mut c) => {
            let asked: redis::RedisResult<()> = redis::cmd("SENTINEL")
                .arg("failover")
                .arg("mymaster")
                .query(&mut c);
            asked.map_err(|e| last = e.to_string()).is_ok()
        }
        None => {
            last = "no connection to the sentinel".into();
            false
        }
    })
    .await;
    assert!(started, "no failover started: {last}");
    assert!(
        wait_until(Duration::from_secs(30), || sentinels[0].master_port()
            == Some(pb)
            && role(pb) == "master"
            && role(pa) == "slave")
        .await,
        "the failover never completed"
    );
    publish(
        &mut master(pb),
        &setup.stream(),
        &[envelope("evt_after", "outbound.sent", "t", json!({}))],
    );
    let got = rx.wait_for(2, Duration::from_secs(30)).await;
    assert!(
        got.iter().any(|g| g.header("webhook-id") == "evt_after"),
        "the event published on the new master is delivered: {:?}",
        got.iter()
            .map(|g| g.header("webhook-id"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sentinel_mode_webhookd_carries_on_after_the_master_is_killed() {
    let SentinelSetup {
        pa,
        pb,
        a,
        sentinels,
        rx,
        setup,
        w,
        _b,
    } = SentinelSetup::start("sentinel_kill").await;
    publish(
        &mut node(pa),
        &setup.stream(),
        &[envelope("evt_before", "outbound.sent", "t", json!({}))],
    );
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);
    // SIGKILL the master: the sentinels see it down after 1 s and promote the replica.
    drop(a);
    let promoted = wait_until(Duration::from_secs(40), || {
        sentinels[0].master_port() == Some(pb) && role(pb) == "master"
    })
    .await;
    assert!(promoted, "the sentinels did not promote the replica");
    let after: Vec<String> = (0..20)
        .map(|i| envelope(&format!("evt_after_{i}"), "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut node(pb), &setup.stream(), &after);
    let got = rx.wait_for(21, WAIT).await;
    let seen = by_webhook_id(&got);
    let missing: Vec<usize> = (0..20)
        .filter(|i| !seen.contains_key(&format!("evt_after_{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "published after the promotion, not delivered: {missing:?}; log:\n{}",
        w.log_text()
    );
}

/// The set-up scripts/test.sh starts, as a variable's value (the tests fail, naming the
/// script, without it).
fn started_by_test_sh(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test.sh, which starts it")
    })
}

/// The primary, replica and three sentinels scripts/test.sh starts: delivery through the
/// master the sentinels name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_sentinels_test_sh_starts_events_are_delivered() {
    let urls = started_by_test_sh("WEBHOOKD_TEST_SENTINEL_URLS");
    let master = started_by_test_sh("WEBHOOKD_TEST_SENTINEL_MASTER");
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("shared_sentinel")
        .redis(&format!(
            "  mode: sentinel\n  sentinel_master: {master}\n  url: \"{urls}\"\n"
        ))
        .endpoint("ep", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let api = crate::api_common::Api::admin(&setup);
    for i in 0..5 {
        let (status, body) = api.publish_event(&format!("evt_{i}"), "t").await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(
        rx.wait_for(5, WAIT).await.len(),
        5,
        "log:\n{}",
        w.log_text()
    );
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
