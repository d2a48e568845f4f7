//! The HTTP listeners (API, portal, metrics): axum's router served by hyper, with the bounds
//! `axum::serve` does not set. Without them anyone who could reach the port, with no token,
//! stopped every delivery: 20,000 idle connections took every file descriptor the process
//! had, so no attempt could open one, and a connection sending a header byte a second was
//! kept for ever.
//!
//! - At most `MAX_CONNECTIONS` connections per listener; past that, new ones wait in the
//!   kernel's backlog (costing this process nothing) until one closes.
//! - A request's head must arrive within `HEAD_TIMEOUT`, counted from the connection's start
//!   or the end of its previous response: an idle keep-alive connection is closed then too.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::support::shutdown::Shutdown;

/// Connections one listener serves at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// How long a request's head may take, and an idle connection may wait for the next one.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop`, then lets the requests being answered finish.
pub(crate) async fn serve_http(listener: TcpListener, router: Router, stop: Shutdown) {
    let room = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped when serving stops: each connection then shuts down gracefully.
    let (stopping, stopped) = watch::channel(());
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = room.clone().acquire_owned() => p.expect("never closed"),
            _ = stop.wait() => break,
        };
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let _permit = permit;
            // HTTP/1.1 only: an HTTP/2 connection's first bytes would be awaited without a
            // bound (the version is told from them) before any of this applied.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(stopping);
    connections.close();
    connections.wait().await;
}
