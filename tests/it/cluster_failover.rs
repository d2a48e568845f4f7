//! Issue 13, failover: SIGKILL the primary that holds a busy shard while events flow, on a
//! 6-node cluster of this test's own (it kills a node, so it shares none), run the way
//! README.md recommends: `min-replicas-to-write 1` and `min-replicas-max-lag 10`. The replica is
//! promoted, the killed node comes back (as an orchestrator would restart it) as the new
//! primary's replica, webhookd carries on without a restart, and every event published after
//! the promotion is delivered.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

struct Node {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

/// Six redis-servers in cluster mode, in a temporary directory; killed when dropped.
struct OwnCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl OwnCluster {
    fn spawn(dir: &std::path::Path, port: u16, bus: u16) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--cluster-port",
                &bus.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--dbfilename", &format!("dump-{port}.rdb")])
            .args([
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
            ])
            .args(["--repl-diskless-sync-delay", "0"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH")
    }

    async fn start() -> OwnCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..6)
            .map(|_| {
                let (port, bus) = (free_port(), free_port());
                let child = Self::spawn(dir.path(), port, bus);
                Node {
                    port,
                    bus,
                    child: Some(child),
                }
            })
            .collect();
        let c = OwnCluster { dir, nodes };
        for n in &c.nodes {
            assert!(wait_until(Duration::from_secs(10), || c.ping(n.port)).await);
        }
        let addrs: Vec<String> = c
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let ready = wait_until(Duration::from_secs(30), || {
            c.nodes
                .iter()
                .all(|n| c.info(n.port).contains("cluster_state:ok"))
                && c.masters_with_replicas() == 3
        })
        .await;
        assert!(ready, "the cluster did not form");
        c
    }

    fn conn(&self, port: u16) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    fn ping(&self, port: u16) -> bool {
        self.conn(port)
            .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    }

    fn info(&self, port: u16) -> String {
        self.conn(port)
            .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok())
            .unwrap_or_default()
    }

    /// `CLUSTER NODES` as a live node sees it.
    fn nodes_view(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| {
                self.conn(n.port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok())
            })
            .unwrap_or_default()
    }

    /// Primaries (not failed) with a connected replica.
    fn masters_with_replicas(&self) -> usize {
        let view = self.nodes_view();
        let lines: Vec<Vec<&str>> = view.lines().map(|l| l.split(' ').collect()).collect();
        lines
            .iter()
            .filter(|f| f.len() > 7 && f[2].contains("master") && !f[2].contains("fail"))
            .filter(|m| {
                lines.iter().any(|r| {
                    r.len() > 7 && r[3] == m[0] && r[2].contains("slave") && !r[2].contains("fail")
                })
            })
            .count()
    }

    /// The port of the primary serving `key`'s slot, as a live node sees it.
    fn primary_of(&self, key: &str) -> Option<u16> {
        let n = self.nodes.iter().find(|n| n.child.is_some())?;
        let mut c = self.conn(n.port)?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .ok()?;
        let view: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok()?;
        view.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let serves = f.len() > 8
                && f[2].contains("master")
                && !f[2].contains("fail")
                && f[8..].iter().any(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        a.parse::<u16>().is_ok_and(|a| a <= slot)
                            && b.parse::<u16>().is_ok_and(|b| slot <= b)
                    }
                    None => r.parse::<u16>().is_ok_and(|s| s == slot),
                });
            serves.then(|| f[1].split(':').nth(1)?.split('@').next()?.parse().ok())?
        })
    }

    fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        let mut child = n.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn restart(&mut self, port: u16) {
        let dir = self.dir.path().to_path_buf();
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        n.child = Some(Self::spawn(&dir, n.port, n.bus));
    }

    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_of_a_busy_shard_loses_nothing_published_after_the_promotion() {
    let mut cluster = OwnCluster::start().await;
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("cl_failover")
        .redis(&format!("  mode: cluster\n  url: \"{}\"\n", cluster.urls()))
        .with("stream:\n  shards: 16\n  block: 200ms\n  claim_idle: 2s\n")
        .endpoint("ep", "t", &rx.url("/"), &["*"]);
    let w = Webhookd::start(&setup).await;
    let busy = format!("{}events:{{0}}", setup.prefix);
    let victim = cluster.primary_of(&busy).expect("a primary serves shard 0");

    // A producer writing to shard 0 every 10 ms; it records what Redis acknowledged, and when.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (acked, stop, urls, busy) = (acked.clone(), stop.clone(), cluster.urls(), busy.clone());
        std::thread::spawn(move || {
            let nodes: Vec<String> = urls.split(',').map(String::from).collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(Duration::from_millis(500))
                .response_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let mut conn = None;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if conn.is_none() {
                    conn = client.get_connection().ok();
                }
                if let Some(c) = conn.as_mut() {
                    let id = format!("evt_{n}");
                    let env = envelope(&id, "outbound.sent", "t", json!({}));
                    match redis::cmd("XADD")
                        .arg(&busy)
                        .arg("*")
                        .arg("event")
                        .arg(env)
                        .query::<String>(c)
                    {
                        Ok(_) => {
                            acked.lock().unwrap().push((id, Instant::now()));
                            n += 1;
                        }
                        Err(_) => conn = None,
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    assert!(
        wait_until(WAIT, || rx.count() >= 50).await,
        "deliveries before the kill"
    );
    cluster.kill(victim);
    let killed_at = Instant::now();
    let promoted = wait_until(WAIT, || {
        cluster.primary_of(&busy).is_some_and(|p| p != victim)
    })
    .await;
    assert!(promoted, "no replica was promoted");
    let promoted_at = Instant::now();
    // As an orchestrator would: the killed node comes back, as the new primary's replica, and
    // the shard takes writes again (min-replicas-to-write 1).
    cluster.restart(victim);
    assert!(
        wait_until(WAIT, || cluster.masters_with_replicas() == 3).await,
        "the restarted node did not rejoin as a replica"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().unwrap();

    let after: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > promoted_at)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        !after.is_empty(),
        "nothing was published after the promotion"
    );
    let all_after = wait_until(WAIT, || {
        let seen: HashSet<String> = by_webhook_id(&rx.received()).into_keys().collect();
        after.iter().all(|id| seen.contains(id))
    })
    .await;
    let seen: HashSet<String> = by_webhook_id(&rx.received()).into_keys().collect();
    let missing: Vec<&String> = after.iter().filter(|id| !seen.contains(*id)).collect();
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, at)| *at <= killed_at && !seen.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    eprintln!(
        "failover: promoted {:?} after the kill; {} events acknowledged after it; published before the kill and never delivered: {before:?}",
        promoted_at - killed_at,
        after.len()
    );
    assert!(
        all_after && missing.is_empty(),
        "published after the promotion and not delivered: {missing:?}; log:\n{}",
        w.log_text()
    );
}
