//! Draining on SIGTERM: stop reading, let running deliveries finish within the grace, then
//! acknowledge what finished. Whatever does not make it stays pending, never lost.

use std::time::Duration;

use super::run::Running;
use super::signals::Signals;
use crate::config::Config;

/// The part of `shutdown_grace` (at most a quarter of it) kept for acknowledging what finished.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

pub(super) async fn drain(running: Running, config: &Config, signals: &mut Signals) {
    // Everything below fits in the grace: deliveries get most of it, acknowledging what
    // finished gets the rest.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace.get();
    let flush = (config.shutdown_grace.get() / 4).min(SHUTDOWN_FLUSH);
    tracing::info!(grace = %config.shutdown_grace, "shutting down: no new reads; finishing in-flight deliveries");
    running.stop.begin();
    let (consumers, rest): (Vec<_>, Vec<_>) = running
        .ingest
        .into_iter()
        .map(|t| (t.consumer, (t.heartbeat, t.acker)))
        .unzip();
    for consumer in consumers {
        let _ = tokio::time::timeout_at(deadline, consumer).await;
    }
    let (drained, hurried) = tokio::select! {
        r = tokio::time::timeout_at(deadline - flush, running.dispatcher.drained()) => (r.is_ok(), false),
        _ = signals.next() => (false, true),
    };
    if drained {
        tracing::info!("in-flight deliveries finished");
    } else if hurried {
        tracing::warn!(
            "second signal: not waiting for in-flight deliveries; they stay pending and will be redelivered"
        );
    } else {
        tracing::warn!(
            "shutdown grace over: unfinished deliveries stay pending and will be redelivered"
        );
    }
    // After a second signal, what is left (acknowledging what finished, the writers' last
    // records) gets the flush time, not the rest of the grace: the ackers would otherwise wait
    // out the grace for the tickets of deliveries still hanging.
    let deadline = if hurried {
        deadline.min(tokio::time::Instant::now() + flush)
    } else {
        deadline
    };
    running.heartbeat_stop.begin();
    let (heartbeats, ackers): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
    for heartbeat in heartbeats {
        let _ = tokio::time::timeout_at(deadline, heartbeat).await;
    }
    drop(running.dispatcher);
    // Acknowledge what finished; whatever does not make it stays pending, never lost.
    for acker in ackers {
        let _ = tokio::time::timeout_at(deadline, acker).await;
    }
    running.park_task.abort();
    running.writer.end_by(deadline).await;
    running.notices.end_by(deadline).await;
    if let Some(exporter) = running.exporter {
        exporter.end_by(deadline).await;
    }
    running.http_stop.begin();
    for t in running.tasks {
        t.abort();
    }
    for s in running.servers {
        let _ = tokio::time::timeout_at(deadline, s).await;
    }
    drop(running.hot);
}
