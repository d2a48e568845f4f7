//! A plain HTTP/1.1 client (keep-alive, no redirects followed, no cookies kept) and the
//! weighing of one response: as served, and as `gzip` would make it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TIMEOUT: Duration = Duration::from_secs(30);
/// gzip's default level, the one web servers and proxies commonly use.
const GZIP_LEVEL: &str = "-6";

pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response read to its end; `took` runs from sending to the body's last byte.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub took: Duration,
}

impl Http {
    pub fn new() -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        self.send(Method::GET, url, headers, None).await
    }

    /// A POST of a JSON body.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        json: String,
    ) -> Result<Answer, String> {
        self.send(Method::POST, url, headers, Some(json)).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        json: Option<String>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if json.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| format!("{url}: {e}"))?;
        let start = Instant::now();
        let read = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(TIMEOUT, read)
            .await
            .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body,
            took: start.elapsed(),
        })
    }
}

/// One response's weight.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Weight {
    /// Body bytes when the client accepts no encoding.
    pub bytes: usize,
    /// Body bytes when the client says `Accept-Encoding: gzip, deflate, br`, as browsers do.
    pub served_bytes: usize,
    /// The `Content-Encoding` of that answer (`None`: sent as is).
    pub served_encoding: Option<String>,
    /// `gzip -6` of the uncompressed body.
    pub gzip_bytes: usize,
}

/// Weighs `url` (with `cookie`, when given): uncompressed, as served to a browser, gzipped.
pub async fn weigh(http: &Http, url: &str, cookie: Option<&str>) -> Result<Weight, String> {
    let mut headers = vec![("accept-encoding", "identity")];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    let plain = http.get(url, &headers).await?;
    headers[0].1 = "gzip, deflate, br";
    let served = http.get(url, &headers).await?;
    if plain.status != 200 || served.status != 200 {
        return Err(format!("{url}: HTTP {} / {}", plain.status, served.status));
    }
    Ok(Weight {
        bytes: plain.body.len(),
        served_bytes: served.body.len(),
        served_encoding: served
            .headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        gzip_bytes: gzip_len(&plain.body)?,
    })
}

/// The size `gzip` makes of `data` (the command-line tool: no compression crate is in the
/// dependency tree).
fn gzip_len(data: &[u8]) -> Result<usize, String> {
    let mut child = Command::new("gzip")
        .args([GZIP_LEVEL, "-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().map_err(|e| format!("gzip: {e}"))?;
    writer
        .join()
        .map_err(|_| "gzip: the writer panicked".to_string())?
        .map_err(|e| format!("gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip exited with {}", out.status));
    }
    Ok(out.stdout.len())
}
