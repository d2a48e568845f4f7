//! The one way webhookd makes HTTPS (or plain HTTP) connections: rustls with ring and the
//! webpki roots, HTTP/1. The delivery client and the trace exporter both build on it.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// HTTPS (ring, the webpki roots) or plain HTTP over `http`, HTTP/1: how webhookd reaches
/// receivers and the trace collector.
pub(crate) fn tls_over<R>(http: HttpConnector<R>) -> HttpsConnector<HttpConnector<R>> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// The innermost cause of a client error, which says what actually went wrong.
pub(crate) fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
