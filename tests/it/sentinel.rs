//! SPEC 8, `redis.mode: sentinel`: webhookd asks the sentinels for the master and follows a
//! failover, over plain TCP or over TLS (`rediss://` sentinels, `redis.ca_file`) as an ACL
//! user. Real redis-servers and sentinels on free ports, made here for each test.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::redis_access::{readme_acl, redis_keys, started_by_test_sh, TlsFiles, PASSWORD, USER};

const WAIT: Duration = Duration::from_secs(20);

/// How the test's Redis processes are reached: plain TCP, or TLS only, with a CA made for
/// the test.
#[derive(Clone)]
enum Wire {
    Plain,
    Tls(Arc<TlsFiles>),
}

impl Wire {
    fn url(&self, port: u16) -> String {
        match self {
            Wire::Plain => format!("redis://127.0.0.1:{port}"),
            Wire::Tls(_) => format!("rediss://127.0.0.1:{port}"),
        }
    }

    /// A connection as the default user.
    fn conn(&self, port: u16) -> Option<redis::Connection> {
        let client = match self {
            Wire::Plain => redis::Client::open(self.url(port)).ok()?,
            Wire::Tls(tls) => tls.client(&self.url(port)),
        };
        client.get_connection().ok()
    }

    /// The settings a server on `port` listens with, as `(name, value)` pairs.
    fn listen(&self, port: u16) -> Vec<(&'static str, String)> {
        match self {
            Wire::Plain => vec![("port", port.to_string())],
            Wire::Tls(tls) => {
                let mut s = vec![("port", "0".to_string()), ("tls-port", port.to_string())];
                s.extend(tls.server_settings());
                s
            }
        }
    }
}

/// A redis-server (`--sentinel`, or a data node) on a free port; killed when dropped.
struct Server {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data node without persistence; `extra` are more `--name value…` arguments.
async fn data_node(wire: &Wire, extra: &[String]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new("redis-server")
        .args(
            wire.listen(port)
                .into_iter()
                .flat_map(|(k, v)| [format!("--{k}"), v]),
        )
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    assert!(
        wait_until(Duration::from_secs(10), || wire.conn(port).is_some()).await,
        "the redis-server on {port} never answered"
    );
    Server {
        port,
        child,
        _dir: dir,
    }
}

/// A sentinel watching the master on `master_port` as `mymaster`.
fn sentinel(wire: &Wire, master_port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    let listen: String = wire
        .listen(port)
        .into_iter()
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "{listen}bind 127.0.0.1\ndir {}\n\
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
    Server {
        port,
        child,
        _dir: dir,
    }
}

/// The port a sentinel names as the master now.
fn master_port(wire: &Wire, sentinel: &Server) -> Option<u16> {
    let addr: Vec<String> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg("mymaster")
        .query(&mut wire.conn(sentinel.port)?)
        .ok()?;
    addr.get(1)?.parse().ok()
}

/// How many replicas of the master a sentinel knows.
fn replicas(wire: &Wire, sentinel: &Server) -> usize {
    let Some(mut c) = wire.conn(sentinel.port) else {
        return 0;
    };
    redis::cmd("SENTINEL")
        .arg("replicas")
        .arg("mymaster")
        .query::<Vec<redis::Value>>(&mut c)
        .map_or(0, |r| r.len())
}

fn role(wire: &Wire, port: u16) -> String {
    wire.conn(port)
        .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c).ok())
        .and_then(|r| match r.first() {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A primary (`a`) with a replica (`b`), three sentinels watching it as `mymaster`, a
/// receiver, and a webhookd in sentinel mode delivering every event to it. Over TLS, the data
/// nodes have the user README.md documents and webhookd runs as it.
struct SentinelSetup {
    wire: Wire,
    a: Server,
    b: Server,
    sentinels: Vec<Server>,
    rx: Receiver,
    setup: Setup,
    w: Webhookd,
}

impl SentinelSetup {
    async fn start(name: &str, wire: Wire) -> SentinelSetup {
        let rx = Receiver::start(always(200)).await;
        let setup = Setup::new(name).endpoint("ep_s", "t", &rx.url("/"), &["*"]);
        let user: Vec<String> = match wire {
            Wire::Plain => Vec::new(),
            Wire::Tls(_) => [
                vec!["--user".to_string(), USER.to_string()],
                readme_acl(&setup.prefix),
            ]
            .concat(),
        };
        let a = data_node(&wire, &user).await;
        let replica_of = [
            user.clone(),
            vec!["--replicaof".into(), "127.0.0.1".into(), a.port.to_string()],
        ]
        .concat();
        let b = data_node(&wire, &replica_of).await;
        let sentinels: Vec<Server> = (0..3).map(|_| sentinel(&wire, a.port)).collect();
        assert!(
            wait_until(Duration::from_secs(30), || sentinels.iter().all(
                |s| replicas(&wire, s) == 1 && master_port(&wire, s) == Some(a.port)
            ))
            .await,
            "the sentinels never saw the master and its replica"
        );
        let urls: Vec<String> = sentinels.iter().map(|s| wire.url(s.port)).collect();
        let urls = urls.join(",");
        let redis = match &wire {
            Wire::Plain => format!("  url: \"{urls}\"\n"),
            Wire::Tls(tls) => redis_keys(&urls, tls.ca_cert()),
        };
        let setup = setup.redis(&format!(
            "  mode: sentinel\n  sentinel_master: mymaster\n{redis}"
        ));
        let w = Webhookd::start(&setup).await;
        SentinelSetup {
            wire,
            a,
            b,
            sentinels,
            rx,
            setup,
            w,
        }
    }

    /// SIGKILL the master while webhookd runs: the sentinels promote the replica, and every
    /// event published on it after the promotion is delivered by the same webhookd.
    async fn kill_the_master(self) {
        let wire = self.wire.clone();
        let stream = self.setup.stream();
        publish_on(&wire, self.a.port, &stream, &["evt_before".into()]);
        assert_eq!(
            self.rx.wait_for(1, WAIT).await.len(),
            1,
            "log:\n{}",
            self.w.log_text()
        );
        let pb = self.b.port;
        drop(self.a);
        let promoted = wait_until(Duration::from_secs(40), || {
            master_port(&wire, &self.sentinels[0]) == Some(pb) && role(&wire, pb) == "master"
        })
        .await;
        assert!(promoted, "the sentinels did not promote the replica");
        let after: Vec<String> = (0..20).map(|i| format!("evt_after_{i}")).collect();
        publish_on(&wire, pb, &stream, &after);
        let got = self.rx.wait_for(21, WAIT).await;
        let seen = by_webhook_id(&got);
        let missing: Vec<&String> = after.iter().filter(|id| !seen.contains_key(*id)).collect();
        assert!(
            missing.is_empty(),
            "published after the promotion, not delivered: {missing:?}; log:\n{}",
            self.w.log_text()
        );
        assert!(
            !self.w.log_text().contains(PASSWORD),
            "the Redis password is never logged"
        );
    }
}

/// Publishes events `ids` for tenant `t` on the node at `port`.
fn publish_on(wire: &Wire, port: u16, stream: &str, ids: &[String]) {
    let mut conn = wire.conn(port).expect("a connection to the master");
    let events: Vec<String> = ids
        .iter()
        .map(|id| envelope(id, "outbound.sent", "t", json!({})))
        .collect();
    publish(&mut conn, stream, &events);
}

/// Whether `sentinel` names the server on `port` the master, and it says so itself.
fn named(wire: &Wire, sentinel: &Server, port: u16) -> bool {
    master_port(wire, sentinel) == Some(port) && role(wire, port) == "master"
}

/// Asks `sentinel` for a failover of `mymaster` until it starts one. A sentinel answers
/// NOGOODSLAVE until it has a fresh enough view of the replica (it asks for INFO every 10 s).
async fn start_failover(wire: &Wire, sentinel: &Server) {
    let mut last = String::new();
    let started = wait_until(Duration::from_secs(40), || match wire.conn(sentinel.port) {
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
}

/// Once the sentinels name the new master, webhookd moves to it at once, not when the old one
/// is demoted: the sentinels leave a server that still says it is a master alone for about
/// eight seconds, and what was written there meanwhile (an endpoint created through the API,
/// in a probe) was lost with it. An event published on the new master in that window was
/// delivered only ~10 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sentinel_mode_webhookd_follows_the_sentinels_before_the_old_master_is_demoted() {
    let s = SentinelSetup::start("sentinel_follow", Wire::Plain).await;
    let (wire, pa, pb, stream) = (&s.wire, s.a.port, s.b.port, s.setup.stream());
    publish_on(wire, pa, &stream, &["evt_before".into()]);
    assert_eq!(s.rx.wait_for(1, WAIT).await.len(), 1);
    start_failover(wire, &s.sentinels[0]).await;
    assert!(
        wait_until(Duration::from_secs(30), || named(wire, &s.sentinels[0], pb)).await,
        "the sentinels never named the new master"
    );
    let old_still_master = role(wire, pa) == "master";
    publish_on(wire, pb, &stream, &["evt_after".into()]);
    let got = s.rx.wait_for(2, Duration::from_secs(4)).await;
    assert!(
        got.iter().any(|g| g.header("webhook-id") == "evt_after"),
        "not delivered within 4 s of the switch (old master still a master then: \
         {old_still_master}); log:\n{}",
        s.w.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sentinel_mode_webhookd_finds_the_master_and_follows_a_failover() {
    let s = SentinelSetup::start("sentinel", Wire::Plain).await;
    let (wire, pa, pb, stream) = (&s.wire, s.a.port, s.b.port, s.setup.stream());
    publish_on(wire, pa, &stream, &["evt_before".into()]);
    assert_eq!(
        s.rx.wait_for(1, WAIT).await.len(),
        1,
        "delivered through the first master"
    );

    start_failover(wire, &s.sentinels[0]).await;
    assert!(
        wait_until(Duration::from_secs(30), || named(wire, &s.sentinels[0], pb)
            && role(wire, pa) == "slave")
        .await,
        "the failover never completed"
    );
    publish_on(wire, pb, &stream, &["evt_after".into()]);
    let got = s.rx.wait_for(2, Duration::from_secs(30)).await;
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
    SentinelSetup::start("sentinel_kill", Wire::Plain)
        .await
        .kill_the_master()
        .await;
}

/// The same kill test with every server and sentinel answering only TLS (`rediss://`
/// sentinels, the test's CA in `redis.ca_file`) and webhookd running as the ACL user README.md
/// documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_as_an_acl_user_webhookd_carries_on_after_the_master_is_killed() {
    let tls = Wire::Tls(Arc::new(TlsFiles::make()));
    SentinelSetup::start("sentinel_tls", tls)
        .await
        .kill_the_master()
        .await;
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
