//! `webhookd-bench`: drives a webhookd with events and measures what comes out.
//!
//! It starts a fast receiver, registers N endpoints straight into webhookd's Redis registry,
//! publishes events with a send stamp (pipelined `XADD`, as fast as possible or at a fixed
//! rate), waits for every expected delivery, and prints one JSON line: deliveries/s from the
//! first publish to the last receipt, latency percentiles from publish to receipt,
//! duplicates, and webhookd's CPU seconds and peak RSS. See BENCHMARKS.md.
//!
//! With `--noisy-endpoints`, an isolation run: the same load is measured alone, then beside a
//! noisy tenant's endpoints (slow, hanging, refusing or failing), and the line reports both
//! rates and their ratio.

#[path = "webhookd_bench/noisy.rs"]
mod noisy;
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
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use webhookd::db::conn::Conn;
use webhookd::db::keys::Keys;
use webhookd::event::filter::Pattern;
use webhookd::registry::Store;
use webhookd::secure::seal::Sealer;
use webhookd::secure::sign::{generate_secret, SigningKey};

use noisy::{Kind, Noisy, NoisyTally};
use plan::Plan;
use publisher::{Events, Pace, Published};
use receiver::Tally;
use target::Calls;

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
    #[arg(long, default_value = "1ms", value_parser = webhookd::support::duration::parse)]
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
    #[arg(long, default_value = "10s", value_parser = webhookd::support::duration::parse)]
    slow_delay: Duration,
    /// Give up this long after the first publish and report what is missing.
    #[arg(long, default_value = "120s", value_parser = webhookd::support::duration::parse)]
    timeout: Duration,
    /// After the last expected delivery, keep counting duplicates this long.
    #[arg(long, default_value = "500ms", value_parser = webhookd::support::duration::parse)]
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
    /// stream.group of the webhookd under test (isolation runs watch how far it has read).
    #[arg(long, default_value = "webhookd")]
    group: String,
    /// Isolation run: this many endpoints of a noisy tenant (`bench_noisy`). The healthy load
    /// is measured alone, then again beside the noisy tenant's events; see BENCHMARKS.md.
    #[arg(long, default_value_t = 0)]
    noisy_endpoints: u32,
    /// How the noisy endpoints misbehave.
    #[arg(long, value_enum, default_value_t = Kind::Slow)]
    noisy_kind: Kind,
    /// Events published for the noisy tenant; each matches all its endpoints.
    #[arg(long, default_value_t = 0)]
    noisy_events: u64,
    /// `slow`: how long each noisy request waits for its 200.
    #[arg(long, default_value = "14s", value_parser = webhookd::support::duration::parse)]
    noisy_delay: Duration,
    /// The noisy endpoints belong to the healthy tenant (bench_t0) instead of `bench_noisy`.
    #[arg(long)]
    noisy_same_tenant: bool,
    /// After webhookd has read every noisy event, wait this long before the "beside" phase.
    #[arg(long, default_value = "2s", value_parser = webhookd::support::duration::parse)]
    noisy_settle: Duration,
    /// Noisy receiver ports; noisy endpoint k is served by port k % K.
    #[arg(long, default_value_t = 1)]
    noisy_listeners: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Raises this process's soft limit of open files to the hard limit (a thousand noisy
/// endpoints × 8 connections need it); the spawned webhookd inherits it. The limit now.
fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nofile = raise_nofile();
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
    match rt.block_on(run(args, nofile)) {
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
    if let Err(e) = webhookd::ids::EventType::parse(&args.event_type) {
        bail!("--event-type `{}` {e}", args.event_type);
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
    if args.noisy_endpoints > 0 {
        if args.noisy_events == 0 {
            bail!("--noisy-endpoints needs --noisy-events (at least 1)");
        }
        noisy::check_separation(&args.filters, &args.event_type, args.noisy_same_tenant)
            .map_err(|e| anyhow!(e))?;
    }
    Ok(matches)
}

/// Everything a measurement needs once the receiver, the endpoints and webhookd are up.
struct Ctx<'a> {
    args: &'a Args,
    plan: Arc<Plan>,
    tally: Arc<Tally>,
    conn: Conn,
    publish_conn: MultiplexedConnection,
    stream: String,
    t0: Instant,
    pid: Option<u32>,
    redis_pid: Option<u32>,
    metrics_url: Option<String>,
    register_s: f64,
    loadavg: Option<f64>,
    nofile: Option<u64>,
    noisy: Option<(Arc<Noisy>, Arc<NoisyTally>)>,
}

async fn run(args: Args, nofile: Option<u64>) -> Result<serde_json::Value> {
    let matches = check(&args)?;
    let t0 = Instant::now();
    let tag = format!("b{:08x}", rand::random::<u32>());
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench:{tag}:"));
    let isolation = args.noisy_endpoints > 0;
    let plan = Arc::new(Plan {
        events: args.events,
        endpoints: args.endpoints,
        tenants: args.tenants,
        slow: args.slow_endpoints,
        // Isolation: the same load "alone" and "beside" the noisy one, under fresh ids.
        phases: if isolation { 2 } else { 1 },
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
    let noisy = isolation.then(|| {
        Arc::new(Noisy::new(
            args.noisy_kind,
            args.noisy_endpoints,
            args.noisy_events,
            args.noisy_delay,
            args.noisy_same_tenant,
            &plan,
        ))
    });
    let noisy_tally = noisy.as_ref().map(|n| Arc::new(NoisyTally::new(n.clone())));
    // Kept until the end: `refuse` holds its ports bound (and never listening) through it.
    let noisy_served = match &noisy_tally {
        Some(t) => Some(
            noisy::start(t.clone(), args.noisy_listeners)
                .await
                .context("starting the noisy receiver")?,
        ),
        None => None,
    };

    let conn = webhookd::db::conn::connect(&args.redis_url, Duration::from_secs(30))
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
    if let (Some(n), Some(served)) = (&noisy, &noisy_served) {
        target::register_noisy(&store, &sealer, n, &served.addrs)
            .await
            .context("registering the noisy endpoints")?;
    }
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
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    });
    let ctx = Ctx {
        args: &args,
        plan: plan.clone(),
        tally,
        conn: conn.clone(),
        publish_conn,
        stream: keys.stream().to_string(),
        t0,
        pid: spawned.as_ref().map(|s| s.pid).or(args.pid),
        redis_pid: args.redis_pid.or_else(procfs::find_redis),
        metrics_url: spawned
            .as_ref()
            .map(|s| format!("{}/metrics", s.base_url))
            .or_else(|| args.metrics_url.clone()),
        register_s,
        loadavg,
        nofile,
        noisy: noisy.clone().zip(noisy_tally),
    };
    let measured = if isolation {
        measure_isolation(&ctx).await
    } else {
        measure_single(&ctx).await
    };

    if let Some(s) = spawned.as_mut() {
        s.stop();
    }
    drop(noisy_served);
    if !args.keep {
        if spawned.is_some() {
            target::purge_prefix(&conn, &prefix)
                .await
                .context("deleting the run's keys")?;
            if let Some(s) = &spawned {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
        } else {
            target::unregister(&store, &plan, noisy.as_deref())
                .await
                .context("removing the run's endpoints")?;
        }
    }
    measured
}

impl Ctx<'_> {
    fn pace(&self) -> Pace {
        Pace {
            rate: (self.args.rate > 0.0).then_some(self.args.rate),
            batch: self.args.batch.max(1),
            tick: self.args.tick,
            body_bytes: self.args.body_bytes,
        }
    }

    fn publish(&self, events: Events, pace: Pace) -> JoinHandle<redis::RedisResult<Published>> {
        tokio::spawn(publisher::run(
            self.publish_conn.clone(),
            self.stream.clone(),
            events,
            self.t0,
            pace,
        ))
    }

    /// webhookd's counters from `/metrics` (`None` without a metrics URL or an answer).
    async fn counters(&self, which: &[(&str, &str)]) -> Option<serde_json::Map<String, Value>> {
        let (_, text) = target::get(self.metrics_url.as_deref()?).await?;
        Some(
            which
                .iter()
                .map(|(short, name)| (short.to_string(), target::metric_json(&text, name)))
                .collect(),
        )
    }
}

/// The publisher's result once it is done, or an error when it is not done by now.
async fn finished(publishing: JoinHandle<redis::RedisResult<Published>>) -> Result<Published> {
    if publishing.is_finished() {
        Ok(publishing
            .await
            .context("publisher task")?
            .context("publishing to Redis")?)
    } else {
        publishing.abort();
        bail!("the publisher did not finish within --timeout");
    }
}

/// Waits until `done()` or `timeout`; true when it timed out.
async fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// p50/p90/p99/max of latencies in ns, as ms.
fn percentiles(mut lat: Vec<u64>) -> Value {
    lat.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if lat.is_empty() {
            return None;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        Some(round(lat[i] as f64 / 1e6, 3))
    };
    json!({"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)})
}

/// The default run: the load once, measured from the first publish to the last delivery.
async fn measure_single(ctx: &Ctx<'_>) -> Result<Value> {
    let (args, plan, tally) = (ctx.args, &ctx.plan, &ctx.tally);
    let (pid, redis_pid) = (ctx.pid, ctx.redis_pid);
    let calls_before = target::command_calls(&ctx.conn).await;
    let before = Cpu::read(pid, redis_pid);
    let publishing = ctx.publish(
        Events::healthy(plan.clone(), 0, &args.event_type),
        ctx.pace(),
    );
    let expected = plan.expected_healthy();
    let phase = tally.phase(0);
    let timed_out = wait_until(args.timeout, || {
        phase.healthy.load(Ordering::Acquire) >= expected
    })
    .await;
    let after = Cpu::read(pid, redis_pid);
    let calls_after = target::command_calls(&ctx.conn).await;
    let rss_peak = pid.and_then(|p| procfs::status_mib(p, "VmHWM"));
    let rss_end = pid.and_then(|p| procfs::status_mib(p, "VmRSS"));
    tokio::time::sleep(args.linger).await;
    let counters = ctx.counters(target::EXPLAINING).await;
    let published = finished(publishing).await?;

    let delivered = phase.healthy.load(Ordering::Acquire);
    let last = phase.last_healthy_ns.load(Ordering::Acquire);
    let elapsed = last.saturating_sub(published.first_ns) as f64 / 1e9;
    let publish_s = published.last_ns.saturating_sub(published.first_ns) as f64 / 1e9;
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
        "duplicates": phase.duplicates.load(Ordering::Acquire),
        "unexpected": tally.unexpected.load(Ordering::Acquire),
        "bad_signatures": args.verify.then(|| tally.bad_signatures.load(Ordering::Acquire)),
        "slow_delivered": (args.slow_endpoints > 0).then(|| phase.slow.load(Ordering::Acquire)),
        "slow_expected": (args.slow_endpoints > 0).then(|| plan.expected_slow()),
        "timed_out": timed_out,
        "register_s": round(ctx.register_s, 3),
        "publish_s": round(publish_s, 3),
        "publish_per_s": round(published.count as f64 / publish_s.max(1e-9), 0),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(delivered as f64 / elapsed.max(1e-9), 0),
        "latency_ms": percentiles(phase.latencies()),
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
        "loadavg_1m_at_start": ctx.loadavg,
    }))
}

/// One healthy phase of an isolation run, as it went.
struct PhaseRun {
    published: Published,
    timed_out: bool,
    /// When the wait ended (ns since `t0`).
    ended_ns: u64,
}

/// Publishes the healthy load under the ids of `p` and waits (at most --timeout) for it.
async fn healthy_phase(ctx: &Ctx<'_>, p: u64) -> Result<PhaseRun> {
    let publishing = ctx.publish(
        Events::healthy(ctx.plan.clone(), p, &ctx.args.event_type),
        ctx.pace(),
    );
    let expected = ctx.plan.expected_healthy();
    let phase = ctx.tally.phase(p);
    let timed_out = wait_until(ctx.args.timeout, || {
        phase.healthy.load(Ordering::Acquire) >= expected
    })
    .await;
    let ended_ns = ctx.t0.elapsed().as_nanos() as u64;
    Ok(PhaseRun {
        published: finished(publishing).await?,
        timed_out,
        ended_ns,
    })
}

/// What Redis was asked between two readings, when both exist.
fn calls_between(a: &Option<Calls>, b: &Option<Calls>, own: &Calls) -> Option<Calls> {
    Some(target::calls_delta(a.as_ref()?, b.as_ref()?, own))
}

fn per(n: Option<u64>, d: u64) -> Option<f64> {
    (d > 0).then_some(round(n? as f64 / d as f64, 2))
}

/// A healthy phase's figures; `deliveries_per_s` counts first copies from its first publish
/// to its last first copy (to the end of the wait when it timed out).
fn phase_json(
    ctx: &Ctx<'_>,
    p: u64,
    run: &PhaseRun,
    cpu: Option<f64>,
    calls: &Option<Calls>,
) -> Value {
    let phase = ctx.tally.phase(p);
    let expected = ctx.plan.expected_healthy();
    let delivered = phase.healthy.load(Ordering::Acquire);
    // Cut by --timeout, the phase lasted until the wait ended, not until its last delivery.
    let last = if run.timed_out {
        run.ended_ns
    } else {
        phase.last_healthy_ns.load(Ordering::Acquire)
    };
    let elapsed = last.saturating_sub(run.published.first_ns) as f64 / 1e9;
    let publish_s = run.published.last_ns.saturating_sub(run.published.first_ns) as f64 / 1e9;
    let total_calls = calls.as_ref().map(|c| c.values().sum::<u64>());
    json!({
        "expected": expected,
        "delivered": delivered,
        "missing": expected.saturating_sub(delivered),
        "duplicates": phase.duplicates.load(Ordering::Acquire),
        "slow_delivered": (ctx.plan.slow > 0).then(|| phase.slow.load(Ordering::Acquire)),
        "timed_out": run.timed_out,
        "publish_s": round(publish_s, 3),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(delivered as f64 / elapsed.max(1e-9), 0),
        "latency_ms": percentiles(phase.latencies()),
        "webhookd_cpu_s": cpu,
        "redis_calls": total_calls,
        "redis_calls_per_delivery": per(total_calls, delivered),
    })
}

/// The isolation run: the healthy load alone, then the noisy tenant's events until webhookd has
/// read them all, then the same healthy load again beside them; one JSON line with both.
async fn measure_isolation(ctx: &Ctx<'_>) -> Result<Value> {
    let args = ctx.args;
    let (noisy, noisy_tally) = ctx.noisy.clone().expect("isolation runs have a noisy side");
    let (pid, redis_pid) = (ctx.pid, ctx.redis_pid);
    let none = Calls::new();
    let metrics: Vec<(&str, &str)> = target::EXPLAINING
        .iter()
        .chain(target::ISOLATION)
        .copied()
        .collect();

    // (2) Alone.
    let calls0 = target::command_calls(&ctx.conn).await;
    let cpu0 = Cpu::read(pid, redis_pid);
    let alone = healthy_phase(ctx, 0).await?;
    let cpu1 = Cpu::read(pid, redis_pid);
    let calls1 = target::command_calls(&ctx.conn).await;
    let metrics_alone = ctx.counters(&metrics).await;

    // (3) The noisy events, until webhookd has read and absorbed them, then a settle time.
    let noisy_started = Instant::now();
    let publishing = ctx.publish(
        noisy.load(),
        Pace {
            rate: None,
            ..ctx.pace()
        },
    );
    let publish_timed_out = wait_until(args.timeout, || publishing.is_finished()).await;
    let noisy_published = if publish_timed_out {
        publishing.abort();
        None
    } else {
        Some(finished(publishing).await?)
    };
    let mut own = Calls::new();
    let mut progress = None;
    let read_deadline = noisy_started + args.timeout;
    // Read is not yet absorbed: entries stay pending until each of their deliveries has a fate
    // (parked, retried, delivered). Absorbed once few stay pending (the entries of attempts
    // still in flight), or their number has not moved for 2 s.
    let mut last_pending: Option<(u64, Instant)> = None;
    let read_timed_out = loop {
        let p = target::stream_progress(&ctx.conn, &ctx.stream, &args.group).await;
        *own.entry("xinfo|groups".into()).or_default() += 1;
        *own.entry("xlen".into()).or_default() += 1;
        let pending = p.as_ref().and_then(|(g, _)| g.pending);
        let stable = match (pending, last_pending) {
            (Some(n), Some((m, since))) if n == m => since.elapsed() >= Duration::from_secs(2),
            (Some(n), _) => {
                last_pending = Some((n, Instant::now()));
                false
            }
            _ => false,
        };
        let absorbed = pending.is_some_and(|n| n <= 16) || stable;
        let done = absorbed && p.as_ref().is_some_and(|(g, len)| g.read_all(*len));
        progress = p.or(progress);
        if done && noisy_published.is_some() {
            break false;
        }
        if Instant::now() >= read_deadline {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read_s = noisy_started.elapsed().as_secs_f64();
    tokio::time::sleep(args.noisy_settle).await;
    let cpu2 = Cpu::read(pid, redis_pid);
    let calls2 = target::command_calls(&ctx.conn).await;
    let metrics_noisy = ctx.counters(&metrics).await;
    let noisy_at_beside = noisy_tally.snapshot();

    // (4) Beside.
    let beside = healthy_phase(ctx, 1).await?;
    let cpu3 = Cpu::read(pid, redis_pid);
    let calls3 = target::command_calls(&ctx.conn).await;
    let rss_peak = pid.and_then(|p| procfs::status_mib(p, "VmHWM"));
    let rss_end = pid.and_then(|p| procfs::status_mib(p, "VmRSS"));
    let metrics_beside = ctx.counters(&metrics).await;
    let noisy_after_beside = noisy_tally.snapshot();
    // Late copies still count as duplicates of their phase.
    tokio::time::sleep(args.linger).await;

    let calls_alone = calls_between(&calls0, &calls1, &none);
    let calls_noisy = calls_between(&calls1, &calls2, &own);
    let calls_beside = calls_between(&calls2, &calls3, &none);
    let calls_total = calls_between(&calls0, &calls3, &own);
    let healthy_total = ctx.tally.phase(0).healthy.load(Ordering::Acquire)
        + ctx.tally.phase(1).healthy.load(Ordering::Acquire);
    let alone_json = phase_json(
        ctx,
        0,
        &alone,
        delta(cpu0.webhookd, cpu1.webhookd),
        &calls_alone,
    );
    let mut beside_json = phase_json(
        ctx,
        1,
        &beside,
        delta(cpu2.webhookd, cpu3.webhookd),
        &calls_beside,
    );
    beside_json["redis_top5"] = json!(calls_beside.as_ref().map(|c| target::top_calls(c, 5)));
    beside_json["noisy_received_at_end"] = noisy_after_beside;
    let rate = |v: &Value| v["deliveries_per_s"].as_f64().unwrap_or(0.0);
    let ratio = (rate(&alone_json) > 0.0).then(|| round(rate(&beside_json) / rate(&alone_json), 3));
    let (group, len) = progress.unzip();
    let noisy_calls = calls_noisy.as_ref().map(|c| c.values().sum::<u64>());
    let whole_cpu = delta(cpu0.webhookd, cpu3.webhookd);
    let healthy_calls = |c: &Option<Calls>| c.as_ref().map(|c| c.values().sum::<u64>());
    let timed_out = alone.timed_out || beside.timed_out || read_timed_out || publish_timed_out;

    Ok(json!({
        "scenario": args.scenario,
        "mode": "isolation",
        "events": args.events,
        "endpoints": args.endpoints,
        "tenants": args.tenants,
        "slow_endpoints": args.slow_endpoints,
        "rate": (args.rate > 0.0).then_some(args.rate),
        "noisy": {
            "kind": noisy.kind.name(),
            "endpoints": noisy.endpoints,
            "events": noisy.events,
            "expected": noisy.expected(),
            "tenant": noisy.tenant,
            "same_tenant": noisy.same_tenant,
            "delay_s": (noisy.kind == Kind::Slow).then(|| noisy.delay.as_secs_f64()),
            "listeners": args.noisy_listeners,
        },
        "ratio": ratio,
        "timed_out": timed_out,
        "alone": alone_json,
        "noisy_phase": {
            "publish_s": noisy_published.as_ref().map(|p| round(p.last_ns.saturating_sub(p.first_ns) as f64 / 1e9, 3)),
            "publish_timed_out": publish_timed_out,
            "read_s": round(read_s, 3),
            "read_timed_out": read_timed_out,
            "stream_length": len,
            "entries_read": group.and_then(|g| g.entries_read),
            "lag": group.and_then(|g| g.lag),
            "pending": group.and_then(|g| g.pending),
            "settle_s": args.noisy_settle.as_secs_f64(),
            "webhookd_cpu_s": delta(cpu1.webhookd, cpu2.webhookd),
            "redis_calls": noisy_calls,
            "noisy_received": noisy_at_beside,
        },
        "beside": beside_json,
        "unexpected": ctx.tally.unexpected.load(Ordering::Acquire),
        "redis_calls_per_healthy_delivery": {
            "alone": per(healthy_calls(&calls_alone), ctx.tally.phase(0).healthy.load(Ordering::Acquire)),
            "beside": per(healthy_calls(&calls_beside), ctx.tally.phase(1).healthy.load(Ordering::Acquire)),
            "total": per(healthy_calls(&calls_total), healthy_total),
        },
        "webhookd": pid.map(|p| json!({
            "pid": p,
            "cpu_s": whole_cpu,
            "rss_peak_mib": rss_peak.map(|v| round(v, 1)),
            "rss_end_mib": rss_end.map(|v| round(v, 1)),
        })),
        "webhookd_metrics": {
            "after_alone": metrics_alone,
            "after_noisy_read": metrics_noisy,
            "after_beside": metrics_beside,
        },
        "register_s": round(ctx.register_s, 3),
        "bench_cpu_s": delta(cpu0.bench, cpu3.bench),
        "redis_cpu_s": delta(cpu0.redis, cpu3.redis),
        "nofile_limit": ctx.nofile,
        "loadavg_1m_at_start": ctx.loadavg,
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
    let ours = args.endpoints + args.noisy_endpoints;
    let want = baseline.unwrap_or(0) + ours as u64;
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
        let extra = Duration::from_millis(250) * (ours / 1000);
        tokio::time::sleep(Duration::from_millis(1500) + extra).await;
    }
}
