//! The Redis connection every part of webhookd shares: a multiplexed connection (reconnected
//! after I/O errors by redis-rs) that is also replaced when the server it reaches stops taking
//! writes: READONLY (a failover demoted it), MASTERDOWN, LOADING. The address (a Kubernetes
//! Service, a DNS name, a proxy) then leads a new connection to the new primary; an open one
//! would stay on the demoted server for good.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use backon::{ConstantBuilder, Retryable};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::SentinelClient;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use refusal::refuses_writes;

/// A replaced connection is not replaced again sooner than this: while a failover is still
/// under way the new one may reach a server that refuses writes too.
const RENEW_EVERY: Duration = Duration::from_secs(1);

mod access;
mod cluster;
mod refusal;
mod sentinel;
pub mod unordered;

pub use access::{Access, ConnectError};

/// A Redis connection; clones share it.
#[derive(Clone)]
pub struct Conn(Arc<Backend>);

enum Backend {
    /// One server: a standalone one, or the master Sentinel names.
    Node(Box<Shared>),
    /// A Redis Cluster (`cluster`).
    Cluster(cluster::Cluster),
}

struct Shared {
    source: Source,
    cfg: ConnectionManagerConfig,
    /// Read by every command, swapped only by a renewal.
    current: ArcSwap<Current>,
    renewal: Mutex<Renewal>,
}

/// Where connections come from: one address, or whichever server Sentinel names the master.
enum Source {
    Direct(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Source {
    async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Source::Direct(client) => Ok(client.clone()),
            Source::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }

    /// Whether a lost connection may mean another server leads now (Sentinel names it).
    fn follows_failover(&self) -> bool {
        matches!(self, Source::Sentinel(_))
    }
}

struct Current {
    manager: ConnectionManager,
    generation: u64,
    /// The server it reaches (compared with the one Sentinel names).
    addr: redis::ConnectionAddr,
}

#[derive(Default)]
struct Renewal {
    running: bool,
    last: Option<Instant>,
}

/// Connects as the `redis` section of the config says.
pub async fn connect_config(
    redis: &crate::config::RedisConfig,
    response_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let access = Access::from_config(redis)?;
    let urls = || -> Vec<String> { redis.url.split(',').map(|u| u.trim().to_string()).collect() };
    match redis.mode.as_str() {
        "sentinel" => {
            connect_sentinel(&urls(), &redis.sentinel_master, &access, response_timeout).await
        }
        "cluster" => connect_cluster(&urls(), &access, response_timeout).await,
        _ => connect_with(&redis.url, &access, response_timeout).await,
    }
}

/// Connects to a plain `redis://` or `rediss://` URL with what it carries.
pub async fn connect(url: &str, response_timeout: Duration) -> Result<Conn, ConnectError> {
    connect_with(url, &Access::default(), response_timeout).await
}

/// Connects, retrying briefly so a Redis that is still starting is waited for, and
/// failing with one clear line when it never answers.
pub async fn connect_with(
    url: &str,
    access: &Access,
    response_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let shown = || crate::support::redact::url(url);
    let bad_url = |source| ConnectError::Url {
        url: shown(),
        source,
    };
    let mut info = url.into_connection_info().map_err(bad_url)?;
    if access.username.is_some() || access.password.is_some() {
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &access.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &access.password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
    }
    let client = match &access.ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(bad_url)?;
    start(Source::Direct(client), response_timeout, &shown()).await
}

/// Connects to the master that the sentinels at `sentinel_urls` name `master` (see
/// `sentinel::client`), and to the new one after a failover.
pub async fn connect_sentinel(
    sentinel_urls: &[String],
    master: &str,
    access: &Access,
    response_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let shown = crate::support::redact::url(&sentinel_urls.join(","));
    let sentinel =
        sentinel::client(sentinel_urls, master, access).map_err(|source| ConnectError::Url {
            url: shown.clone(),
            source,
        })?;
    let source = Source::Sentinel(tokio::sync::Mutex::new(sentinel));
    start(
        source,
        response_timeout,
        &format!("{shown} (sentinel master `{master}`)"),
    )
    .await
}

/// How often the sentinels are asked which server is the master.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// In sentinel mode, follows the master the sentinels name, not only the server's refusals:
/// after a failover the old master takes writes until the sentinels demote it (about ten
/// seconds: they wait before reconfiguring a server that still says it is a master), and what
/// is written there meanwhile is lost with its data (a probe's endpoint, created through the
/// API in that window, was gone). Runs while `conn` or a clone lives.
fn follow_sentinels(conn: &Conn) {
    let weak = Arc::downgrade(&conn.0);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let Some(backend) = weak.upgrade() else {
                return;
            };
            let Backend::Node(node) = &*backend else {
                return;
            };
            // Unreachable sentinels say nothing new: the refusals still lead, as before.
            let Ok(client) = node.source.client().await else {
                continue;
            };
            let named = client.get_connection_info().addr();
            let current = node.current.load();
            if *named != current.addr {
                let why = format!("the sentinels name another master ({named})");
                Conn(backend.clone()).renew(node, current.generation, &why);
            }
        }
    });
}

/// Connecting is tried three times, half a second apart: a Redis still starting is waited for.
fn connect_tries() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::from_millis(500))
        .with_max_times(2)
}

/// Connects to the Redis Cluster the seed nodes `urls` belong to.
pub async fn connect_cluster(
    urls: &[String],
    access: &Access,
    response_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let shown = crate::support::redact::url(&urls.join(","));
    let cluster = (|| cluster::connect(urls, access, response_timeout))
        .retry(connect_tries())
        .await
        .map_err(|source| ConnectError::Unreachable {
            url: format!("{shown} (cluster)"),
            source,
        })?;
    Ok(Conn(Arc::new(Backend::Cluster(cluster))))
}

async fn start(
    source: Source,
    response_timeout: Duration,
    shown: &str,
) -> Result<Conn, ConnectError> {
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let (manager, addr) = (|| async {
        let client = source.client().await?;
        let addr = client.get_connection_info().addr().clone();
        let manager = client
            .get_connection_manager_with_config(cfg.clone())
            .await?;
        Ok::<_, RedisError>((manager, addr))
    })
    .retry(connect_tries())
    .await
    .map_err(|source| ConnectError::Unreachable {
        url: shown.to_string(),
        source,
    })?;
    let follows = source.follows_failover();
    let conn = Conn(Arc::new(Backend::Node(Box::new(Shared {
        source,
        cfg,
        current: ArcSwap::from_pointee(Current {
            manager,
            generation: 0,
            addr,
        }),
        renewal: Mutex::default(),
    }))));
    if follows {
        follow_sentinels(&conn);
    }
    Ok(conn)
}

impl Shared {
    /// The connection to use now, and its generation.
    fn current(&self) -> (ConnectionManager, u64) {
        let cur = self.current.load();
        (cur.manager.clone(), cur.generation)
    }
}

impl Conn {
    /// After an error from the connection of `generation`: replace it, in the background, if
    /// the server refused writes.
    fn after_error(&self, node: &Shared, generation: u64, e: &RedisError) {
        let lost = node.source.follows_failover()
            && (e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error());
        if !(refuses_writes(e) || lost) {
            return;
        }
        self.renew(node, generation, &format!("redis refuses writes ({e})"));
    }

    /// Replaces the connection of `generation` (unless it was already, or was less than
    /// `RENEW_EVERY` ago) with one to the server the source names now, in the background.
    fn renew(&self, node: &Shared, generation: u64, why: &str) {
        if node.current.load().generation != generation {
            return;
        }
        {
            let mut renewal = node.renewal.lock().expect("not poisoned");
            if renewal.running || renewal.last.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
                return;
            }
            renewal.running = true;
        }
        tracing::warn!("{why}; connecting again");
        let this = self.clone();
        tokio::spawn(async move {
            let Backend::Node(shared) = &*this.0 else {
                return;
            };
            let renewed = async {
                let client = shared.source.client().await?;
                let addr = client.get_connection_info().addr().clone();
                let manager = client
                    .get_connection_manager_with_config(shared.cfg.clone())
                    .await?;
                Ok::<_, RedisError>((manager, addr))
            };
            match renewed.await {
                Ok((manager, addr)) => shared.current.store(Arc::new(Current {
                    manager,
                    generation: generation + 1,
                    addr,
                })),
                Err(e) => tracing::warn!(error = %e, "connecting to redis again failed"),
            }
            let mut renewal = shared.renewal.lock().expect("not poisoned");
            *renewal = Renewal {
                running: false,
                last: Some(Instant::now()),
            };
        });
    }

    /// `after_error` for the first error among a reply's values.
    fn after_error_values(&self, node: &Shared, generation: u64, values: &[Value]) {
        let refused = values.iter().find_map(|v| match v {
            Value::ServerError(e) => Some(RedisError::from(e.clone())),
            _ => None,
        });
        if let Some(e) = refused {
            self.after_error(node, generation, &e);
        }
    }

    /// Whether this is a Redis Cluster, where a script's keys must share a slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(&*self.0, Backend::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let node = match &*self.0 {
                Backend::Node(node) => node,
                Backend::Cluster(c) => return c.clone().req_packed_command(cmd).await,
            };
            let (mut manager, generation) = node.current();
            let got = manager.req_packed_command(cmd).await;
            match &got {
                Err(e) => self.after_error(node, generation, e),
                // A command's own error comes back as a value (the caller's `query_async`
                // turns it into an error): READONLY from a demoted server among them.
                Ok(v) => self.after_error_values(node, generation, std::slice::from_ref(v)),
            }
            got
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let node = match &*self.0 {
                Backend::Node(node) => node,
                Backend::Cluster(c) => {
                    return c.clone().req_packed_commands(cmd, offset, count).await
                }
            };
            let (mut manager, generation) = node.current();
            let got = manager.req_packed_commands(cmd, offset, count).await;
            match &got {
                Err(e) => self.after_error(node, generation, e),
                Ok(values) => self.after_error_values(node, generation, values),
            }
            got
        })
    }

    fn get_db(&self) -> i64 {
        match &*self.0 {
            Backend::Node(node) => node.current.load().manager.get_db(),
            Backend::Cluster(_) => 0,
        }
    }
}
