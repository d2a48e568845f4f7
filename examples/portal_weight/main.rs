//! The tenant portal's endpoints page for a tenant with many endpoints: how heavy it is (HTML,
//! CSS, JS; as served and gzip-compressed) and how soon a real browser renders it (issue 14;
//! BENCHMARKS.md "Tenant portal: page weight and first render").
//!
//! ```sh
//! cargo build --release --bin webhookd --example portal_weight
//! target/release/examples/portal_weight --webhookd target/release/webhookd \
//!     --redis redis://127.0.0.1:6379 --endpoints 1000 --runs 5
//! # or: cargo run --release --example portal_weight -- --webhookd target/release/webhookd …
//! ```
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/browser-for-tests.sh installs
//! them) and the `gzip` command.
//!
//! What it does, in order:
//! 1. starts `--webhookd` as a child (`serve`) with a generated config: a free loopback port,
//!    its own `redis.key_prefix` (`bench:portal:<random>:`), a random admin token, the demo
//!    encryption key; waits for `/readyz`;
//! 2. creates `--endpoints` endpoints of tenant `--tenant` through the API
//!    (`POST /v1/tenants/{t}/endpoints`, `--concurrency` at a time; `https://example.com/hook/{i}`,
//!    filters `["outbound.*"]`, a description); the page lists at most 250 of them;
//! 3. `--runs` times: mints a new portal link, starts a new chromedriver and headless Chromium
//!    with a fresh profile (so an empty cache), opens `/readyz` in it (unmeasured: the first
//!    navigation of a new browser also starts its network service and a renderer) and then
//!    the link, which sets the session cookie and redirects to `/portal/` — the **cold** load
//!    a tenant sees on following a link. It reads the navigation entry, the paint entries, the
//!    assets' resource entries and the rows of `table#endpoints` from the page. Then it opens
//!    `/portal/` again in the same browser — the **warm** load: the HTML again (it is
//!    `no-store`), CSS and JS from the cache;
//! 4. with a plain HTTP client: `/portal/` (with a session cookie), `portal.css` and
//!    `portal.js`, as served (asking for gzip and br) and compressed by `gzip -6`; then
//!    `--server-gets` sequential GETs of `/portal/` on one keep-alive connection, timed to
//!    the end of the body;
//! 5. prints a table and one JSON line (the figures again, to aggregate several runs);
//! 6. deletes every key under its prefix and stops webhookd (and each chromedriver, after
//!    closing its browser session).
//!
//! Flags: `--webhookd PATH` (required), `--redis URL` (default `redis://127.0.0.1:6379`),
//! `--endpoints N` (1000), `--runs N` (5), `--server-gets N` (20), `--concurrency N` (16),
//! `--tenant ID` (`acct_bench`), `--chromium PATH` (`/usr/bin/chromium`), `--chromedriver
//! PATH` (`/usr/bin/chromedriver`), `--keep` (leave the keys in Redis).
//!
//! Times are milliseconds from the navigation's start (`performance.timeOrigin`); in the cold
//! load that start is the request for the link, so the login exchange and its redirect (both
//! on loopback) are inside FCP, DOMContentLoaded and load.

mod browser;
mod fetch;
mod report;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use browser::{Browser, PageLoad};
use fetch::Http;
use report::{Sizes, Summary};
use server::Webhookd;

#[derive(Parser, Debug)]
#[command(about = "Weight and first render of the tenant portal's endpoints page")]
pub struct Args {
    /// The webhookd binary to start.
    #[arg(long)]
    webhookd: PathBuf,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Endpoints of the tenant whose page is measured.
    #[arg(long, default_value_t = 1000)]
    endpoints: usize,
    /// Browser runs (each a fresh profile and a new link).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Plain GETs of `/portal/` timed for the server side.
    #[arg(long, default_value_t = 20)]
    server_gets: usize,
    /// Endpoint creations in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "acct_bench")]
    tenant: String,
    #[arg(long, default_value = "/usr/bin/chromium")]
    chromium: PathBuf,
    #[arg(long, default_value = "/usr/bin/chromedriver")]
    chromedriver: PathBuf,
    /// Leave this run's keys in Redis.
    #[arg(long)]
    keep: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let prefix = format!("bench:portal:{:08x}:", rand::random::<u32>());
    let mut webhookd = match Webhookd::start(&args.webhookd, &args.redis, &prefix).await {
        Ok(w) => w,
        Err(e) => {
            server::purge(&args.redis, &prefix);
            eprintln!("portal_weight: {e}");
            std::process::exit(1);
        }
    };
    let outcome = measure(&args, &webhookd).await;
    webhookd.stop();
    if !args.keep {
        let removed = server::purge(&args.redis, &prefix);
        eprintln!("removed {removed} keys under {prefix}");
    }
    match outcome {
        Ok(summary) => {
            summary.print_table();
            println!("{}", summary.json());
        }
        Err(e) => {
            eprintln!(
                "portal_weight: {e}; webhookd's log: {}",
                webhookd.log_text()
            );
            std::process::exit(1);
        }
    }
}

async fn measure(args: &Args, w: &Webhookd) -> Result<Summary, String> {
    let loadavg_1m_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let http = Http::new();
    let started = std::time::Instant::now();
    server::create_endpoints(&http, w, &args.tenant, args.endpoints, args.concurrency).await?;
    eprintln!(
        "created {} endpoints of {} in {:.1?}",
        args.endpoints,
        args.tenant,
        started.elapsed()
    );

    let mut cold: Vec<PageLoad> = Vec::with_capacity(args.runs);
    let mut warm: Vec<PageLoad> = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let link = server::mint_link(&http, w, &args.tenant).await?;
        let browser = Browser::start(&args.chromium, &args.chromedriver).await?;
        let measured = async {
            browser.visit(&format!("{}/readyz", w.base_url)).await?;
            let c = browser.load(&format!("{}{link}", w.base_url)).await?;
            let again = browser.load(&format!("{}/portal/", w.base_url)).await?;
            Ok::<_, String>((c, again))
        }
        .await;
        browser.close().await;
        let (c, again) = measured?;
        eprintln!(
            "run {run}: cold FCP {:.1} ms, load {:.1} ms; warm FCP {:.1} ms; {} rows",
            c.fcp_ms, c.load_ms, again.fcp_ms, c.rows
        );
        cold.push(c);
        warm.push(again);
    }

    let cookie = server::session_cookie(&http, w, &args.tenant).await?;
    let page = format!("{}/portal/", w.base_url);
    let sizes = Sizes {
        html: fetch::weigh(&http, &page, Some(&cookie)).await?,
        css: fetch::weigh(
            &http,
            &format!("{}/portal/assets/portal.css", w.base_url),
            None,
        )
        .await?,
        js: fetch::weigh(
            &http,
            &format!("{}/portal/assets/portal.js", w.base_url),
            None,
        )
        .await?,
    };
    let mut server_ms = Vec::with_capacity(args.server_gets);
    for _ in 0..args.server_gets {
        let a = http
            .get(&page, &[("cookie", cookie.as_str())])
            .await
            .map_err(|e| format!("GET /portal/: {e}"))?;
        if a.status != 200 {
            return Err(format!("GET /portal/ answered {}", a.status));
        }
        server_ms.push(a.took.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Summary {
        endpoints: args.endpoints,
        cold,
        warm,
        sizes,
        server_ms,
        loadavg_1m_at_start,
    })
}
