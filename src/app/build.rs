//! Building the stages: Redis connections, the registry loaded, and every stage wired to
//! the parts it owns. Nothing runs yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::{redis_err, ServeError};
use crate::api;
use crate::config::Config;
use crate::db::conn::{connect_config, Conn};
use crate::db::keys::Keys;
use crate::db::shards::Shards;
use crate::deliver::attempt_log;
use crate::deliver::breaker::Breaker;
use crate::deliver::client;
use crate::deliver::dispatcher::{DispatchConfig, Dispatcher, Parts};
use crate::fanout::FanOut;
use crate::ingest::shard::{shards_seen, streams_to_read, ShardIngest, Shared};
use crate::ingest::StreamSettings;
use crate::notice::{self, mark::Mark, Notices};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::ops::trace::{self, Exporter};
use crate::registry::{LiveIndex, Store, Syncer};
use crate::retry::dlq::Dlq;
use crate::retry::park::{self, ParkWriter};
use crate::retry::{RetryQueue, RetryShards};
use crate::secure::seal::Sealer;
use crate::secure::ssrf::Guard;
use crate::support::hot::Hot;
use crate::support::shutdown::Shutdown;

/// Redis commands on the shared connection that take longer than this count as failed.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivery waits in memory for a saturated endpoint before it is parked in Redis.
const LANE_WAIT: Duration = Duration::from_secs(1);
/// Deliveries held in memory per allowed in-flight request.
const OUTSTANDING_PER_SLOT: usize = 2;
/// The part of that room kept for deliveries pulled back from parked backlogs: fresh ones may
/// hold all of theirs waiting for a backlog to drain (`Lane::wait_behind`), and the drain must
/// still find room.
const PULLED_SHARE: usize = 4;

pub(super) struct Built {
    pub(super) conn: Conn,
    pub(super) keys: Keys,
    pub(super) store: Store,
    pub(super) sealer: Sealer,
    pub(super) syncer: Syncer,
    pub(super) live: LiveIndex,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    pub(super) stop: Shutdown,
    pub(super) retry: RetryQueue,
    pub(super) dlq: Dlq,
    pub(super) breaker: Arc<Breaker>,
    pub(super) dispatcher: Arc<Dispatcher>,
    /// Room for deliveries read from the streams and due retries.
    pub(super) outstanding: Arc<Semaphore>,
    /// Room for deliveries pulled back from parked backlogs.
    pub(super) pulled: Arc<Semaphore>,
    pub(super) settings: StreamSettings,
    /// One per stream this replica reads.
    pub(super) ingest: Vec<ShardIngest>,
    /// The streams it reads, for the gauges and the trimmer.
    pub(super) streams: Vec<Keys>,
    pub(super) writer: attempt_log::Writer,
    pub(super) park_writer: ParkWriter,
    /// Posts spans when `telemetry.otlp_endpoint` is set.
    pub(super) exporter: Option<Exporter>,
    pub(super) notices: Notices,
    pub(super) notice_writer: notice::Writer,
    /// Wakes the ordered deliveries' promoter when a fan-out queues some.
    pub(super) order_wake: Arc<tokio::sync::Notify>,
    /// Runs the consumers, their connections and (up to a bound) their deliveries.
    pub(super) hot: Hot,
}

pub(super) async fn build(config: &Config) -> Result<Built, ServeError> {
    let shards = Shards::of(config);
    let keys = shards.base().clone();
    let conn = connect_config(&config.redis, REDIS_RESPONSE_TIMEOUT).await?;
    let sealer =
        Sealer::new(config.encryption_key_bytes()?).with_previous(&config.previous_key_bytes()?);
    if config.weak_admin_tokens() > 0 {
        tracing::warn!(
            count = config.weak_admin_tokens(),
            "http.admin_tokens has tokens shorter than 16 characters: use long random tokens"
        );
    }
    if !sealer.encrypts() {
        tracing::warn!(
            "signing.encryption_key is not set: endpoint secrets are stored unencrypted in Redis"
        );
    }
    let store = Store::new(conn.clone(), keys.clone());
    let mut syncer = Syncer::new(store.clone(), sealer.clone(), config.endpoints.clone());
    syncer
        .full_load()
        .await
        .map_err(redis_err("writing static endpoints and loading endpoints"))?;
    let live = syncer.live();

    let mut metrics = Metrics::new();
    let (tracer, exporter) = trace::from_config(config, &mut metrics)?.unzip();
    let metrics = Arc::new(metrics);
    let health = Arc::new(Health::default());
    let stop = Shutdown::new();
    let guard = Guard::new(config.delivery.allowed_cidrs.clone());
    let http = client::build(
        guard.clone(),
        config.delivery.connect_timeout.get(),
        // Idle connections kept per host: many endpoints often share one host.
        config.delivery.max_in_flight,
    );
    let seen = shards_seen(&conn, &shards)
        .await
        .map_err(redis_err("reading the shard counts used before"))?;
    let retry_shards = RetryShards::new(&shards, seen);
    let retry = RetryQueue::new(conn.clone(), retry_shards.clone());
    let dlq = Dlq::new(conn.clone(), &shards)
        .with_retention(config.dlq.retention.get())
        .with_max_per_endpoint(config.dlq.max_per_endpoint);
    let mark = Arc::new(Mark::new(conn.clone(), &keys));
    mark.reload()
        .await
        .map_err(redis_err("reading the key that marks operational events"))?;
    let (notices, notice_writer) = notice::channel(
        conn.clone(),
        shards.clone(),
        mark.clone(),
        live.clone(),
        metrics.notices_dropped.clone(),
    );
    let (log, writer) = attempt_log::channel(
        conn.clone(),
        keys.clone(),
        store.clone(),
        config.delivery.disable_after.get(),
        metrics.clone(),
        notices.clone(),
    );
    let schedule: Vec<Duration> = config.retry.schedule.iter().map(|d| d.get()).collect();
    let (park, park_writer) = park::channel(conn.clone(), retry_shards.clone());
    let breaker = Breaker::new(
        conn.clone(),
        retry_shards,
        config.delivery.breaker_failures,
        config.delivery.breaker_probe.get(),
        metrics.clone(),
    );
    if let Err(e) = breaker.refresh().await {
        tracing::warn!(error = %e, "reading circuit states failed; retrying in the background");
    }
    let hot = Hot::start().map_err(ServeError::Thread)?;
    let outstanding_total = config.delivery.max_in_flight * OUTSTANDING_PER_SLOT;
    let pulled_total = (outstanding_total / PULLED_SHARE).max(1);
    let consumer_room = outstanding_total - pulled_total;
    let dispatcher = Arc::new(Dispatcher::new(
        DispatchConfig {
            timeout: config.delivery.timeout.get(),
            per_endpoint: config.delivery.per_endpoint_in_flight,
            lane_wait: LANE_WAIT,
            schedule,
            jitter: config.retry.jitter,
        },
        Parts {
            client: http,
            guard,
            live: live.clone(),
            max_in_flight: config.delivery.max_in_flight,
            consumer_room,
            retry: retry.clone(),
            park,
            breaker: breaker.clone(),
            dlq: dlq.clone(),
            log,
            store: store.clone(),
            metrics: metrics.clone(),
            tracer: tracer.clone(),
            stop: stop.clone(),
            notices: notices.clone(),
            hot: hot.handle().clone(),
        },
    ));
    let outstanding = Arc::new(Semaphore::new(consumer_room));
    let pulled = Arc::new(Semaphore::new(pulled_total));
    let settings = StreamSettings {
        group: config.stream.group.clone(),
        consumer: config.consumer_name(),
        batch: config.stream.batch,
        block: config.stream.block.get(),
        claim_idle: config.stream.claim_idle.get(),
        max_event_bytes: config.stream.max_event_bytes,
        invalid_max_len: config.stream.invalid_max_len,
        dedup_window: config.stream.dedup_window.get(),
    };
    let order_wake = Arc::new(tokio::sync::Notify::new());
    let shared = Shared {
        fanout: FanOut::new(live.clone(), retry.clone(), tracer, order_wake.clone()),
        dispatcher: dispatcher.clone(),
        outstanding: outstanding.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        stop: stop.clone(),
        mark,
    };
    let streams = streams_to_read(&conn, &shards, seen)
        .await
        .map_err(redis_err("finding the streams to read"))?;
    // The consumers' connections are made on the hot thread, so their replies wake it alone.
    let redis = config.redis.clone();
    let hot_conn = hot
        .run(async move { connect_config(&redis, REDIS_RESPONSE_TIMEOUT).await })
        .await?;
    let mut ingest = Vec::with_capacity(streams.len());
    for shard_keys in &streams {
        // A connection of its own for each consumer's blocking reads.
        let (redis, wait) = (
            config.redis.clone(),
            config.stream.block.get() + REDIS_RESPONSE_TIMEOUT,
        );
        let blocking = hot
            .run(async move { connect_config(&redis, wait).await })
            .await?;
        let shard = ShardIngest::new(
            shard_keys.clone(),
            blocking,
            hot_conn.clone(),
            settings.clone(),
            shared.clone(),
        );
        shard
            .ensure_group()
            .await
            .map_err(redis_err("creating the consumer group"))?;
        ingest.push(shard);
    }

    match api::migrate_tokens(&conn, &keys).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "tenant tokens indexed for listing and revoking"),
        Err(e) => return Err(ServeError::Redis(format!("indexing tenant tokens: {e}"))),
    }
    Ok(Built {
        conn,
        keys,
        store,
        sealer,
        syncer,
        live,
        metrics,
        health,
        stop,
        retry,
        dlq,
        breaker,
        dispatcher,
        outstanding,
        pulled,
        settings,
        ingest,
        streams,
        writer,
        park_writer,
        exporter,
        notices,
        notice_writer,
        order_wake,
        hot,
    })
}
