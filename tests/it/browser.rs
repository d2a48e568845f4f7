//! A real headless Chromium for the portal's tests, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, which scripts/test.sh installs when missing): each test
//! gets its own chromedriver on a free port and a fresh profile.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::api_common::Api;
use crate::common::*;

/// Where the browser's programs are: the variables scripts/test.sh sets, or Debian's paths.
fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// One browser session; chromedriver and its Chromium end when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = program("WEBHOOKD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("WEBHOOKD_TEST_CHROMIUM", "/usr/bin/chromium");
        let port = free_port();
        // Its own process group, so that dropping the browser ends Chromium with it.
        let driver = Command::new(&driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{driver_bin}: {e} (scripts/test.sh installs chromium-driver)")
            });
        let profile = tempfile::tempdir().unwrap();
        let args = [
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
        .collect::<Vec<_>>();
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
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session from {driver_bin} with {chromium}: {last}");
    }

    /// A browser that has opened a portal link an admin minted for `tenant`.
    pub async fn open_portal(setup: &Setup, tenant: &str) -> Browser {
        Browser::open_link(
            setup,
            &format!("/v1/tenants/{tenant}/portal-sessions"),
            json!({}),
        )
        .await
    }

    /// A browser that has opened the portal link an admin minted at `path` with `body`.
    pub async fn open_link(setup: &Setup, path: &str, body: serde_json::Value) -> Browser {
        let (status, link) = Api::admin(setup).post(path, body).await;
        assert_eq!(status, 201, "{link}");
        let b = Browser::start().await;
        let url = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
        b.client.goto(&url).await.unwrap();
        b
    }

    /// What `at` finds, once it is there (bounded wait).
    pub async fn element(&self, at: Locator<'_>) -> fantoccini::elements::Element {
        let what = format!("{at:?}");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(at)
            .await
            .unwrap_or_else(|e| panic!("{what} never appeared: {e}"))
    }

    /// Clicks what `at` finds, once it is there (bounded wait).
    pub async fn click(&self, at: Locator<'_>) {
        self.element(at).await.click().await.unwrap();
    }

    /// The text of what `css` matches, once it does (bounded wait). Read again when the page
    /// replaced the element meanwhile (the portal refreshes some parts on its own).
    pub async fn text_of(&self, css: &str) -> String {
        let mut last = String::new();
        for _ in 0..20 {
            let found = self
                .client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css(css))
                .await;
            match found {
                Ok(el) => match el.text().await {
                    Ok(text) => return text,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => panic!("`{css}` never appeared: {e}"),
            }
        }
        panic!("`{css}` kept being replaced: {last}")
    }

    /// A PNG of the window, kept under `target/portal-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
