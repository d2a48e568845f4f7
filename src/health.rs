//! Liveness and readiness state, and the task that keeps "Redis reachable" current.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Health {
    redis: AtomicBool,
    consumer: AtomicBool,
}

impl Health {
    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
    }
    pub fn set_consumer(&self, running: bool) {
        self.consumer.store(running, Ordering::Relaxed);
    }
    pub fn redis_up(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }
    pub fn consumer_running(&self) -> bool {
        self.consumer.load(Ordering::Relaxed)
    }
    pub fn ready(&self) -> bool {
        self.redis_up() && self.consumer_running()
    }
}

/// Pings Redis every second; readiness follows the answer.
pub async fn run_pinger(
    health: std::sync::Arc<Health>,
    conn: ConnectionManager,
    stop: CancellationToken,
) {
    loop {
        let ping = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn.clone()),
        )
        .await;
        let up = matches!(ping, Ok(Ok(_)));
        if up != health.redis_up() {
            if up {
                tracing::info!("redis reachable");
            } else {
                tracing::warn!("redis unreachable");
            }
        }
        health.set_redis(up);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
