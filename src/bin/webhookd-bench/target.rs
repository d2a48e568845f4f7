//! The webhookd under test: its endpoints written straight into its Redis registry, and the
//! process itself, either spawned here with a generated config or already running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use webhookd::db::conn::Conn;
use webhookd::registry::{EndpointRecord, Store};
use webhookd::secure::seal::Sealer;
use webhookd::secure::sign::generate_secret;

use super::args::Args;
use super::noisy::{Noisy, NOISY_TYPE};
use super::observe::{self, get};
use super::plan::Plan;

/// Endpoint records written concurrently per round trip batch.
const PUT_CONCURRENCY: usize = 256;
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a stopped webhookd may take to end before it is killed (its own grace is 2 s).
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Writes every endpoint of the plan, each with its own secret, under the target's prefix.
pub async fn register(
    store: &Store,
    sealer: &Sealer,
    plan: &Plan,
    filters: &[String],
    secrets: &[String],
    listeners: &[SocketAddr],
    ordering_key: Option<&str>,
) -> redis::RedisResult<()> {
    let now = webhookd::support::clock::now_ms();
    let records: Vec<EndpointRecord> = (0..plan.endpoints)
        .map(|n| EndpointRecord {
            description: "webhookd-bench".into(),
            ordering_key: ordering_key.map(String::from),
            ..EndpointRecord::new(
                plan.endpoint_id(n),
                plan.tenant(n as u64),
                format!("http://{}/ep/{n}", listeners[n as usize % listeners.len()]),
                filters.to_vec(),
                sealer.seal(&secrets[n as usize], &plan.endpoint_id(n)),
                now,
            )
        })
        .collect();
    put_all(store, &records).await
}

/// Writes the noisy endpoints exactly like the healthy ones (own secrets, same registry).
pub async fn register_noisy(
    store: &Store,
    sealer: &Sealer,
    noisy: &Noisy,
    addrs: &[SocketAddr],
) -> redis::RedisResult<()> {
    let now = webhookd::support::clock::now_ms();
    let records: Vec<EndpointRecord> = (0..noisy.endpoints)
        .map(|k| EndpointRecord {
            description: format!("webhookd-bench noisy {}", noisy.kind.name()),
            ..EndpointRecord::new(
                noisy.endpoint_id(k),
                noisy.tenant.clone(),
                format!(
                    "http://{}{}",
                    addrs[k as usize % addrs.len()],
                    Noisy::path(k)
                ),
                vec![NOISY_TYPE.to_string()],
                sealer.seal(&generate_secret(), &noisy.endpoint_id(k)),
                now,
            )
        })
        .collect();
    put_all(store, &records).await
}

async fn put_all(store: &Store, records: &[EndpointRecord]) -> redis::RedisResult<()> {
    for chunk in records.chunks(PUT_CONCURRENCY) {
        let puts = chunk.iter().map(|r| store.put(r));
        for r in futures_util::future::join_all(puts).await {
            r?;
        }
    }
    Ok(())
}

/// Removes the plan's endpoints, and the noisy ones (external mode: the rest of the prefix is
/// not ours).
pub async fn unregister(
    store: &Store,
    plan: &Plan,
    noisy: Option<&Noisy>,
) -> redis::RedisResult<()> {
    let mut ids: Vec<(String, String)> = (0..plan.endpoints)
        .map(|n| (plan.tenant(n as u64), plan.endpoint_id(n)))
        .collect();
    if let Some(noisy) = noisy {
        ids.extend((0..noisy.endpoints).map(|k| (noisy.tenant.clone(), noisy.endpoint_id(k))));
    }
    for chunk in ids.chunks(PUT_CONCURRENCY) {
        let dels = chunk.iter().map(|(t, id)| store.delete(t, id));
        for r in futures_util::future::join_all(dels).await {
            r?;
        }
    }
    Ok(())
}

/// Deletes every key under `prefix` (spawn mode: the whole prefix belongs to this run).
pub async fn purge_prefix(conn: &Conn, prefix: &str) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let pattern = format!("{}*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            removed += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A webhookd started by this tool; killed when dropped.
pub struct Spawned {
    child: Child,
    pub pid: u32,
    pub base_url: String,
    pub dir: PathBuf,
}

pub struct SpawnSpec<'a> {
    pub bin: &'a Path,
    pub redis_url: &'a str,
    pub cluster: bool,
    pub shards: u32,
    pub prefix: &'a str,
    pub stream_key: &'a str,
    pub encryption_key: &'a str,
    pub env: &'a [(String, String)],
}

impl Spawned {
    /// Writes a config (own prefix, loopback receivers allowed over http), starts
    /// `webhookd serve` and waits until `/readyz` answers 200.
    pub async fn start(spec: SpawnSpec<'_>) -> Result<Spawned, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir =
            std::env::temp_dir().join(format!("webhookd-bench-{}", spec.prefix.replace(':', "_")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("config.yaml");
        let yaml = format!(
            "redis:\n  url: \"{}\"\n  key_prefix: \"{}\"\n  mode: {}\n\
             stream:\n  key: \"{}\"\n  consumer: bench\n  shards: {}\n\
             http:\n  listen: \"127.0.0.1:{port}\"\n\
             delivery:\n  allowed_cidrs: [127.0.0.0/8]\n  allow_http: true\n\
             signing:\n  encryption_key: \"{}\"\n\
             shutdown_grace: 2s\n",
            spec.redis_url,
            spec.prefix,
            if spec.cluster {
                "cluster"
            } else {
                "standalone"
            },
            spec.stream_key,
            spec.shards,
            spec.encryption_key
        );
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.join("webhookd.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(spec.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        for (k, v) in spec.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
        let mut s = Spawned {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        loop {
            if get(&format!("{}/readyz", s.base_url))
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return Ok(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!(
                    "webhookd exited ({status}); see {}/webhookd.log",
                    s.dir.display()
                ));
            }
            if started.elapsed() > READY_WITHIN {
                return Err(format!(
                    "webhookd not ready within {READY_WITHIN:?}; see {}/webhookd.log",
                    s.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM first, so a profiler wrapped around webhookd (`scripts/callgrind-webhookd.sh`)
    /// writes its counts; SIGKILL if it has not ended within `STOP_WITHIN`.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped until `wait` below.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            let until = Instant::now() + STOP_WITHIN;
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// External mode: waits until webhookd's index holds our endpoints (the gauge lags by up to
/// 5 s), or, without a metrics URL, long enough for its 200 ms change-log polls.
pub(crate) async fn wait_for_index(args: &Args, baseline: Option<u64>) {
    let ours = args.endpoints + args.noisy_endpoints;
    let want = baseline.unwrap_or(0) + ours as u64;
    if let Some(url) = &args.metrics_url {
        let limit = Instant::now() + Duration::from_secs(30);
        while Instant::now() < limit {
            if observe::indexed_endpoints(url)
                .await
                .is_some_and(|n| n >= want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("webhookd-bench: the index gauge never reached {want}; publishing anyway");
    } else {
        let extra = Duration::from_millis(250) * (ours / 1000);
        tokio::time::sleep(Duration::from_millis(1500) + extra).await;
    }
}
