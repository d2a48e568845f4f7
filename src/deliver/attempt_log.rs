//! Per-endpoint attempt history in Redis (capped), written off the hot path in batches,
//! and the failure streak that disables an endpoint after `delivery.disable_after`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::db::conn::unordered::Unordered;
use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::db::sized;
use crate::deliver::attempt::AttemptRecord;
use crate::deliver::attempt_trim::{Trims, KEEP};
use crate::notice::{Notice, Notices, Reason};
use crate::ops::metrics::Metrics;
use crate::registry::Store;
use crate::support::batch::{self, Closing};
use crate::support::shutdown::Shutdown;

/// Records waiting to be written; past this, an attempt waits for room (bounded memory).
const BACKLOG: usize = 16_384;
const BATCH: usize = 2048;
/// How long the writer waits for more records before writing fewer than a batch: the log
/// and the figures it feeds may lag this much behind the attempts.
const LINGER: Duration = Duration::from_millis(50);

/// The hot path's handle. A record that finds the backlog full waits for room, counted in
/// `webhookd_attempt_log_waits_total`: when deliveries outrun the writer (a fan-out to
/// 100,000 endpoints on a loaded machine), they slow to its pace rather than lose their
/// records, which the endpoint's history, its stats and failure streak are made of.
#[derive(Clone)]
pub(crate) struct AttemptLog {
    tx: mpsc::Sender<AttemptRecord>,
    waits: prometheus_client::metrics::counter::Counter,
}

impl AttemptLog {
    pub(crate) async fn record(&self, rec: AttemptRecord) {
        if let Err(mpsc::error::TrySendError::Full(rec)) = self.tx.try_send(rec) {
            self.waits.inc();
            // Closed only once the writer is gone, at the very end of a shutdown.
            let _ = self.tx.send(rec).await;
        }
    }
}

pub(crate) struct Writer {
    rx: Closing<AttemptRecord>,
    conn: Conn,
    keys: Keys,
    store: Store,
    disable_after: Duration,
    metrics: Arc<Metrics>,
    notices: Notices,
    overview_warned: std::sync::atomic::AtomicBool,
    expiries: crate::deliver::expiries::Expiries,
    stat_expiries: crate::deliver::stats::StatKeys,
    trims: Trims,
}

pub(crate) fn channel(
    conn: Conn,
    keys: Keys,
    store: Store,
    disable_after: Duration,
    metrics: Arc<Metrics>,
    notices: Notices,
) -> (AttemptLog, Writer) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (
        AttemptLog {
            tx,
            waits: metrics.attempt_log_waits.clone(),
        },
        Writer {
            rx: Closing::new(rx),
            conn,
            keys,
            store,
            disable_after,
            metrics,
            notices,
            overview_warned: Default::default(),
            expiries: Default::default(),
            stat_expiries: Default::default(),
            trims: Trims::default(),
        },
    )
}

impl Writer {
    /// The operator view's figures go in a pipeline of their own, sent beside the attempts'
    /// one: a Redis user set up before they existed may lack their commands (`ZINCRBY`), and
    /// that must cost only them.
    fn overview_written(&self, result: redis::RedisResult<()>) {
        if let Err(e) = result {
            if !self
                .overview_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(error = %e, "writing the operator view's figures failed (once per start; see README's ACL)");
            }
        }
    }

    /// What tells it, at shutdown, to write what is queued and end (`run`).
    pub(crate) fn finisher(&self) -> Shutdown {
        self.rx.finisher()
    }

    /// Runs until every handle is dropped or it is told to finish, then drains what is left.
    pub(crate) async fn run(mut self) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut failed = false;
        loop {
            let next = batch::next(&mut self.rx, &mut buf, BATCH, LINGER);
            let closed = if self.trims.is_empty() || failed {
                next.await == 0
            } else {
                // Lists left over the cap are trimmed soon, with or without more records (but
                // not retried on their own while Redis fails: the next records bring them).
                matches!(tokio::time::timeout(LINGER, next).await, Ok(0))
            };
            if closed && self.trims.is_empty() {
                return;
            }
            failed = false;
            if let Err(e) = self.write(&buf).await {
                tracing::warn!(error = %e, dropped = buf.len(), "attempt log write failed");
                failed = true;
            }
            buf.clear();
            if closed {
                return;
            }
        }
    }

    /// The failure streaks, in few commands whatever the batch's size: every endpoint with a
    /// success in one HDEL (a success ends the streak, on whichever replica it happens); a
    /// failure after the batch's last success starts a new streak (or continues the stored
    /// one); then one HMGET of when each failing endpoint's streak began. Answers the failing
    /// endpoints, in the HMGET's order, and the HMGET's place in the pipeline.
    fn streaks<'a>(
        &self,
        pipe: &mut redis::Pipeline,
        by_endpoint: &BTreeMap<&'a str, (Vec<String>, Streak)>,
    ) -> (Vec<&'a str>, Option<usize>) {
        let key = self.keys.failing_since();
        let succeeded: Vec<&str> = by_endpoint
            .iter()
            .filter(|(_, (_, s))| s.succeeded)
            .map(|(e, _)| *e)
            .collect();
        if !succeeded.is_empty() {
            pipe.hdel(&key, &succeeded);
        }
        let mut failing = Vec::new();
        let mut restarted = Vec::new();
        for (endpoint, (_, streak)) in by_endpoint {
            let Some((first, _)) = &streak.failed_after else {
                continue;
            };
            if streak.succeeded {
                restarted.push((*endpoint, *first));
            } else {
                pipe.hset_nx(&key, *endpoint, first);
            }
            failing.push(*endpoint);
        }
        if !restarted.is_empty() {
            // HSET, not HMSET: the README's ACL line grants the former.
            pipe.cmd("HSET").arg(&key).arg(&restarted);
        }
        if failing.is_empty() {
            return (failing, None);
        }
        let at = pipe.len();
        pipe.cmd("HMGET").arg(&key).arg(&failing);
        (failing, Some(at))
    }

    async fn write(&mut self, batch: &[AttemptRecord]) -> redis::RedisResult<()> {
        // One LPUSH per endpoint per batch, oldest first so the newest ends up at the head,
        // and the trims `Trims` knows are due; the failure streaks in the same pipeline. Not a
        // transaction: nothing here needs isolation, and MULTI doubles the replies to parse
        // (a QUEUED for each command, then its result). No `.ignore()`: redis-rs keeps ignored
        // commands' places in a SipHash set, ~5 inserts and lookups per record; the one reply
        // wanted is taken by its place instead.
        let mut by_endpoint: BTreeMap<&str, (Vec<String>, Streak)> = BTreeMap::new();
        for rec in batch {
            let (records, streak) = by_endpoint.entry(&rec.endpoint_id).or_default();
            records.push(serde_json::to_string(rec).expect("records serialize"));
            streak.add(rec);
        }
        // Room for every command at once (per endpoint its LPUSH, a histogram bucket and an
        // expiry, and a few more): grown as it goes, it copied its commands some ten times.
        let mut pipe = redis::Pipeline::with_capacity(3 * by_endpoint.len() + 8);
        let mut pushed = Vec::with_capacity(by_endpoint.len());
        for (endpoint, (records, _)) in &by_endpoint {
            let newest = &records[records.len().saturating_sub(KEEP as usize)..];
            let key = self.keys.attempts(endpoint);
            let bytes = key.len() + newest.iter().map(String::len).sum::<usize>();
            let mut push = sized::command("LPUSH", 1 + newest.len(), bytes);
            push.arg(key).arg(newest);
            pipe.add_command(push);
            pushed.push(*endpoint);
        }
        self.trims.add(&mut pipe, &self.keys);
        let (failing, at) = self.streaks(&mut pipe, &by_endpoint);
        crate::deliver::stats::add(&mut pipe, &self.keys, batch, &mut self.stat_expiries);
        let mut overview = redis::pipe();
        crate::deliver::overview::add(&mut overview, &self.keys, batch, &mut self.expiries);
        // Both in flight at once: the writer paces a big fan-out's deliveries, and waiting for
        // one reply before sending the other doubled its round trips.
        let (mut main, mut view) = (Unordered(self.conn.clone()), Unordered(self.conn.clone()));
        let view_written = async {
            match overview.is_empty() {
                true => Ok(()),
                false => overview.query_async::<()>(&mut view).await,
            }
        };
        let (replies, viewed) = tokio::join!(
            pipe.query_async::<Vec<redis::Value>>(&mut main),
            view_written
        );
        self.overview_written(viewed);
        let mut replies = replies?;
        self.trims
            .landed(&pushed, &replies[..pushed.len().min(replies.len())]);
        let since: Vec<Option<i64>> = match at {
            Some(at) if at < replies.len() => redis::from_redis_value(replies.swap_remove(at))?,
            _ => Vec::new(),
        };
        for (endpoint, since) in failing.into_iter().zip(since) {
            let (_, streak) = &by_endpoint[endpoint];
            let (Some(since), Some((_, last))) = (since, &streak.failed_after) else {
                continue;
            };
            if last.at - since >= self.disable_after.as_millis() as i64 {
                let reason = format!(
                    "every attempt failed for {} (delivery.disable_after); last error: {}",
                    crate::support::duration::Dur(self.disable_after),
                    last.error.as_deref().unwrap_or("unknown")
                );
                if let Some(rec) = disable_record(&self.store, endpoint, &reason).await? {
                    self.metrics.endpoints_disabled.inc();
                    self.notices.send(Notice::disabled(
                        &rec.tenant,
                        &rec.id,
                        Reason::Failing,
                        &reason,
                        rec.updated_at,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One endpoint's outcomes in a batch, in order: whether any attempt succeeded, and the
/// failures after the last success (the first one's time, and the last one).
#[derive(Default)]
struct Streak<'a> {
    succeeded: bool,
    failed_after: Option<(i64, &'a AttemptRecord)>,
}

impl<'a> Streak<'a> {
    fn add(&mut self, rec: &'a AttemptRecord) {
        if crate::deliver::attempt::is_success(rec.status) {
            self.succeeded = true;
            self.failed_after = None;
        } else if !rec.gone {
            // A 410 disables the endpoint by itself; it is no part of a streak.
            let first = self.failed_after.map_or(rec.at, |(first, _)| first);
            self.failed_after = Some((first, rec));
        }
    }
}

/// Disables an endpoint with a reason; false when it was gone or already disabled.
pub async fn disable(store: &Store, endpoint_id: &str, reason: &str) -> redis::RedisResult<bool> {
    Ok(disable_record(store, endpoint_id, reason).await?.is_some())
}

/// As `disable`, answering the record this call disabled (none: gone or already disabled), so
/// the one replica that made the change tells the tenant.
pub(crate) async fn disable_record(
    store: &Store,
    endpoint_id: &str,
    reason: &str,
) -> redis::RedisResult<Option<crate::registry::EndpointRecord>> {
    // On the newest record: a PATCH racing this keeps its change and cannot re-enable it.
    let updated = store
        .update(endpoint_id, |rec| {
            if rec.disabled {
                return Ok::<_, redis::RedisError>(false);
            }
            rec.disabled = true;
            rec.disabled_reason = Some(reason.to_string());
            Ok(true)
        })
        .await?;
    match updated {
        crate::registry::Updated::Written(rec) => {
            tracing::info!(endpoint = %endpoint_id, reason, "endpoint disabled");
            Ok(Some(rec))
        }
        // Tried again by the caller, like a failed write.
        crate::registry::Updated::Contended => Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "endpoint changed by others on every try",
        ))),
        crate::registry::Updated::Missing | crate::registry::Updated::Unchanged(_) => Ok(None),
    }
}

/// Recent attempts of one endpoint, newest first: at most `KEEP`, though a list may hold more
/// until its trim (`attempt_trim`).
pub(crate) async fn recent(
    conn: &Conn,
    keys: &Keys,
    endpoint_id: &str,
    limit: usize,
) -> redis::RedisResult<Vec<AttemptRecord>> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.attempts(endpoint_id))
        .arg(0)
        .arg(limit.min(KEEP as usize).saturating_sub(1))
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: i64, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            at,
            event_id: "e".into(),
            attempt: 1,
            status,
            latency_ms: 1,
            error: (status != Some(200)).then(|| "HTTP 500".into()),
            response: String::new(),
            endpoint_id: "ep".into(),
            tenant: "t".into(),
            gone: false,
        }
    }

    #[tokio::test]
    async fn a_record_finding_the_backlog_full_waits_for_room_and_is_kept() {
        let (tx, mut rx) = mpsc::channel(1);
        let log = AttemptLog {
            tx,
            waits: Default::default(),
        };
        log.record(rec(1, Some(200))).await;
        assert_eq!(log.waits.get(), 0);
        let (a, b) = (log.clone(), log.clone());
        let second = tokio::spawn(async move { a.record(rec(2, Some(200))).await });
        let third = tokio::spawn(async move { b.record(rec(3, Some(500))).await });
        // Both find the backlog full (this runtime has one thread: they run when it yields).
        while log.waits.get() < 2 {
            tokio::task::yield_now().await;
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("every record arrives")
                .expect("open");
            got.push(r.at);
        }
        second.await.unwrap();
        third.await.unwrap();
        got.sort();
        assert_eq!(got, [1, 2, 3], "none dropped");
    }

    #[test]
    fn a_streak_follows_the_order_of_attempts() {
        let recs = [
            rec(1, Some(500)),
            rec(2, Some(200)),
            rec(3, None),
            rec(4, Some(500)),
        ];
        let mut s = Streak::default();
        recs.iter().for_each(|r| s.add(r));
        assert!(s.succeeded);
        let (first, last) = s.failed_after.unwrap();
        assert_eq!(
            (first, last.at),
            (3, 4),
            "only failures after the last success count"
        );

        let recs = [rec(1, Some(500)), rec(2, Some(204))];
        let mut s = Streak::default();
        recs.iter().for_each(|r| s.add(r));
        assert!(
            s.succeeded && s.failed_after.is_none(),
            "a later success ends it"
        );
    }

    #[test]
    fn a_410_is_no_part_of_a_streak() {
        let gone = AttemptRecord {
            gone: true,
            ..rec(1, Some(410))
        };
        let recs = [gone, rec(2, Some(500)), rec(3, Some(503))];
        let mut s = Streak::default();
        recs.iter().for_each(|r| s.add(r));
        let (first, last) = s.failed_after.unwrap();
        assert!(!s.succeeded);
        assert_eq!((first, last.at), (2, 3), "the streak starts after the 410");
    }

    #[test]
    fn a_batch_of_failures_carries_its_first_time_and_its_last_error() {
        let mut last = rec(9, None);
        last.error = Some("connection refused".into());
        let recs = [rec(5, Some(500)), rec(7, Some(429)), last];
        let mut s = Streak::default();
        recs.iter().for_each(|r| s.add(r));
        let (first, last) = s.failed_after.unwrap();
        assert_eq!(first, 5);
        assert_eq!(last.error.as_deref(), Some("connection refused"));
    }
}
