//! Running the stages: the HTTP listeners, and a task per loop (reading, pulling retries and
//! backlogs, syncing the registry, probing health, acknowledging, trimming).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use super::build::Built;
use super::error::ServeError;
use crate::api;
use crate::config::Config;
use crate::deliver::dispatcher::Dispatcher;
use crate::deliver::ordered::{self, Promoter};
use crate::deliver::{pull, stats};
use crate::event::catalog::Catalog;
use crate::ingest::shard::ShardTasks;
use crate::ops::gauges::Gauges;
use crate::ops::health;
use crate::ops::server::{self, OpsState};
use crate::retry::order::OrderQueue;
use crate::support::hot::Hot;
use crate::support::shutdown::{Finishing, Shutdown};

/// A leased delivery (a due retry, a pulled parked one) waits at most `LANE_WAIT` for its slot,
/// then takes at most the timeouts; past them and this margin, a crashed replica's lease runs
/// out and the delivery is due again, so a crash delays it by about this much, not minutes.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often idle lanes (of quiet or deleted endpoints) are dropped.
const PRUNE_LANES_EVERY: Duration = Duration::from_secs(30);
/// How often lanes flagged as backlogged check that their backlog still has anything.
const BACKLOG_FLAGS_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Running {
    pub(super) stop: Shutdown,
    pub(super) dispatcher: Arc<Dispatcher>,
    /// One consumer, heartbeat and acker per stream read.
    pub(super) ingest: Vec<ShardTasks>,
    /// Outlives `stop`: deliveries still running during the grace keep their entries claimed.
    pub(super) heartbeat_stop: Shutdown,
    /// The attempt-log writer.
    pub(super) writer: Finishing,
    /// The operational events' writer; finishes after the attempt log's, whose last write
    /// may raise one (an endpoint disabled).
    pub(super) notices: Finishing,
    pub(super) park_task: JoinHandle<()>,
    /// The span exporter (traces on).
    pub(super) exporter: Option<Finishing>,
    pub(super) http_stop: Shutdown,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) servers: Vec<JoinHandle<()>>,
    /// Ended last: the consumers, their ackers and some deliveries run on it.
    pub(super) hot: Hot,
}

pub(super) async fn run(built: Built, config: &Config) -> Result<Running, ServeError> {
    let ops = OpsState {
        health: built.health.clone(),
        metrics: built.metrics.clone(),
        gauges: Some(Arc::new(Gauges {
            conn: built.conn.clone(),
            streams: built.streams.clone(),
            group: built.settings.group.clone(),
            retry: built.retry.clone(),
            dlq: built.dlq.clone(),
            live: built.live.clone(),
        })),
    };
    let api_state = api::ApiState::new(
        config,
        built.conn.clone(),
        built.keys.clone(),
        built.store.clone(),
        built.retry.clone(),
        built.dlq.clone(),
        built.sealer.clone(),
        Catalog::new(&config.event_types),
        built.dispatcher.clone(),
        built.notices.clone(),
    );
    let mut main_router = Router::new()
        .merge(server::health_routes(ops.clone()))
        .merge(api::router(api_state));
    let mut metrics_router = server::metrics_routes(ops.clone());
    let separate_metrics = !config.http.metrics_listen.is_empty();
    if separate_metrics {
        // Health on the internal port too: probes there do not queue behind the API's
        // clients, however many hold its connections.
        metrics_router = metrics_router.merge(server::health_routes(ops));
    } else {
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
        let d = built.dispatcher.clone();
        Arc::new(move || d.in_flight())
    };
    let tasks = vec![
        tokio::spawn(built.syncer.run(built.stop.clone())),
        tokio::spawn(health::run_pinger(
            built.health.clone(),
            built.conn.clone(),
            built.keys.write_probe(),
            built.stop.clone(),
        )),
        tokio::spawn(built.breaker.clone().run(built.stop.clone())),
        tokio::spawn(pull::run_parked(
            built.dispatcher.clone(),
            built.pulled.clone(),
            lease,
            built.health.clone(),
            built.stop.clone(),
        )),
        tokio::spawn(tend_lanes(built.dispatcher.clone(), built.stop.clone())),
        tokio::spawn(pull::run(
            built.retry.clone(),
            built.dispatcher.clone(),
            built.outstanding.clone(),
            lease,
            built.health.clone(),
            built.stop.clone(),
        )),
        tokio::spawn(
            Promoter {
                order: OrderQueue::new(built.conn.clone(), built.retry.shards().clone()),
                queue: built.retry.clone(),
                conn: built.conn.clone(),
                streams: built
                    .streams
                    .iter()
                    .map(|k| (ordered::label(k), k.clone()))
                    .collect(),
                group: built.settings.group.clone(),
                dispatcher: built.dispatcher.clone(),
                outstanding: built.outstanding.clone(),
                lease,
                wake: built.order_wake.clone(),
                health: built.health.clone(),
            }
            .run(built.stop.clone()),
        ),
        tokio::spawn(crate::ops::trim::run(
            built.conn.clone(),
            built.streams.clone(),
            built.dlq.clone(),
            built.metrics.clone(),
            built.stop.clone(),
        )),
        tokio::spawn(stats::publish_in_flight(
            built.conn.clone(),
            built.keys.clone(),
            built.settings.consumer.clone(),
            endpoint_in_flight,
        )),
    ];
    // The heartbeats outlive `built.stop`: deliveries still running during the grace keep
    // their entries claimed, so no other replica sends them again meanwhile.
    let heartbeat_stop = Shutdown::new();
    // Both are told to finish once deliveries are over: the API holds a handle to each to the end.
    let writer = Finishing::new(built.writer.finisher(), tokio::spawn(built.writer.run()));
    let notices = Finishing::new(
        built.notice_writer.finisher(),
        tokio::spawn(built.notice_writer.run(built.stop.clone())),
    );
    let park_task = tokio::spawn(built.park_writer.run());
    // It outlives `built.stop`: deliveries finishing during the grace still record spans.
    let exporter = built.exporter.map(|exporter| {
        let finish = Shutdown::new();
        Finishing::new(finish.clone(), tokio::spawn(exporter.run(finish)))
    });
    let streams = built.ingest.len();
    let ingest: Vec<ShardTasks> = built
        .ingest
        .into_iter()
        .map(|shard| {
            shard.spawn(
                &built.conn,
                &built.settings,
                &heartbeat_stop,
                built.hot.handle(),
            )
        })
        .collect();
    tracing::info!(
        consumer = %built.settings.consumer, listen = %config.http.listen, streams,
        endpoints = built.live.snapshot().len(), "webhookd started"
    );
    Ok(Running {
        stop: built.stop,
        dispatcher: built.dispatcher,
        ingest,
        heartbeat_stop,
        writer,
        notices,
        park_task,
        exporter,
        http_stop,
        tasks,
        servers,
        hot: built.hot,
    })
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
    Ok(tokio::spawn(super::listener::serve_http(
        listener, router, stop,
    )))
}
