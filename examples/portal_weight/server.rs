//! The webhookd under measurement: started here with a config of its own, filled through its
//! API, and its Redis keys removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::fetch::Http;

/// The demo key of `config.yaml`: secrets are sealed as in production, with a key nobody uses.
const ENCRYPTION_KEY: &str = "d2ViaG9va2QtZGVtby1rZXktbm90LWZvci1wcm9kISE=";
const READY_WITHIN: Duration = Duration::from_secs(30);
const COOKIE: &str = "webhookd_portal";

/// A running `webhookd serve`, killed when dropped.
pub struct Webhookd {
    child: Child,
    pub base_url: String,
    pub admin_token: String,
    dir: tempfile::TempDir,
}

impl Webhookd {
    /// Writes the config, starts the binary and waits until `/readyz` answers 200.
    pub async fn start(bin: &Path, redis_url: &str, prefix: &str) -> Result<Webhookd, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let admin_token = format!("bench-admin-{:032x}", rand::random::<u128>());
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let config = dir.path().join("config.yaml");
        let yaml = format!(
            "redis:\n  url: \"{redis_url}\"\n  key_prefix: \"{prefix}\"\n\
             stream:\n  consumer: portal-bench\n\
             http:\n  listen: \"127.0.0.1:{port}\"\n  admin_tokens: [\"{admin_token}\"]\n\
             signing:\n  encryption_key: \"{ENCRYPTION_KEY}\"\n\
             shutdown_grace: 2s\n"
        );
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.path().join("webhookd.log"))
            .map_err(|e| format!("webhookd.log: {e}"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut w = Webhookd {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            admin_token,
            dir,
        };
        let http = Http::new();
        let ready = format!("{}/readyz", w.base_url);
        let started = Instant::now();
        loop {
            if http.get(&ready, &[]).await.is_ok_and(|a| a.status == 200) {
                return Ok(w);
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                return Err(format!("webhookd exited ({status}): {}", w.log_text()));
            }
            if started.elapsed() > READY_WITHIN {
                return Err(format!(
                    "webhookd not ready within {READY_WITHIN:?}: {}",
                    w.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("webhookd.log")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.admin_token)
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates endpoints `https://example.com/hook/{i}` of `tenant`, `concurrency` at a time.
pub async fn create_endpoints(
    http: &Http,
    w: &Webhookd,
    tenant: &str,
    n: usize,
    concurrency: usize,
) -> Result<(), String> {
    let url = format!("{}/v1/tenants/{tenant}/endpoints", w.base_url);
    let bearer = w.bearer();
    let mut posts = futures_util::stream::iter(0..n)
        .map(|i| {
            let body = json!({
                "url": format!("https://example.com/hook/{i}"),
                "filters": ["outbound.*"],
                "description": format!("Order notifications, shop {i}"),
            });
            let (url, bearer) = (&url, &bearer);
            async move {
                let a = http
                    .post(url, &[("authorization", bearer)], body.to_string())
                    .await?;
                if a.status == 201 {
                    Ok(())
                } else {
                    Err(format!(
                        "creating endpoint {i}: {} {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ))
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    let (started, mut created) = (Instant::now(), 0);
    while let Some(done) = posts.next().await {
        done?;
        created += 1;
        if created % 100 == 0 {
            eprintln!(
                "  {created} endpoints created after {:.1?}",
                started.elapsed()
            );
        }
    }
    Ok(())
}

/// A new one-time portal link of `tenant`: its path and query (`/portal/login?token=…`).
pub async fn mint_link(http: &Http, w: &Webhookd, tenant: &str) -> Result<String, String> {
    let a = http
        .post(
            &format!("{}/v1/tenants/{tenant}/portal-sessions", w.base_url),
            &[("authorization", &w.bearer())],
            "{}".into(),
        )
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
    match (a.status, body["url"].as_str()) {
        (201, Some(url)) => Ok(url.to_string()),
        _ => Err(format!("minting a portal link: {} {body}", a.status)),
    }
}

/// Exchanges a new link for a session, as a browser would: `webhookd_portal=<id>`.
pub async fn session_cookie(http: &Http, w: &Webhookd, tenant: &str) -> Result<String, String> {
    let link = mint_link(http, w, tenant).await?;
    let a = http.get(&format!("{}{link}", w.base_url), &[]).await?;
    a.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{COOKIE}=")))
        .map(str::to_string)
        .ok_or_else(|| format!("the link set no session cookie (HTTP {})", a.status))
}

/// Deletes every key under `prefix` (the whole prefix belongs to this run); how many.
pub fn purge(redis_url: &str, prefix: &str) -> u64 {
    let run = || -> redis::RedisResult<u64> {
        let mut conn = redis::Client::open(redis_url)?.get_connection()?;
        let pattern = format!("{prefix}*");
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(5000)
                .query(&mut conn)?;
            if !keys.is_empty() {
                removed += redis::cmd("UNLINK").arg(&keys).query::<u64>(&mut conn)?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    };
    run().unwrap_or_else(|e| {
        eprintln!("removing the keys under {prefix} failed: {e}");
        0
    })
}
