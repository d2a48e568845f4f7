//! One HTTP attempt: build the signed request, send it, keep an excerpt of the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use crate::deliver::client::HttpClient;
use crate::ops::TraceParent;
use crate::registry::model::Endpoint;
use crate::secure::sign::signature_header;
use crate::secure::ssrf::{literal_ip, Guard};

/// Bytes of response body kept for the attempt log.
pub(crate) const RESPONSE_EXCERPT: usize = 4096;

pub(crate) const USER_AGENT_VALUE: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));

// Named once: a name given as text is parsed, and a non-standard one copied, per request.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// An attempt succeeds on a 2xx answer.
pub(crate) fn is_success(status: Option<u16>) -> bool {
    matches!(status, Some(s) if (200..300).contains(&s))
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) latency: Duration,
    pub(crate) response: String,
    pub(crate) retry_after: Option<Duration>,
}

impl Outcome {
    pub(crate) fn succeeded(&self) -> bool {
        is_success(self.status)
    }

    /// What went wrong, in a line: the error, or the status a failed answer carried.
    pub(crate) fn failure_text(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!("HTTP {s}"),
            (None, None) => "no answer".into(),
        }
    }

    fn failed(error: String, started: Instant) -> Outcome {
        Outcome {
            status: None,
            error: Some(error),
            latency: started.elapsed(),
            response: String::new(),
            retry_after: None,
        }
    }
}

pub(crate) struct AttemptSpec<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) msg_id: &'a str,
    pub(crate) body: &'a Bytes,
    pub(crate) timeout: Duration,
    pub(crate) now_ms: i64,
    /// The attempt's span (traces on), sent as `traceparent` so the receiver can continue
    /// the trace, unless the endpoint sets that header itself.
    pub(crate) traceparent: Option<TraceParent>,
}

pub(crate) async fn send(client: &HttpClient, guard: &Guard, spec: AttemptSpec<'_>) -> Outcome {
    let started = Instant::now();
    let req = match request(guard, &spec) {
        Ok(req) => req,
        Err(refused) => return Outcome::failed(refused, started),
    };
    match exchange(client, req, spec.timeout).await {
        Ok((status, retry_after, excerpt)) => {
            let ok = is_success(Some(status));
            Outcome {
                status: Some(status),
                error: (!ok).then(|| format!("HTTP {status}")),
                latency: started.elapsed(),
                response: String::from_utf8_lossy(&excerpt).into_owned(),
                retry_after,
            }
        }
        Err(e) => Outcome::failed(e, started),
    }
}

/// The signed request, or why its address is refused. Not async: what it builds on the way
/// takes no room in the attempt's future.
fn request(guard: &Guard, spec: &AttemptSpec<'_>) -> Result<Request<Full<Bytes>>, String> {
    let ep = spec.endpoint;
    if let Some(ip) = ep.url.host().and_then(literal_ip) {
        if let Err(kind) = guard.check(ip) {
            return Err(format!("{ip} is {kind} address, which is not allowed"));
        }
    }
    let ts = spec.now_ms / 1000;
    let signature = signature_header(ep.active_keys(spec.now_ms), spec.msg_id, ts, spec.body);
    // Sized for every header at once (ours, the endpoint's, the client's `host` and
    // `content-length`): a map grown on the way costs a reallocation and a rehash per request.
    let mut h = HeaderMap::with_capacity(ep.headers.len() + 9);
    for (k, v) in &ep.headers {
        h.insert(k.clone(), v.clone());
    }
    h.insert(WEBHOOK_ID, header(spec.msg_id));
    h.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(ts));
    h.insert(WEBHOOK_SIGNATURE, header(&signature));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    if let Some(tp) = spec.traceparent.filter(|_| !h.contains_key("traceparent")) {
        h.insert("traceparent", header(&tp.to_string()));
    }
    let mut req = Request::new(Full::new(spec.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = ep.url.clone();
    *req.headers_mut() = h;
    Ok(req)
}

/// Sends `req` and reads up to `RESPONSE_EXCERPT` of the answer, all within `timeout`: its
/// status, the wait a `Retry-After` asks for, and the excerpt.
async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Option<Duration>, Vec<u8>), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    // The request is made inside the timeout's own call: a future bound to a name first keeps
    // its place in this one's state after being moved, doubling it (and every attempt's
    // allocation and copy).
    let (resp, lease) = match tokio::time::timeout_at(deadline, client.request(req)).await {
        Ok(sent) => sent.map_err(|e| e.describe())?,
        Err(_) => return Err(format!("timed out after {}ms", timeout.as_millis())),
    };
    let status = resp.status().as_u16();
    // Honoured only where it means "come back later" (SPEC 5): elsewhere a receiver's
    // header could stall its own retries for hours.
    let retry_after = honours_retry_after(status)
        .then(|| resp.headers().get(RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut body = resp.into_body();
    let mut excerpt = Vec::new();
    let read = async {
        while excerpt.len() < RESPONSE_EXCERPT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = RESPONSE_EXCERPT - excerpt.len();
                        excerpt.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // Read to its end: the connection may carry the next delivery.
                None => {
                    lease.finished();
                    break;
                }
                // A broken answer, or one longer than the excerpt (left unread), closes it.
                Some(Err(_)) => break,
            }
        }
    };
    // The status has come: a body that stalls after it only cuts the excerpt short (and
    // closes the connection). A 2xx whose body stalled was taken for a timeout, and sent again.
    let _ = tokio::time::timeout_at(deadline, read).await;
    Ok((status, retry_after, excerpt))
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).expect("ids, timestamps and base64 are valid header values")
}

/// The statuses whose `Retry-After` is honoured.
pub(crate) fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 10.2.3). Seconds past what a u64 holds
/// are a wait longer than any schedule, capped like any other long one.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// What one attempt left behind, for the attempt log and the endpoint's stats.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct AttemptRecord {
    /// Unix ms.
    pub(crate) at: i64,
    pub(crate) event_id: String,
    pub(crate) attempt: u32,
    pub(crate) status: Option<u16>,
    pub(crate) latency_ms: u64,
    pub(crate) error: Option<String>,
    pub(crate) response: String,
    #[serde(skip)]
    pub(crate) endpoint_id: Arc<str>,
    #[serde(skip)]
    pub(crate) tenant: Arc<str>,
    #[serde(skip)]
    pub(crate) gone: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::EndpointRecord;
    use crate::secure::seal::Sealer;

    /// Each attempt's future is allocated, and copied there, once per delivery. Bound to a
    /// name before the timeout took it, the exchange held two places in it, and the client's
    /// connect (a few kilobytes) sat in every request's: 21,120 bytes in a release build, and
    /// the boxed attempt around it 45,104; 4,240 and 1,600 bytes before and after in a test
    /// build (issue 16's thirteenth slice).
    #[tokio::test]
    async fn an_attempts_future_holds_no_connect_and_no_second_copy() {
        let client =
            crate::deliver::client::build(Guard::new(Vec::new()), Duration::from_secs(5), 8);
        let guard = Guard::new(Vec::new());
        let rec = EndpointRecord::for_test("ep_1", "t1", "https://example.com/hook");
        let ep = Endpoint::from_record(&rec, &Sealer::new(None)).expect("a valid record");
        let body = Bytes::from_static(b"{}");
        let spec = AttemptSpec {
            endpoint: &ep,
            msg_id: "msg_1",
            body: &body,
            timeout: Duration::from_secs(1),
            now_ms: 0,
            traceparent: None,
        };
        let fut = send(&client, &guard, spec);
        let size = std::mem::size_of_val(&fut);
        assert!(
            size <= 2048,
            "{size} bytes: a second copy, or a connect, back in it?"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
        // More seconds than a u64 holds is still a wait longer than any schedule, not none.
        for huge in ["18446744073709551616", "99999999999999999999999999999"] {
            assert_eq!(parse_retry_after(huge), Some(Duration::MAX), "{huge}");
        }
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
    }
}
