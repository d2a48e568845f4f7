//! The Redis connection every part of webhookd shares: a multiplexed connection (reconnected
//! after I/O errors by redis-rs) that is also replaced when the server it reaches stops taking
//! writes: READONLY (a failover demoted it), MASTERDOWN, LOADING. The address (a Kubernetes
//! Service, a DNS name, a proxy) then leads a new connection to the new primary; an open one
//! would stay on the demoted server for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

/// A replaced connection is not replaced again sooner than this: while a failover is still
/// under way the new one may reach a server that refuses writes too.
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// A Redis connection; clones share it.
#[derive(Clone)]
pub struct Conn(Arc<Shared>);

struct Shared {
    client: redis::Client,
    cfg: ConnectionManagerConfig,
    current: RwLock<Current>,
    renewing: AtomicBool,
    last_renewed: Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct Current {
    manager: ConnectionManager,
    generation: u64,
}

/// Connects, retrying briefly so a Redis that is still starting is waited for, and
/// failing with one clear line when it never answers.
pub async fn connect(url: &str, response_timeout: Duration) -> Result<Conn, String> {
    let client = redis::Client::open(url)
        .map_err(|e| format!("redis.url `{}` is invalid: {e}", crate::redact::url(url)))?;
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match client.get_connection_manager_with_config(cfg.clone()).await {
            Ok(manager) => {
                return Ok(Conn(Arc::new(Shared {
                    client,
                    cfg,
                    current: RwLock::new(Current {
                        manager,
                        generation: 0,
                    }),
                    renewing: AtomicBool::new(false),
                    last_renewed: Mutex::new(None),
                })))
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "cannot connect to Redis at {}: {last}",
        crate::redact::url(url)
    ))
}

/// Whether `e` says the server cannot take writes now (so another server may).
pub fn refuses_writes(e: &RedisError) -> bool {
    let unwritable = |k: ServerErrorKind| {
        matches!(
            k,
            ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading
        )
    };
    if let ErrorKind::Server(k) = e.kind() {
        if unwritable(k) {
            return true;
        }
    }
    // A transaction or pipeline carries its commands' errors inside.
    e.clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, s)| s.kind().is_some_and(unwritable)))
}

impl Conn {
    fn current(&self) -> Current {
        self.0.current.read().expect("not poisoned").clone()
    }

    /// After an error from the connection of `generation`: replace it, in the background, if
    /// the server refused writes.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if !refuses_writes(e) {
            return;
        }
        if self.current().generation != generation {
            return;
        }
        {
            let last = self.0.last_renewed.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
                return;
            }
        }
        if self.0.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(error = %e, "redis refuses writes; connecting again");
        let this = self.clone();
        tokio::spawn(async move {
            let shared = &this.0;
            let made = shared
                .client
                .get_connection_manager_with_config(shared.cfg.clone())
                .await;
            match made {
                Ok(manager) => {
                    let mut cur = shared.current.write().expect("not poisoned");
                    *cur = Current {
                        manager,
                        generation: cur.generation + 1,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "connecting to redis again failed"),
            }
            *shared.last_renewed.lock().expect("not poisoned") = Some(Instant::now());
            shared.renewing.store(false, Ordering::Release);
        });
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let Current {
                mut manager,
                generation,
            } = self.current();
            let got = manager.req_packed_command(cmd).await;
            if let Err(e) = &got {
                self.after_error(generation, e);
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
            let Current {
                mut manager,
                generation,
            } = self.current();
            let got = manager.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &got {
                self.after_error(generation, e);
            }
            got
        })
    }

    fn get_db(&self) -> i64 {
        self.current().manager.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::refuses_writes;
    use redis::{ErrorKind, RedisError};

    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[test]
    fn only_servers_that_refuse_writes_call_for_a_new_connection() {
        for refusal in [
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down",
            "LOADING Redis is loading the dataset in memory",
        ] {
            assert!(refuses_writes(&server_error(refusal)), "{refusal}");
        }
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let client = RedisError::from((ErrorKind::Client, "no"));
        let wrong_type = server_error("WRONGTYPE Operation against a key");
        assert!(!refuses_writes(&io) && !refuses_writes(&client) && !refuses_writes(&wrong_type));
    }
}
