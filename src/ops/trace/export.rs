//! The one background task that posts spans to the collector: batched, retried briefly, and
//! dropped (and counted) when the collector cannot take them, so a slow or absent collector
//! costs deliveries nothing.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::ops::trace::encode::encode;
use crate::ops::trace::span::SpanData;
use crate::support::https::{innermost, tls_over};
use crate::support::shutdown::Shutdown;

/// Spans waiting for the exporter; past this, new ones are dropped rather than waited for.
pub(crate) const QUEUE: usize = 4096;
/// Spans per request at most.
const BATCH: usize = 512;
/// The longest a finished span waits for its batch to fill.
const EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Waits before each retry of a batch; then it is dropped. Short: spans queue up meanwhile.
const RETRY_WAITS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

type OtlpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How the exporter's work shows in the metrics.
#[derive(Clone)]
pub(crate) struct ExportCounters {
    pub(crate) exported: Counter,
    pub(crate) failed: Counter,
}

pub(crate) struct Exporter {
    spans: mpsc::Receiver<SpanData>,
    url: Uri,
    client: OtlpClient,
    counters: ExportCounters,
}

enum Sent {
    Done,
    /// Worth another try (no answer, 429, 502, 503, 504: the OTLP/HTTP retryable answers).
    Retry(String),
    Refused(String),
}

impl Exporter {
    pub(crate) fn new(
        spans: mpsc::Receiver<SpanData>,
        url: Uri,
        counters: ExportCounters,
    ) -> Exporter {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // The collector is the operator's own (often in-cluster) service: not a customer URL,
        // so the SSRF guard of deliveries does not apply.
        Exporter {
            spans,
            url,
            client: Client::builder(TokioExecutor::new()).build(tls_over(http)),
            counters,
        }
    }

    /// Posts batches until `finish`, then what is still queued, once.
    pub(crate) async fn run(mut self, finish: Shutdown) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = self.spans.recv() => match got {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            self.flush(&mut batch, &RETRY_WAITS).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.flush(&mut batch, &RETRY_WAITS).await;
                    }
                }
                _ = finish.wait() => break,
            }
        }
        while let Ok(span) = self.spans.try_recv() {
            batch.push(span);
            if batch.len() >= BATCH {
                self.flush(&mut batch, &[]).await;
            }
        }
        if !batch.is_empty() {
            self.flush(&mut batch, &[]).await;
        }
    }

    /// Sends a batch, retrying after each of `waits`; empties it either way.
    async fn flush(&self, batch: &mut Vec<SpanData>, waits: &[Duration]) {
        let body = Bytes::from(encode(batch));
        let count = batch.len() as u64;
        batch.clear();
        let mut waits = waits.iter();
        loop {
            let why = match self.send(body.clone()).await {
                Sent::Done => {
                    self.counters.exported.inc_by(count);
                    return;
                }
                Sent::Retry(why) => match waits.next() {
                    Some(wait) => {
                        tokio::time::sleep(*wait).await;
                        continue;
                    }
                    None => why,
                },
                Sent::Refused(why) => why,
            };
            self.counters.failed.inc_by(count);
            tracing::warn!(spans = count, url = %self.url, error = %why, "dropping spans the OTLP collector did not take");
            return;
        }
    }

    async fn send(&self, body: Bytes) -> Sent {
        let req = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(USER_AGENT, concat!("webhookd/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .expect("a valid URL and headers");
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Err(_) => Sent::Retry(format!("no answer within {REQUEST_TIMEOUT:?}")),
            Ok(Err(e)) => Sent::Retry(innermost(&e)),
            Ok(Ok(resp)) => match resp.status().as_u16() {
                200..=299 => Sent::Done,
                s @ (429 | 502 | 503 | 504) => Sent::Retry(format!("HTTP {s}")),
                s => Sent::Refused(format!("HTTP {s}")),
            },
        }
    }
}

#[cfg(test)]
impl Exporter {
    /// A span waiting in its queue, if any.
    pub(crate) fn try_take(&mut self) -> Option<SpanData> {
        self.spans.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::trace::span::{fan_out, FanOutFacts, Started};

    fn span() -> SpanData {
        fan_out(
            Started::under(None, false),
            FanOutFacts {
                event_id: "e",
                event_type: "a.b",
                tenant: "t",
                endpoints: 0,
                entry: "1-0",
            },
        )
    }

    #[tokio::test]
    async fn spans_nobody_takes_are_dropped_and_counted_quickly() {
        // A port nothing listens on: the collector is down.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = ExportCounters {
            exported: Counter::default(),
            failed: Counter::default(),
        };
        let url = format!("http://127.0.0.1:{port}/v1/traces")
            .parse()
            .unwrap();
        let exporter = Exporter::new(rx, url, counters.clone());
        let finish = Shutdown::new();
        let task = tokio::spawn(exporter.run(finish.clone()));
        for _ in 0..3 {
            tx.try_send(span()).unwrap();
        }
        let start = std::time::Instant::now();
        while counters.failed.get() < 3 {
            assert!(start.elapsed() < Duration::from_secs(10), "gave up slowly");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(counters.exported.get(), 0);
        finish.begin();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the exporter ends when told")
            .unwrap();
    }
}
