//! Debian's headless Chromium through its chromedriver (as `tests/it/browser.rs` drives it),
//! and what the page's own Performance API says about one load.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long a page has to report its load event and first contentful paint.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// Read in the page once it has loaded: the navigation entry, the paint entries, the assets'
/// resource entries, and what the page shows.
const READ_PAGE: &str = r#"
const nav = performance.getEntriesByType('navigation')[0];
const paint = {};
for (const p of performance.getEntriesByType('paint')) paint[p.name] = p.startTime;
const assets = {};
for (const r of performance.getEntriesByType('resource')) {
  const name = r.name.split('/').pop();
  if (name === 'portal.css' || name === 'portal.js') {
    assets[name] = { transfer: r.transferSize, encoded: r.encodedBodySize,
                     decoded: r.decodedBodySize, duration: r.duration };
  }
}
const urls = [...document.querySelectorAll('#endpoints tbody tr code')].map((c) => c.textContent);
const note = [...document.querySelectorAll('#endpoints ~ p')].map((p) => p.textContent);
return {
  ready: !!nav && nav.loadEventEnd > 0 && 'first-contentful-paint' in paint,
  nav: nav ? nav.toJSON() : null,
  paint, assets, note,
  path: location.pathname,
  shown: urls.length ? [urls[0], urls[urls.length - 1]] : [],
  rows: document.querySelectorAll('table#endpoints tbody tr').length,
  nodes: document.getElementsByTagName('*').length,
};
"#;

/// One load of the page, in milliseconds from the navigation's start and bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageLoad {
    pub fp_ms: f64,
    pub fcp_ms: f64,
    pub dcl_ms: f64,
    pub load_ms: f64,
    /// `responseStart - requestStart` of the page's (final) request: the server's time to
    /// its first byte, on loopback.
    pub server_ms: f64,
    /// `responseEnd - responseStart`: the HTML's download.
    pub download_ms: f64,
    /// `redirectEnd - redirectStart`: the link's exchange for a cookie (cold load only).
    pub redirect_ms: f64,
    pub html_transfer: u64,
    pub html_encoded: u64,
    pub html_decoded: u64,
    /// `portal.css` and `portal.js`: transfer, encoded and decoded bytes (transfer 0: cache).
    pub css: [u64; 3],
    pub js: [u64; 3],
    pub rows: u64,
    /// Elements in the document.
    pub nodes: u64,
    /// The URLs of the first and the last row.
    pub shown: Vec<String>,
    /// What the page says after the table (e.g. that only the first endpoints are shown).
    pub note: Vec<String>,
}

/// One chromedriver with one Chromium session and a fresh profile.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(chromium: &Path, chromedriver: &Path) -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", chromedriver.display()))?;
        let profile = tempfile::tempdir().map_err(|e| format!("a profile directory: {e}"))?;
        let args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Ok(Browser {
                        client,
                        driver,
                        _profile: profile,
                    })
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = driver.kill();
        let _ = driver.wait();
        Err(format!(
            "no WebDriver session from {} with {}: {last}",
            chromedriver.display(),
            chromium.display()
        ))
    }

    /// Opens `url` without measuring it: the first navigation of a new browser also starts
    /// its network service and a renderer, which is not the page's doing.
    pub async fn visit(&self, url: &str) -> Result<(), String> {
        self.client
            .goto(url)
            .await
            .map_err(|e| format!("opening {url}: {e}"))
    }

    /// Opens `url` and waits until the page reports its load event and first contentful
    /// paint.
    pub async fn load(&self, url: &str) -> Result<PageLoad, String> {
        self.client
            .goto(url)
            .await
            .map_err(|e| format!("opening {url}: {e}"))?;
        let start = Instant::now();
        loop {
            let page = self
                .client
                .execute(READ_PAGE, vec![])
                .await
                .map_err(|e| format!("reading the page: {e}"))?;
            if page["ready"].as_bool() == Some(true) {
                if page["path"] != "/portal/" {
                    return Err(format!("ended at {} instead of /portal/", page["path"]));
                }
                return Ok(page_load(&page));
            }
            if start.elapsed() > SETTLE_WITHIN {
                return Err(format!("the page never settled: {page}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the Chromium session, then its chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn page_load(page: &Value) -> PageLoad {
    let nav = &page["nav"];
    // The API's resolution is 0.1 ms (paint times are coarser); keep only that.
    let tenth = |x: f64| (x * 10.0).round() / 10.0;
    let t = |k: &str| nav[k].as_f64().unwrap_or(f64::NAN);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let asset = |name: &str| {
        let a = &page["assets"][name];
        [n(&a["transfer"]), n(&a["encoded"]), n(&a["decoded"])]
    };
    PageLoad {
        fp_ms: page["paint"]["first-paint"].as_f64().unwrap_or(f64::NAN),
        fcp_ms: page["paint"]["first-contentful-paint"]
            .as_f64()
            .unwrap_or(f64::NAN),
        dcl_ms: tenth(t("domContentLoadedEventEnd")),
        load_ms: tenth(t("loadEventEnd")),
        server_ms: tenth(t("responseStart") - t("requestStart")),
        download_ms: tenth(t("responseEnd") - t("responseStart")),
        redirect_ms: tenth(t("redirectEnd") - t("redirectStart")),
        html_transfer: n(&nav["transferSize"]),
        html_encoded: n(&nav["encodedBodySize"]),
        html_decoded: n(&nav["decodedBodySize"]),
        css: asset("portal.css"),
        js: asset("portal.js"),
        rows: n(&page["rows"]),
        nodes: n(&page["nodes"]),
        shown: strings(&page["shown"]),
        note: strings(&page["note"]),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
