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
//! - An answer must be taken within `WRITE_TIMEOUT` of a write that could not go out: a client
//!   that asked and then stopped reading held its connection for ever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::support::shutdown::Shutdown;

/// Connections one listener serves at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// How long a request's head may take, and an idle connection may wait for the next one.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may wait for the client to read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
                .serve_connection(TokioIo::new(Timed::new(stream)), service)
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

/// A connection whose writes fail once one has waited `WRITE_TIMEOUT` for the client to read.
struct Timed {
    io: TcpStream,
    /// Since when a write has been waiting.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Timed {
    fn new(io: TcpStream) -> Timed {
        Timed { io, stalled: None }
    }

    /// `written` if a write went out; else whether the wait has lasted too long.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.timed(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.timed(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        self.timed(cx, flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
