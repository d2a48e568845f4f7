//! Liveness and readiness state, and the task that keeps "Redis reachable" current.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::db::conn::Conn;
use crate::support::shutdown::Shutdown;

#[derive(Default)]
pub(crate) struct Health {
    redis: AtomicBool,
    consumer: AtomicBool,
    /// Parts of webhookd the Redis user's ACL stops (a command it may not run): a replica
    /// that cannot check duplicates or take retries is not ready, so a rollout with a wrong
    /// ACL halts instead of stalling quietly.
    denied: Mutex<BTreeSet<&'static str>>,
    /// Told when Redis takes writes again after it did not: loops waiting out a backoff of
    /// up to 5 s go on at once instead (a restarted Redis was read from ~10 s late).
    back: tokio::sync::Notify,
}

/// Whether Redis refused a command (or a script's command) for the user's ACL.
pub(crate) fn is_denied(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM") || {
        let text = e.to_string();
        text.contains("NOPERM") || text.contains("can't run this command")
    }
}

impl Health {
    pub(crate) fn set_redis(&self, up: bool) {
        let was = self.redis.swap(up, Ordering::Relaxed);
        if up && !was {
            self.back.notify_waiters();
        }
    }

    /// Waits until Redis takes writes again after a time it did not.
    pub(crate) async fn redis_back(&self) {
        self.back.notified().await;
    }
    pub(crate) fn set_consumer(&self, running: bool) {
        self.consumer.store(running, Ordering::Relaxed);
    }
    pub(crate) fn redis_up(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }
    pub(crate) fn consumer_running(&self) -> bool {
        self.consumer.load(Ordering::Relaxed)
    }
    pub(crate) fn ready(&self) -> bool {
        self.redis_up() && self.consumer_running() && self.denied().is_empty()
    }

    /// The parts a missing Redis permission stops, by name.
    pub(crate) fn denied(&self) -> Vec<&'static str> {
        self.denied
            .lock()
            .expect("health")
            .iter()
            .copied()
            .collect()
    }

    /// Notes how a Redis call of `part` went: refused for the ACL, the part is stopped (and
    /// said so once, as an error); a success frees it again. Other errors change nothing here.
    pub(crate) fn note<T>(&self, part: &'static str, result: &redis::RedisResult<T>) {
        let mut denied = self.denied.lock().expect("health");
        match result {
            Err(e) if is_denied(e) => {
                if denied.insert(part) {
                    tracing::error!(
                        part,
                        error = %e,
                        "the Redis user may not run a command this needs; not ready until it may (README's ACL line lists them all)"
                    );
                }
            }
            Ok(_) => {
                if denied.remove(part) {
                    tracing::info!(part, "the Redis user may run what this needs again");
                }
            }
            Err(_) => {}
        }
    }
}

/// Writes `probe_key` every second; readiness follows the answer. A write, not a PING: a
/// server that answers but refuses writes (READONLY after a failover, LOADING, MASTERDOWN)
/// is not ready, and the refusal makes the connection reconnect.
pub(crate) async fn run_pinger(
    health: std::sync::Arc<Health>,
    conn: Conn,
    probe_key: String,
    stop: Shutdown,
) {
    loop {
        let probe = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("SET")
                .arg(&probe_key)
                .arg(crate::support::clock::now_ms())
                .arg("PX")
                .arg(10_000)
                .query_async::<()>(&mut conn.clone()),
        )
        .await;
        let up = matches!(probe, Ok(Ok(())));
        if up != health.redis_up() {
            match probe {
                Ok(Ok(())) => tracing::info!("redis takes writes"),
                Ok(Err(e)) => tracing::warn!(error = %e, "redis unavailable for writes"),
                Err(_) => tracing::warn!("redis unavailable for writes: no answer within 1s"),
            }
        }
        health.set_redis(up);
        if !stop.sleep(Duration::from_secs(1)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_permission_makes_it_not_ready_until_a_success() {
        let h = Health::default();
        h.set_redis(true);
        h.set_consumer(true);
        assert!(h.ready());
        let refused: redis::RedisResult<()> = Err(redis::RedisError::from((
            redis::ErrorKind::Extension,
            "script",
            "ERR The user executing the script can't run this command or subcommand".to_string(),
        )));
        h.note("duplicate check", &refused);
        assert!(!h.ready());
        assert_eq!(h.denied(), vec!["duplicate check"]);
        let other: redis::RedisResult<()> = Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "broken pipe",
        )));
        h.note("duplicate check", &other);
        assert!(
            !h.ready(),
            "another error says nothing about the permission"
        );
        h.note("duplicate check", &Ok(()));
        assert!(h.ready());
    }
}
