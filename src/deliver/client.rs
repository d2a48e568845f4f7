//! The one pooled HTTP client. Its resolver applies the SSRF guard to every resolved
//! address, so a hostname that points inside the network is refused at connect time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::secure::ssrf::Guard;
use crate::support::https::tls_over;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// How long an idle pooled connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// DNS through the system resolver, keeping only addresses the guard allows.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    guard: Arc<Guard>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(kind) => {
                        refused = Some(kind);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.map_or("no address".to_string(), |k| format!("a {k} address"));
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to {why}, which is not allowed"),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

pub(crate) fn build(guard: Guard, connect_timeout: Duration, pool_per_host: usize) -> HttpClient {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver {
        guard: Arc::new(guard),
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(pool_per_host)
        .build(tls_over(http))
}
