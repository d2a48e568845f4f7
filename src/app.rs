//! `webhookd serve`: wires the stages together and runs them until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::{mpsc, Semaphore};

use crate::api;
use crate::config::Config;
use crate::db::conn::connect;
use crate::db::keys::Keys;
use crate::deliver::attempt_log;
use crate::deliver::breaker::Breaker;
use crate::deliver::client;
use crate::deliver::dispatcher::{DispatchConfig, Dispatcher, Parts};
use crate::deliver::{pull, stats};
use crate::event::catalog::Catalog;
use crate::fanout::FanOut;
use crate::ingest::{self, Consumer, InFlight, Intake, Reader, StreamSettings};
use crate::ops::gauges::Gauges;
use crate::ops::health::{self, Health};
use crate::ops::metrics::Metrics;
use crate::ops::server::{self, OpsState};
use crate::registry::{Store, Syncer};
use crate::retry::dlq::Dlq;
use crate::retry::park;
use crate::retry::RetryQueue;
use crate::secure::seal::Sealer;
use crate::secure::ssrf::Guard;
use crate::support::shutdown::Shutdown;

/// Redis commands on the shared connection that take longer than this count as failed.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivery waits in memory for a saturated endpoint before it is parked in Redis.
const LANE_WAIT: Duration = Duration::from_secs(1);
/// The part of `shutdown_grace` (at most a quarter of it) kept for acknowledging what finished.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);
/// A leased delivery (a due retry, a pulled parked one) waits at most `LANE_WAIT` for its slot,
/// then takes at most the timeouts; past them and this margin, a crashed replica's lease runs
/// out and the delivery is due again, so a crash delays it by about this much, not minutes.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often idle lanes (of quiet or deleted endpoints) are dropped.
const PRUNE_LANES_EVERY: Duration = Duration::from_secs(30);
/// How often lanes flagged as backlogged check that their backlog still has anything.
const BACKLOG_FLAGS_EVERY: Duration = Duration::from_secs(5);
/// Deliveries held in memory per allowed in-flight request.
const OUTSTANDING_PER_SLOT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Redis(String),
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

fn redis_err(what: &str) -> impl Fn(redis::RedisError) -> ServeError + '_ {
    move |e| ServeError::Redis(format!("{what}: {e}"))
}

pub async fn serve(config: Config) -> Result<(), ServeError> {
    let keys = Keys::new(&config.redis.key_prefix, &config.stream.key);
    let conn = connect(&config.redis.url, REDIS_RESPONSE_TIMEOUT)
        .await
        .map_err(ServeError::Redis)?;
    let blocking = connect(
        &config.redis.url,
        config.stream.block.get() + REDIS_RESPONSE_TIMEOUT,
    )
    .await
    .map_err(ServeError::Redis)?;
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

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = Shutdown::new();
    let guard = Guard::new(config.delivery.allowed_cidrs.clone());
    let http = client::build(
        guard.clone(),
        config.delivery.connect_timeout.get(),
        // Idle connections kept per host: many endpoints often share one host.
        config.delivery.max_in_flight,
    );
    let retry = RetryQueue::new(conn.clone(), keys.clone());
    let dlq = Dlq::new(conn.clone(), keys.clone())
        .with_retention(config.dlq.retention.get())
        .with_max_per_endpoint(config.dlq.max_per_endpoint);
    let (log, writer) = attempt_log::channel(
        conn.clone(),
        keys.clone(),
        store.clone(),
        config.delivery.disable_after.get(),
        metrics.clone(),
    );
    let schedule: Vec<Duration> = config.retry.schedule.iter().map(|d| d.get()).collect();
    let (park, park_writer) = park::channel(conn.clone(), keys.clone());
    let breaker = Breaker::new(
        conn.clone(),
        keys.clone(),
        config.delivery.breaker_failures,
        config.delivery.breaker_probe.get(),
        metrics.clone(),
    );
    if let Err(e) = breaker.refresh().await {
        tracing::warn!(error = %e, "reading circuit states failed; retrying in the background");
    }
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
            retry: retry.clone(),
            park,
            breaker: breaker.clone(),
            dlq: dlq.clone(),
            log,
            store: store.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        },
    ));
    let outstanding_total = config.delivery.max_in_flight * OUTSTANDING_PER_SLOT;
    let outstanding = Arc::new(Semaphore::new(outstanding_total));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let in_flight = Arc::new(InFlight::default());
    let settings = StreamSettings {
        group: config.stream.group.clone(),
        consumer: config.consumer_name(),
        batch: config.stream.batch,
        block: config.stream.block.get(),
        claim_idle: config.stream.claim_idle.get(),
        max_event_bytes: config.stream.max_event_bytes,
        invalid_max_len: config.stream.invalid_max_len,
    };
    let consumer = Consumer::new(
        Reader::new(blocking, conn.clone(), keys.clone(), settings.clone()),
        Intake {
            fanout: FanOut::new(live.clone(), retry.clone()),
            dispatcher: dispatcher.clone(),
            outstanding: outstanding.clone(),
            acks: ack_tx,
            in_flight: in_flight.clone(),
        },
        metrics.clone(),
        health.clone(),
        stop.clone(),
    );
    consumer
        .ensure_group()
        .await
        .map_err(redis_err("creating the consumer group"))?;

    match api::migrate_tokens(&conn, &keys).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "tenant tokens indexed for listing and revoking"),
        Err(e) => return Err(ServeError::Redis(format!("indexing tenant tokens: {e}"))),
    }
    let ops = OpsState {
        health: health.clone(),
        metrics: metrics.clone(),
        gauges: Some(Arc::new(Gauges {
            conn: conn.clone(),
            keys: keys.clone(),
            group: settings.group.clone(),
            retry: retry.clone(),
            dlq: dlq.clone(),
            live: live.clone(),
        })),
    };
    let api_state = api::ApiState::new(
        &config,
        conn.clone(),
        keys.clone(),
        store.clone(),
        retry.clone(),
        dlq.clone(),
        sealer.clone(),
        Catalog::new(&config.event_types),
        dispatcher.clone(),
    );
    let mut main_router = Router::new()
        .merge(server::health_routes(ops.clone()))
        .merge(api::router(api_state));
    let metrics_router = server::metrics_routes(ops);
    let separate_metrics = !config.http.metrics_listen.is_empty();
    if !separate_metrics {
        main_router = main_router.merge(metrics_router.clone());
    }
    let http_stop = Shutdown::new();
    let mut servers = vec![listen(&config.http.listen, main_router, http_stop.clone()).await?];
    if separate_metrics {
        servers.push(
            listen(
                &config.http.metrics_listen,
                metrics_router,
                http_stop.clone(),
            )
            .await?,
        );
    }

    let lease =
        config.delivery.timeout.get() + config.delivery.connect_timeout.get() + LEASE_MARGIN;
    // This replica's per-endpoint in-flight counts, for the stats route's cross-replica sum.
    let endpoint_in_flight: stats::InFlightCounts = {
        let d = dispatcher.clone();
        Arc::new(move || d.in_flight())
    };
    let tasks = vec![
        tokio::spawn(syncer.run(stop.clone())),
        tokio::spawn(health::run_pinger(
            health.clone(),
            conn.clone(),
            keys.write_probe(),
            stop.clone(),
        )),
        tokio::spawn(breaker.clone().run(stop.clone())),
        tokio::spawn(pull::run_parked(
            dispatcher.clone(),
            outstanding.clone(),
            lease,
            stop.clone(),
        )),
        tokio::spawn(tend_lanes(dispatcher.clone(), stop.clone())),
        tokio::spawn(pull::run(
            retry.clone(),
            dispatcher.clone(),
            outstanding.clone(),
            lease,
            stop.clone(),
        )),
        tokio::spawn(crate::ops::trim::run(
            conn.clone(),
            keys.clone(),
            dlq.clone(),
            metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(stats::publish_in_flight(
            conn.clone(),
            keys.clone(),
            settings.consumer.clone(),
            endpoint_in_flight,
        )),
    ];
    // The heartbeat outlives `stop`: deliveries still running during the grace keep their
    // entries claimed, so no other replica sends them again meanwhile.
    let heartbeat_stop = Shutdown::new();
    let heartbeat = tokio::spawn(ingest::run_heartbeat(
        in_flight.clone(),
        conn.clone(),
        keys.clone(),
        settings.clone(),
        heartbeat_stop.clone(),
    ));
    let writer_task = tokio::spawn(writer.run());
    let park_task = tokio::spawn(park_writer.run());
    let acker = tokio::spawn(ingest::run_acker(
        ack_rx,
        conn.clone(),
        keys.clone(),
        settings.group.clone(),
        in_flight.clone(),
    ));
    let consumer_task = tokio::spawn(consumer.run());
    tracing::info!(
        consumer = %settings.consumer, listen = %config.http.listen,
        endpoints = live.snapshot().len(), "webhookd started"
    );

    let mut signals = Signals::new();
    signals.next().await;
    // Everything below fits in the grace: deliveries get most of it, acknowledging what
    // finished gets the rest.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace.get();
    let flush = (config.shutdown_grace.get() / 4).min(SHUTDOWN_FLUSH);
    tracing::info!(grace = %config.shutdown_grace, "shutting down: no new reads; finishing in-flight deliveries");
    stop.begin();
    let _ = tokio::time::timeout_at(deadline, consumer_task).await;
    let drained = tokio::select! {
        r = tokio::time::timeout_at(deadline - flush, dispatcher.drained()) => r.is_ok(),
        _ = signals.next() => false,
    };
    if drained {
        tracing::info!("in-flight deliveries finished");
    } else {
        tracing::warn!(
            "shutdown grace over: unfinished deliveries stay pending and will be redelivered"
        );
    }
    heartbeat_stop.begin();
    let _ = tokio::time::timeout_at(deadline, heartbeat).await;
    drop(dispatcher);
    // Acknowledge what finished; whatever does not make it stays pending, never lost.
    let _ = tokio::time::timeout_at(deadline, acker).await;
    park_task.abort();
    let _ = tokio::time::timeout_at(deadline, writer_task).await;
    http_stop.begin();
    for t in tasks {
        t.abort();
    }
    for s in servers {
        let _ = tokio::time::timeout_at(deadline, s).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Lane upkeep: stale backlog flags cleared every few seconds, idle lanes dropped now and then.
async fn tend_lanes(dispatcher: Arc<Dispatcher>, stop: Shutdown) {
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if !stop.sleep(BACKLOG_FLAGS_EVERY).await {
            return;
        }
        if let Err(e) = dispatcher.refresh_backlog_flags().await {
            tracing::warn!(error = %e, "reading backlog depths failed");
        }
        if last_prune.elapsed() >= PRUNE_LANES_EVERY {
            last_prune = tokio::time::Instant::now();
            dispatcher.prune_lanes();
        }
    }
}

async fn listen(
    addr: &str,
    router: Router,
    stop: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await;
    }))
}

/// SIGTERM or SIGINT, as a stream: the first asks for a graceful stop, the second for a prompt one.
struct Signals {
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        Signals {
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler"),
        }
    }
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}
