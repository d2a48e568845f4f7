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

mod args;
mod ceiling;
mod isolation;
mod noisy;
mod observe;
mod plan;
mod procfs;
mod publisher;
mod receiver;
mod single;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use webhookd::db::conn::Conn;
use webhookd::db::keys::Keys;
use webhookd::db::shards::Shards;
use webhookd::event::filter::Pattern;
use webhookd::registry::Store;
use webhookd::secure::seal::Sealer;
use webhookd::secure::sign::{generate_secret, SigningKey};

use args::{base64_key, check, Args};
use isolation::measure_isolation;
use noisy::{Kind, Noisy, NoisyTally};
use observe::Calls;
use plan::Plan;
use publisher::{Events, Pace, Published};
use receiver::Tally;
use single::measure_single;
use target::wait_for_index;

/// The demo key of the sample config.yaml (and of the generated config when spawning).
const DEMO_ENCRYPTION_KEY: &str = "d2ViaG9va2QtZGVtby1rZXktbm90LWZvci1wcm9kISE=";
/// How often the main task looks at the counters while waiting.
const POLL: Duration = Duration::from_millis(2);

fn main() -> ExitCode {
    let args = Args::parse();
    let nofile = procfs::raise_nofile();
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

/// Everything a measurement needs once the receiver, the endpoints and webhookd are up.
struct Ctx<'a> {
    args: &'a Args,
    plan: Arc<Plan>,
    tally: Arc<Tally>,
    conn: Conn,
    publish_conn: Conn,
    /// The unsharded stream (isolation runs watch the group's progress on it).
    stream: String,
    shards: Shards,
    /// Every Redis node, for command counts.
    nodes: Vec<String>,
    /// Clients connected to all nodes before webhookd started.
    clients_before: Option<u64>,
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

    let nodes: Vec<String> = args
        .redis_url
        .split(',')
        .map(|u| u.trim().to_string())
        .collect();
    let connect = || async {
        let timeout = Duration::from_secs(30);
        let access = webhookd::db::conn::Access::default();
        match args.cluster {
            true => webhookd::db::conn::connect_cluster(&nodes, &access, timeout).await,
            false => webhookd::db::conn::connect(&args.redis_url, timeout).await,
        }
        .map_err(|e| anyhow!(e))
    };
    let conn = connect().await?;
    let publish_conn = connect()
        .await
        .context("connecting the publisher to Redis")?;
    let clients_before = observe::connected_clients(&nodes).await;
    let keys = Keys::new(&prefix, &args.stream_key);
    let shards = Shards::new(keys.clone(), args.shards);
    let store = Store::new(conn.clone(), keys.clone());
    let key = base64_key(&args.encryption_key)?;
    let sealer = Sealer::new(Some(key));

    // External mode: the index gauge before our endpoints, to know when it has them all.
    let baseline = match &args.metrics_url {
        Some(url) if args.spawn.is_none() => observe::indexed_endpoints(url).await,
        _ => None,
    };
    let registered = Instant::now();
    let ordering = (args.ordering_keys > 0).then_some("data.key");
    target::register(
        &store,
        &sealer,
        &plan,
        &args.filters,
        &secrets,
        &listeners,
        ordering,
    )
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
                cluster: args.cluster,
                shards: args.shards,
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
        shards,
        nodes: nodes.clone(),
        clients_before,
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
    let mut measured = if isolation {
        measure_isolation(&ctx).await
    } else {
        measure_single(&ctx).await
    };
    if let (Some(conns), Ok(line)) = (args.wrk_ceiling, measured.as_mut()) {
        let rps = ceiling::wrk_rps(listeners[0], conns, Duration::from_secs(5))?;
        let rate = line["deliveries_per_s"].as_f64().unwrap_or(0.0);
        line["ceiling"] = json!({"wrk_rps": rps, "connections": conns, "share": rate / rps});
    }

    if let Some(s) = spawned.as_mut() {
        s.stop();
    }
    drop(noisy_served);
    if !args.keep && !args.cluster {
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
            keys: self.args.ordering_keys,
        }
    }

    fn publish(&self, events: Events, pace: Pace) -> JoinHandle<redis::RedisResult<Published>> {
        tokio::spawn(publisher::run(
            self.publish_conn.clone(),
            self.shards.clone(),
            events,
            self.t0,
            pace,
        ))
    }

    /// webhookd's counters from `/metrics` (`None` without a metrics URL or an answer).
    async fn counters(&self, which: &[(&str, &str)]) -> Option<serde_json::Map<String, Value>> {
        let (_, text) = observe::get(self.metrics_url.as_deref()?).await?;
        Some(
            which
                .iter()
                .map(|(short, name)| (short.to_string(), observe::metric_json(&text, name)))
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
