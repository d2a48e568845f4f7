//! The consumer's reads of new entries. A light read (fewer entries than there was room for)
//! is followed by a short pause, so at a steady rate the next read finds a few entries: one
//! read, one duplicate check and one wake-up for them instead of one each. After a light read
//! of a few entries, the next is checked in the same call (`Dedup::read_checked`), and Redis
//! keeps the pause before it: the thread wakes once per read (issue 16's fourteenth slice).

use redis::streams::StreamId;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::ingest::dedup::{Checked, Dedup};
use crate::ingest::read::Reader;

/// How long after a read the next one waits, when the read came back light: long enough to
/// gather the next few milliseconds' entries, short against delivery latency (README, Sizing).
/// An empty read waited for `stream.block` already; a full one means a backlog. 2 ms, not 1:
/// at 1,000 events/s three events share a read, its duplicate check and their wake-ups
/// instead of two, for a fifth less CPU per event and about 1 ms more latency (issue 16's
/// tenth slice; 3 ms took the p99 to 4.9 ms, near the 5 ms the issue allows).
const READ_LINGER: Duration = Duration::from_millis(2);

/// Room a read waits for (at most `ROOM_WAIT`) when a backlog has left less: on a thread of
/// its own the consumer would otherwise read as soon as a few deliveries end, and a full-
/// speed run's reads and duplicate checks per event doubled (issue 16's sixth slice). Never
/// more than half the room there is, so a small `max_in_flight` is not made to wait.
pub(crate) const MIN_ROOM: usize = 32;
pub(crate) const ROOM_WAIT: Duration = Duration::from_millis(5);

/// A light read of at least this many entries is followed by one checked in the same call:
/// at a steady rate that high the next read almost always finds entries, and the check's own
/// round trip (a wake-up of its own) is saved. A slower trickle keeps the blocking read, which
/// a checked read finding nothing would only precede.
const CHECKED_FROM: usize = 2;

/// What the last read tells about the next.
#[derive(Default)]
pub(crate) struct NextRead {
    /// The pause after a light read ends then.
    light_until: Option<Instant>,
    /// The next read is checked in the same call.
    checked: bool,
    /// A checked read failed: it may have read entries it could not answer.
    lost: bool,
    /// The first checked read has been logged.
    told: bool,
}

impl NextRead {
    /// New entries, after the pause the last read calls for.
    pub(crate) async fn read(
        &mut self,
        reader: &Reader,
        dedup: &Dedup,
        ack_nudge: &Notify,
        room: usize,
    ) -> redis::RedisResult<Checked> {
        let (checked, until) = (self.checked, self.light_until.take());
        match new_entries(reader, dedup, ack_nudge, room, checked, until).await {
            Ok((read, started)) => {
                let got = read.entries.len();
                self.light_until = pause_after(started, got, room);
                self.checked = self.light_until.is_some() && got >= CHECKED_FROM;
                if read.verdicts.is_some() && !std::mem::replace(&mut self.told, true) {
                    tracing::info!(
                        stream = reader.keys().stream(),
                        pause_kept_by_redis = !reader.blocking().is_cluster(),
                        "at this rate, reads and their duplicate checks are one call"
                    );
                }
                Ok(read)
            }
            Err(e) => {
                self.lost |= checked;
                self.checked = false;
                Err(e)
            }
        }
    }

    /// Whether a checked read failed since the last call: the entries it read, if any, are
    /// the consumer's pending ones now.
    pub(crate) fn take_lost(&mut self) -> bool {
        std::mem::take(&mut self.lost)
    }
}

/// New entries after the pause `until` (if any): read and checked in one call when `checked`
/// and the layout allows it, else (or when that found none) read, waiting up to
/// `stream.block`. Also answers when the read was made, which the next pause counts from.
async fn new_entries(
    reader: &Reader,
    dedup: &Dedup,
    ack_nudge: &Notify,
    room: usize,
    checked: bool,
    mut until: Option<Instant>,
) -> redis::RedisResult<(Checked, Instant)> {
    let conn = reader.conn();
    if checked && dedup.reads_checked(&conn).await? {
        // The acker's XACK goes out now (`batch::next_nudged`), not on a timer of its own: in
        // this call's write when it shares the connection, beside it when Redis keeps the
        // pause on the consumer's own.
        ack_nudge.notify_waiters();
        let settings = reader.settings();
        let pause = until
            .take()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .filter(|p| !p.is_zero());
        // Redis keeps the pause on the consumer's own connection (not through a Cluster
        // client, which would need the pause and the read routed as one).
        let read = match pause {
            Some(p) if !reader.blocking().is_cluster() => {
                dedup
                    .read_checked(reader.blocking(), settings, room, Some(p))
                    .await?
            }
            pause => {
                if let Some(p) = pause {
                    tokio::time::sleep(p).await;
                }
                dedup.read_checked(&conn, settings, room, None).await?
            }
        };
        if !read.entries.is_empty() {
            return Ok((read, Instant::now()));
        }
    }
    if let Some(at) = until {
        tokio::time::sleep_until(at).await;
    }
    let started = Instant::now();
    Ok((unchecked(reader.read(">", room).await?), started))
}

/// A read whose entries are still to be checked.
pub(crate) fn unchecked(entries: Vec<StreamId>) -> Checked {
    Checked {
        entries,
        verdicts: None,
    }
}

fn pause_after(started: Instant, got: usize, room: usize) -> Option<Instant> {
    (got > 0 && got < room).then_some(started + READ_LINGER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_light_read_is_followed_by_a_pause() {
        let t = Instant::now();
        assert_eq!(pause_after(t, 1, 100), Some(t + READ_LINGER));
        assert_eq!(pause_after(t, 99, 100), Some(t + READ_LINGER));
        assert_eq!(
            pause_after(t, 100, 100),
            None,
            "a full read: more are waiting"
        );
        assert_eq!(pause_after(t, 0, 100), None, "an empty read waited already");
    }
}
