//! Moves due deliveries from the retry queue back into the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::dispatch::{Delivery, Dispatcher};
use crate::retry::RetryQueue;

/// Deliveries taken per script call.
const TAKE: usize = 500;
/// Pause when nothing was due.
const IDLE: Duration = Duration::from_millis(100);

pub async fn run(
    queue: RetryQueue,
    dispatcher: Arc<Dispatcher>,
    outstanding: Arc<Semaphore>,
    lease: Duration,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let room = outstanding.available_permits().min(TAKE);
        if room == 0 {
            pause(&stop, Duration::from_millis(10)).await;
            continue;
        }
        let now = now_ms();
        let jobs = match queue
            .take_due(now, room, now + lease.as_millis() as i64)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "taking due retries failed");
                pause(&stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        let full = jobs.len() == room;
        for job in jobs {
            let permit = outstanding
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                // Whatever happens, the lease makes an unrecorded delivery due again.
                dispatcher.deliver(Delivery::from_job(job)).await;
                drop(permit);
            });
        }
        if !full {
            pause(&stop, IDLE).await;
        }
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}
