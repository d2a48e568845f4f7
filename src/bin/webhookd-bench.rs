//! `webhookd-bench`: drives a webhookd with events and measures what comes out.
//!
//! It starts a fast receiver, registers N endpoints straight into webhookd's Redis registry,
//! publishes events with a send stamp (pipelined `XADD`, as fast as possible or at a fixed
//! rate), waits for every expected delivery, and prints one JSON line: deliveries/s from the
//! first publish to the last receipt, latency percentiles from publish to receipt,
//! duplicates, and webhookd's CPU seconds and peak RSS. See BENCHMARKS.md.

#[path = "webhookd_bench/plan.rs"]
mod plan;
#[path = "webhookd_bench/procfs.rs"]
mod procfs;
#[path = "webhookd_bench/publisher.rs"]
mod publisher;
#[path = "webhookd_bench/receiver.rs"]
mod receiver;
#[path = "webhookd_bench/target.rs"]
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::json;
use webhookd::deliver::sign::{generate_secret, SigningKey};
use webhookd::filter::Pattern;
use webhookd::keys::Keys;
use webhookd::registry::Store;
use webhookd::seal::Sealer;

use plan::Plan;
use publisher::Pace;
use receiver::Tally;

/// The demo key of the sample config.yaml (and of the generated config when spawning).
const DEMO_ENCRYPTION_KEY: &str = "d2ViaG9va2QtZGVtby1rZXktbm90LWZvci1wcm9kISE=";
/// How often the main task looks at the counters while waiting.
const POLL: Duration = Duration::from_millis(2);

#[derive(Parser, Debug)]
#[command(
    name = "webhookd-bench",
    version,
    about = "Publishes events to a webhookd, receives its deliveries, prints one JSON line of measurements"
)]
struct Args {
    /// A name for the run, echoed in the JSON line.
    #[arg(long, default_value = "custom")]
    scenario: String,
    /// Events to publish.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// Endpoints to register.
    #[arg(long, default_value_t = 1)]
    endpoints: u32,
    /// Tenants: event i and endpoint n belong to tenant i % T and n % T.
    #[arg(long, default_value_t = 1)]
    tenants: u32,
    /// Events per second; 0 publishes as fast as Redis takes them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// XADDs per pipeline when publishing as fast as possible.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// At a fixed rate, how often the events due are published.
    #[arg(long, default_value = "1ms", value_parser = webhookd::duration::parse)]
    tick: Duration,
    /// Pad each envelope to about this many bytes (0: about 170 bytes, unpadded).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// The type of every event.
    #[arg(long, default_value = "outbound.delivered")]
    event_type: String,
    /// The filters of every endpoint, comma-separated.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    filters: Vec<String>,
    /// Verify every request's Standard Webhooks signature.
    #[arg(long)]
    verify: bool,
    /// The first K endpoints answer only after --slow-delay.
    #[arg(long, default_value_t = 0)]
    slow_endpoints: u32,
    #[arg(long, default_value = "10s", value_parser = webhookd::duration::parse)]
    slow_delay: Duration,
    /// Give up this long after the first publish and report what is missing.
    #[arg(long, default_value = "120s", value_parser = webhookd::duration::parse)]
    timeout: Duration,
    /// After the last expected delivery, keep counting duplicates this long.
    #[arg(long, default_value = "500ms", value_parser = webhookd::duration::parse)]
    linger: Duration,
    /// Receiver listeners (ports); endpoint n is served by listener n % K.
    #[arg(long, default_value_t = 1)]
    listeners: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The key prefix of the webhookd under test (default when spawning: a fresh `bench:<tag>:`).
    #[arg(long)]
    prefix: Option<String>,
    /// stream.key of the webhookd under test.
    #[arg(long, default_value = "events")]
    stream_key: String,
    /// signing.encryption_key of the webhookd under test.
    #[arg(long, default_value = DEMO_ENCRYPTION_KEY)]
    encryption_key: String,
    /// Start this webhookd binary with a generated config, and stop it afterwards.
    #[arg(long, conflicts_with = "pid")]
    spawn: Option<PathBuf>,
    /// Environment for the spawned webhookd (repeatable), e.g.
    /// WEBHOOKD_DELIVERY__PER_ENDPOINT_IN_FLIGHT=64.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// The pid of an already running webhookd (for its CPU time and RSS).
    #[arg(long)]
    pid: Option<u32>,
    /// An already running webhookd's /metrics URL: polled until its index has the endpoints.
    #[arg(long)]
    metrics_url: Option<String>,
    /// The pid of redis-server (default: the only one running, if any), for its CPU time.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Leave every key this run wrote in Redis.
    #[arg(long)]
    keep: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// CPU seconds of the processes that share the machine during the run.
struct Cpu {
    webhookd: Option<f64>,
    bench: Option<f64>,
    redis: Option<f64>,
}

impl Cpu {
    fn read(webhookd: Option<u32>, redis: Option<u32>) -> Cpu {
        Cpu {
            webhookd: webhookd.and_then(|p| procfs::cpu_secs(Some(p))),
            bench: procfs::cpu_secs(None),
            redis: redis.and_then(|p| procfs::cpu_secs(Some(p))),
        }
    }
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(round(b? - a?, 2))
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn check(args: &Args) -> Result<bool> {
    if args.events == 0 || args.endpoints == 0 || args.tenants == 0 {
        bail!("--events, --endpoints and --tenants must be at least 1");
    }
    if args.slow_endpoints >= args.endpoints {
        bail!("--slow-endpoints must leave at least one healthy endpoint");
    }
    if !webhookd::event::valid_type(&args.event_type) {
        bail!("--event-type `{}` is not an event type", args.event_type);
    }
    let mut matches = false;
    for f in &args.filters {
        matches |= Pattern::parse(f)
            .map_err(|e| anyhow!("--filters: {e}"))?
            .matches(&args.event_type);
    }
    if args.spawn.is_none() && args.prefix.is_none() {
        bail!("without --spawn, give the --prefix (redis.key_prefix) of the webhookd under test");
    }
    Ok(matches)
}

async fn run(args: Args) -> Result<serde_json::Value> {
    let matches = check(&args)?;
    let t0 = Instant::now();
    let tag = format!("b{:08x}", rand::random::<u32>());
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench:{tag}:"));
    let plan = Arc::new(Plan {
        events: args.events,
        endpoints: args.endpoints,
        tenants: args.tenants,
        slow: args.slow_endpoints,
        tag,
        matches,
    });
    if plan.expected_healthy() == 0 {
        bail!("no delivery is expected: the filters do not match --event-type");
    }

    let secrets: Vec<String> = (0..args.endpoints).map(|_| generate_secret()).collect();
    let keys = args.verify.then(|| {
        secrets
            .iter()
            .map(|s| SigningKey::from_secret(s).expect("generated secrets are valid"))
            .collect()
    });
    let tally = Arc::new(Tally::new(plan.clone(), t0, keys, args.slow_delay));
    let listeners = receiver::start(tally.clone(), args.listeners)
        .await
        .context("starting the receiver")?;

    let conn = webhookd::publish::connect(&args.redis_url, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!(e))?;
    let publish_conn = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("connecting the publisher to Redis")?;
    let keys = Keys::new(&prefix, &args.stream_key);
    let store = Store::new(conn.clone(), keys.clone());
    let key = base64_key(&args.encryption_key)?;
    let sealer = Sealer::new(Some(key));

    // External mode: the index gauge before our endpoints, to know when it has them all.
    let baseline = match &args.metrics_url {
        Some(url) if args.spawn.is_none() => target::indexed_endpoints(url).await,
        _ => None,
    };
    let registered = Instant::now();
    target::register(&store, &sealer, &plan, &args.filters, &secrets, &listeners)
        .await
        .context("registering endpoints")?;
    let register_s = registered.elapsed().as_secs_f64();

    // Spawned after registration, webhookd's first full load already holds every endpoint.
    let mut spawned = match &args.spawn {
        Some(bin) => Some(
            target::Spawned::start(target::SpawnSpec {
                bin,
                redis_url: &args.redis_url,
                prefix: &prefix,
                stream_key: &args.stream_key,
                encryption_key: &args.encryption_key,
                env: &args.env,
            })
            .await
            .map_err(|e| anyhow!(e))?,
        ),
        None => {
            wait_for_index(&args, baseline).await;
            None
        }
    };
    let pid = spawned.as_ref().map(|s| s.pid).or(args.pid);
    let redis_pid = args.redis_pid.or_else(procfs::find_redis);

    let loadavg = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    });
    let calls_before = target::command_calls(&conn).await;
    let before = Cpu::read(pid, redis_pid);
    let publishing = tokio::spawn(publisher::run(
        publish_conn,
        keys.stream().to_string(),
        plan.clone(),
        t0,
        Pace {
            rate: (args.rate > 0.0).then_some(args.rate),
            batch: args.batch.max(1),
            tick: args.tick,
            body_bytes: args.body_bytes,
            event_type: args.event_type.clone(),
        },
    ));
    let expected = plan.expected_healthy();
    let deadline = Instant::now() + args.timeout;
    let mut timed_out = false;
    while tally.healthy.load(Ordering::Acquire) < expected {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let after = Cpu::read(pid, redis_pid);
    let calls_after = target::command_calls(&conn).await;
    let rss_peak = pid.and_then(|p| procfs::status_mib(p, "VmHWM"));
    let rss_end = pid.and_then(|p| procfs::status_mib(p, "VmRSS"));
    tokio::time::sleep(args.linger).await;
    let metrics_url = spawned
        .as_ref()
        .map(|s| format!("{}/metrics", s.base_url))
        .or_else(|| args.metrics_url.clone());
    let counters = match &metrics_url {
        Some(url) => target::get(url).await.map(|(_, text)| {
            let mut m = serde_json::Map::new();
            for (short, name) in target::EXPLAINING {
                m.insert(short.to_string(), json!(target::sample(&text, name)));
            }
            m
        }),
        None => None,
    };

    let published = if publishing.is_finished() {
        publishing
            .await
            .context("publisher task")?
            .context("publishing to Redis")?
    } else {
        publishing.abort();
        bail!("the publisher did not finish within --timeout");
    };

    if let Some(s) = spawned.as_mut() {
        s.stop();
    }
    if !args.keep {
        if spawned.is_some() {
            target::purge_prefix(&conn, &prefix)
                .await
                .context("deleting the run's keys")?;
            if let Some(s) = &spawned {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
        } else {
            target::unregister(&store, &plan)
                .await
                .context("removing the run's endpoints")?;
        }
    }

    let delivered = tally.healthy.load(Ordering::Acquire);
    let last = tally.last_healthy_ns.load(Ordering::Acquire);
    let elapsed = last.saturating_sub(published.first_ns) as f64 / 1e9;
    let publish_s = published.last_ns.saturating_sub(published.first_ns) as f64 / 1e9;
    let mut lat = tally.latencies();
    lat.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if lat.is_empty() {
            return None;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        Some(round(lat[i] as f64 / 1e6, 3))
    };
    let webhookd_cpu = delta(before.webhookd, after.webhookd);
    // Redis commands per published event, server-wide (only meaningful on a quiet Redis).
    let redis_calls = match (calls_before, calls_after) {
        (Some(b), Some(a)) => {
            let mut m = serde_json::Map::new();
            for (cmd, n) in a {
                let per = (n - b.get(&cmd).copied().unwrap_or(0)) as f64 / args.events as f64;
                if per >= 0.005 && cmd != "info" {
                    m.insert(cmd, json!(round(per, 3)));
                }
            }
            Some(m)
        }
        _ => None,
    };
    Ok(json!({
        "scenario": args.scenario,
        "events": args.events,
        "endpoints": args.endpoints,
        "tenants": args.tenants,
        "slow_endpoints": args.slow_endpoints,
        "rate": (args.rate > 0.0).then_some(args.rate),
        "envelope_bytes": published.bytes / published.count.max(1),
        "verify": args.verify,
        "expected": expected,
        "delivered": delivered,
        "missing": expected.saturating_sub(delivered),
        "duplicates": tally.duplicates.load(Ordering::Acquire),
        "unexpected": tally.unexpected.load(Ordering::Acquire),
        "bad_signatures": args.verify.then(|| tally.bad_signatures.load(Ordering::Acquire)),
        "slow_delivered": (args.slow_endpoints > 0).then(|| tally.slow.load(Ordering::Acquire)),
        "slow_expected": (args.slow_endpoints > 0).then(|| plan.expected_slow()),
        "timed_out": timed_out,
        "register_s": round(register_s, 3),
        "publish_s": round(publish_s, 3),
        "publish_per_s": round(published.count as f64 / publish_s.max(1e-9), 0),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(delivered as f64 / elapsed.max(1e-9), 0),
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
        "webhookd": pid.map(|p| json!({
            "pid": p,
            "cpu_s": webhookd_cpu,
            "cpu_us_per_delivery": webhookd_cpu.map(|c| round(c * 1e6 / delivered.max(1) as f64, 3)),
            "rss_peak_mib": rss_peak.map(|v| round(v, 1)),
            "rss_end_mib": rss_end.map(|v| round(v, 1)),
        })),
        "webhookd_counters": counters,
        "bench_cpu_s": delta(before.bench, after.bench),
        "redis_cpu_s": delta(before.redis, after.redis),
        "redis_calls_per_event": redis_calls,
        "loadavg_1m_at_start": loadavg,
    }))
}

fn base64_key(text: &str) -> Result<[u8; 32]> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow!("--encryption-key must be base64"))?;
    raw.try_into()
        .map_err(|_| anyhow!("--encryption-key must be base64 of 32 bytes"))
}

/// External mode: waits until webhookd's index holds our endpoints (the gauge lags by up to
/// 5 s), or, without a metrics URL, long enough for its 200 ms change-log polls.
async fn wait_for_index(args: &Args, baseline: Option<u64>) {
    let want = baseline.unwrap_or(0) + args.endpoints as u64;
    if let Some(url) = &args.metrics_url {
        let limit = Instant::now() + Duration::from_secs(30);
        while Instant::now() < limit {
            if target::indexed_endpoints(url)
                .await
                .is_some_and(|n| n >= want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("webhookd-bench: the index gauge never reached {want}; publishing anyway");
    } else {
        let extra = Duration::from_millis(250) * (args.endpoints / 1000);
        tokio::time::sleep(Duration::from_millis(1500) + extra).await;
    }
}
