//! The command line of `webhookd-bench`, and the checks its flags must pass.

use super::*;

#[derive(Parser, Debug)]
#[command(
    name = "webhookd-bench",
    version,
    about = "Publishes events to a webhookd, receives its deliveries, prints one JSON line of measurements"
)]
pub(crate) struct Args {
    /// A name for the run, echoed in the JSON line.
    #[arg(long, default_value = "custom")]
    pub(crate) scenario: String,
    /// Events to publish.
    #[arg(long, default_value_t = 1000)]
    pub(crate) events: u64,
    /// Endpoints to register.
    #[arg(long, default_value_t = 1)]
    pub(crate) endpoints: u32,
    /// Tenants: event i and endpoint n belong to tenant i % T and n % T.
    #[arg(long, default_value_t = 1)]
    pub(crate) tenants: u32,
    /// Events per second; 0 publishes as fast as Redis takes them.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// XADDs per pipeline when publishing as fast as possible.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// At a fixed rate, how often the events due are published.
    #[arg(long, default_value = "1ms", value_parser = webhookd::support::duration::parse)]
    pub(crate) tick: Duration,
    /// Pad each envelope to about this many bytes (0: about 170 bytes, unpadded).
    #[arg(long, default_value_t = 0)]
    pub(crate) body_bytes: usize,
    /// Endpoints get `ordering_key: data.key` and event i `data.key` = `k{i % K}`
    /// (0: unordered).
    #[arg(long, default_value_t = 0)]
    pub(crate) ordering_keys: u64,
    /// After the run, measure this machine's ceiling: `wrk -t1 -cN` POSTing to the same
    /// receiver for 5 s; the line gains `ceiling: {wrk_rps, share}`.
    #[arg(long, value_name = "N")]
    pub(crate) wrk_ceiling: Option<u32>,
    /// The type of every event.
    #[arg(long, default_value = "outbound.delivered")]
    pub(crate) event_type: String,
    /// The filters of every endpoint, comma-separated.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub(crate) filters: Vec<String>,
    /// Verify every request's Standard Webhooks signature.
    #[arg(long)]
    pub(crate) verify: bool,
    /// The first K endpoints answer only after --slow-delay.
    #[arg(long, default_value_t = 0)]
    pub(crate) slow_endpoints: u32,
    #[arg(long, default_value = "10s", value_parser = webhookd::support::duration::parse)]
    pub(crate) slow_delay: Duration,
    /// Give up this long after the first publish and report what is missing.
    #[arg(long, default_value = "120s", value_parser = webhookd::support::duration::parse)]
    pub(crate) timeout: Duration,
    /// After the last expected delivery, keep counting duplicates this long.
    #[arg(long, default_value = "500ms", value_parser = webhookd::support::duration::parse)]
    pub(crate) linger: Duration,
    /// Receiver listeners (ports); endpoint n is served by listener n % K.
    #[arg(long, default_value_t = 1)]
    pub(crate) listeners: usize,
    /// Redis; with --cluster, every node of the cluster, comma-separated (commands are
    /// counted on each).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,
    /// The webhookd under test runs on Redis Cluster (`redis.mode: cluster`).
    #[arg(long)]
    pub(crate) cluster: bool,
    /// stream.shards of the webhookd under test; events go to their tenant's shard.
    #[arg(long, default_value_t = 1)]
    pub(crate) shards: u32,
    /// The key prefix of the webhookd under test (default when spawning: a fresh `bench:<tag>:`).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// stream.key of the webhookd under test.
    #[arg(long, default_value = "events")]
    pub(crate) stream_key: String,
    /// signing.encryption_key of the webhookd under test.
    #[arg(long, default_value = DEMO_ENCRYPTION_KEY)]
    pub(crate) encryption_key: String,
    /// Start this webhookd binary with a generated config, and stop it afterwards.
    #[arg(long, conflicts_with = "pid")]
    pub(crate) spawn: Option<PathBuf>,
    /// Environment for the spawned webhookd (repeatable), e.g.
    /// WEBHOOKD_DELIVERY__PER_ENDPOINT_IN_FLIGHT=64.
    #[arg(long = "env", value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,
    /// The pid of an already running webhookd (for its CPU time and RSS).
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// An already running webhookd's /metrics URL: polled until its index has the endpoints.
    #[arg(long)]
    pub(crate) metrics_url: Option<String>,
    /// The pid of redis-server (default: the only one running, if any), for its CPU time.
    #[arg(long)]
    pub(crate) redis_pid: Option<u32>,
    /// Leave every key this run wrote in Redis.
    #[arg(long)]
    pub(crate) keep: bool,
    /// stream.group of the webhookd under test (isolation runs watch how far it has read).
    #[arg(long, default_value = "webhookd")]
    pub(crate) group: String,
    /// Isolation run: this many endpoints of a noisy tenant (`bench_noisy`). The healthy load
    /// is measured alone, then again beside the noisy tenant's events; see BENCHMARKS.md.
    #[arg(long, default_value_t = 0)]
    pub(crate) noisy_endpoints: u32,
    /// How the noisy endpoints misbehave.
    #[arg(long, value_enum, default_value_t = Kind::Slow)]
    pub(crate) noisy_kind: Kind,
    /// Events published for the noisy tenant; each matches all its endpoints.
    #[arg(long, default_value_t = 0)]
    pub(crate) noisy_events: u64,
    /// `slow`: how long each noisy request waits for its 200.
    #[arg(long, default_value = "14s", value_parser = webhookd::support::duration::parse)]
    pub(crate) noisy_delay: Duration,
    /// The noisy endpoints belong to the healthy tenant (bench_t0) instead of `bench_noisy`.
    #[arg(long)]
    pub(crate) noisy_same_tenant: bool,
    /// After webhookd has read every noisy event, wait this long before the "beside" phase.
    #[arg(long, default_value = "2s", value_parser = webhookd::support::duration::parse)]
    pub(crate) noisy_settle: Duration,
    /// Noisy receiver ports; noisy endpoint k is served by port k % K.
    #[arg(long, default_value_t = 1)]
    pub(crate) noisy_listeners: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

pub(crate) fn check(args: &Args) -> Result<bool> {
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

pub(crate) fn base64_key(text: &str) -> Result<[u8; 32]> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow!("--encryption-key must be base64"))?;
    raw.try_into()
        .map_err(|_| anyhow!("--encryption-key must be base64 of 32 bytes"))
}
