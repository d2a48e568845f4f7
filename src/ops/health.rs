//! Liveness and readiness state, and the task that keeps "Redis reachable" current.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::db::conn::Conn;
use crate::support::shutdown::Shutdown;

#[derive(Default)]
pub(crate) struct Health {
    redis: AtomicBool,
    consumer: AtomicBool,
}

impl Health {
    pub(crate) fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
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
        self.redis_up() && self.consumer_running()
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
