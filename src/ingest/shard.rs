//! One input-stream shard's ingest: its consumer, the heartbeat that keeps the entries it
//! works on claimed, and its acker. A replica runs one of each per stream it reads: every
//! shard (SPEC 1: all replicas read all shards), plus streams an earlier `stream.shards` wrote
//! to, until they are empty.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::db::shards::Shards;
use crate::deliver::dispatcher::Dispatcher;
use crate::fanout::FanOut;
use crate::ingest::{run_acker, run_heartbeat, Consumer, InFlight, Intake, Reader, StreamSettings};
use crate::notice::mark::Mark;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::support::shutdown::Shutdown;

/// What every shard's consumer shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) fanout: FanOut,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) outstanding: Arc<Semaphore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Arc<Health>,
    pub(crate) stop: Shutdown,
    /// Tells webhookd's own events from a producer's.
    pub(crate) mark: Arc<Mark>,
}

pub(crate) struct ShardIngest {
    keys: Keys,
    /// The consumer's non-blocking connection, which its acker shares.
    conn: Conn,
    consumer: Consumer,
    in_flight: Arc<InFlight>,
    ack_rx: mpsc::UnboundedReceiver<String>,
    ack_nudge: Arc<Notify>,
}

pub(crate) struct ShardTasks {
    pub(crate) consumer: JoinHandle<()>,
    pub(crate) heartbeat: JoinHandle<()>,
    pub(crate) acker: JoinHandle<()>,
}

impl ShardIngest {
    /// `blocking`: a connection of this shard's own for `XREADGROUP BLOCK`.
    pub(crate) fn new(
        keys: Keys,
        blocking: Conn,
        conn: Conn,
        settings: StreamSettings,
        shared: Shared,
    ) -> ShardIngest {
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let ack_nudge = Arc::new(Notify::new());
        let in_flight = Arc::new(InFlight::default());
        let consumer = Consumer::new(
            Reader::new(blocking, conn.clone(), keys.clone(), settings),
            Intake {
                fanout: shared.fanout,
                dispatcher: shared.dispatcher,
                outstanding: shared.outstanding,
                acks,
                ack_nudge: ack_nudge.clone(),
                in_flight: in_flight.clone(),
                mark: shared.mark,
            },
            shared.metrics,
            shared.health,
            shared.stop,
        );
        ShardIngest {
            keys,
            conn,
            consumer,
            in_flight,
            ack_rx,
            ack_nudge,
        }
    }

    /// Creates the group (from the start of the stream) and the stream if absent.
    pub(crate) async fn ensure_group(&self) -> redis::RedisResult<()> {
        self.consumer.ensure_group().await
    }

    /// `heartbeat_stop` outlives the consumer's stop: deliveries still running during the
    /// grace keep their entries claimed, so no other replica sends them again meanwhile. The
    /// consumer and its acker run on `hot` (`support::hot`), the heartbeat beside the rest.
    pub(crate) fn spawn(
        self,
        conn: &Conn,
        settings: &StreamSettings,
        heartbeat_stop: &Shutdown,
        hot: &Handle,
    ) -> ShardTasks {
        let heartbeat = tokio::spawn(run_heartbeat(
            self.in_flight.clone(),
            conn.clone(),
            self.keys.clone(),
            settings.clone(),
            heartbeat_stop.clone(),
        ));
        let acker = hot.spawn(run_acker(
            self.ack_rx,
            self.conn,
            self.keys,
            settings.group.clone(),
            self.in_flight,
            self.ack_nudge,
        ));
        ShardTasks {
            consumer: hot.spawn(self.consumer.run()),
            heartbeat,
            acker,
        }
    }
}

/// Records the highest shard count this Redis has been used with, and answers it, so a
/// later start with fewer shards still finds what the others hold.
pub(crate) async fn shards_seen(conn: &Conn, shards: &Shards) -> redis::RedisResult<u32> {
    let mut c = conn.clone();
    let base = shards.base();
    let seen: Option<u32> = redis::cmd("GET")
        .arg(base.shards_seen())
        .query_async(&mut c)
        .await?;
    let n = shards.count();
    let seen = seen.unwrap_or(1);
    if n > seen {
        let _: () = redis::cmd("SET")
            .arg(base.shards_seen())
            .arg(n)
            .query_async(&mut c)
            .await?;
    }
    Ok(seen.max(n))
}

/// The streams this replica reads: every shard of `stream.shards`, and those an earlier
/// setting (`seen`, from `shards_seen`) wrote to — the unsharded stream, or shards beyond the
/// current count — while they exist.
pub(crate) async fn streams_to_read(
    conn: &Conn,
    shards: &Shards,
    seen: u32,
) -> redis::RedisResult<Vec<Keys>> {
    let mut c = conn.clone();
    let base = shards.base();
    let n = shards.count();
    let mut read: Vec<Keys> = shards.all().cloned().collect();
    let mut earlier: Vec<Keys> = Vec::new();
    if n > 1 {
        earlier.push(base.shard(0, 1));
    }
    if seen > 1 {
        earlier.extend((if n > 1 { n } else { 0 }..seen).map(|i| base.shard(i, seen)));
    }
    for keys in earlier {
        let exists: bool = redis::cmd("EXISTS")
            .arg(keys.stream())
            .query_async(&mut c)
            .await?;
        if exists {
            read.push(keys);
        }
    }
    Ok(read)
}
