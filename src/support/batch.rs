//! Taking work off a channel in batches, lingering briefly for more when a batch is short:
//! at a steady rate, each item would otherwise be a round trip of its own.

use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::support::shutdown::Shutdown;

/// The two kinds of tokio receiver the writers read from.
pub(crate) trait Batches<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize;
    fn try_recv(&mut self) -> Option<T>;
    /// Items waiting.
    fn len(&self) -> usize;
}

impl<T> Batches<T> for mpsc::Receiver<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        mpsc::Receiver::recv_many(self, buf, limit).await
    }
    fn try_recv(&mut self) -> Option<T> {
        mpsc::Receiver::try_recv(self).ok()
    }
    fn len(&self) -> usize {
        mpsc::Receiver::len(self)
    }
}

impl<T> Batches<T> for mpsc::UnboundedReceiver<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        mpsc::UnboundedReceiver::recv_many(self, buf, limit).await
    }
    fn try_recv(&mut self) -> Option<T> {
        mpsc::UnboundedReceiver::try_recv(self).ok()
    }
    fn len(&self) -> usize {
        mpsc::UnboundedReceiver::len(self)
    }
}

/// A writer's receiver that shutdown can close: once told to finish it still gives what was
/// queued, then reads as closed, though senders live on (the API holds one to the very end).
pub(crate) struct Closing<T> {
    rx: mpsc::Receiver<T>,
    finish: Shutdown,
}

impl<T> Closing<T> {
    pub(crate) fn new(rx: mpsc::Receiver<T>) -> Self {
        Closing {
            rx,
            finish: Shutdown::new(),
        }
    }

    /// What tells it to finish.
    pub(crate) fn finisher(&self) -> Shutdown {
        self.finish.clone()
    }
}

impl<T> Batches<T> for Closing<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        if !self.finish.begun() {
            tokio::select! {
                n = self.rx.recv_many(buf, limit) => return n,
                () = self.finish.wait() => {}
            }
        }
        self.rx.close();
        self.rx.recv_many(buf, limit).await
    }
    fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
    fn len(&self) -> usize {
        self.rx.len()
    }
}

/// Waits for at least one item, then, if fewer than `limit` came, `linger` for more; appends
/// up to `limit` to `buf`. 0 only when the channel is closed and empty.
pub(crate) async fn next<T>(
    rx: &mut impl Batches<T>,
    buf: &mut Vec<T>,
    limit: usize,
    linger: Duration,
) -> usize {
    let never = Notify::new();
    let when = Nudged {
        gather: linger,
        most: 0,
        linger,
    };
    next_nudged(rx, buf, limit, when, &never).await
}

/// When a short batch ends (`next_nudged`).
#[derive(Clone, Copy)]
pub(crate) struct Nudged {
    /// A nudge ends a batch that has waited this long...
    pub(crate) gather: Duration,
    /// ...and holds at most this many items;
    pub(crate) most: usize,
    /// otherwise it ends after this.
    pub(crate) linger: Duration,
}

/// Like `next`, but a short batch also ends at a `nudge` that comes once it has waited
/// `gather`, while it is small, and at `linger` at the latest. A nudge is given just before
/// another Redis call on the same connection: the batch's command then goes out in the same
/// write and its reply comes back with that call's, instead of a timer and a reply waking the
/// thread of their own. A big batch would hold up the call it goes out before, so it waits.
pub(crate) async fn next_nudged<T>(
    rx: &mut impl Batches<T>,
    buf: &mut Vec<T>,
    limit: usize,
    when: Nudged,
    nudge: &Notify,
) -> usize {
    let n = rx.recv_many(buf, limit).await;
    if n > 0 && n < limit {
        let first = tokio::time::Instant::now();
        let latest = tokio::time::sleep(when.linger);
        tokio::pin!(latest);
        loop {
            tokio::select! {
                () = &mut latest => break,
                () = nudge.notified() => {
                    if first.elapsed() >= when.gather && buf.len() + rx.len() <= when.most {
                        break;
                    }
                }
            }
        }
        top_up(rx, buf, limit);
    }
    buf.len()
}

/// What has come meanwhile, without waiting, up to `limit` in `buf`.
fn top_up<T>(rx: &mut impl Batches<T>, buf: &mut Vec<T>, limit: usize) {
    while buf.len() < limit {
        match rx.try_recv() {
            Some(item) => buf.push(item),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when(gather_ms: u64, most: usize, linger_ms: u64) -> Nudged {
        Nudged {
            gather: Duration::from_millis(gather_ms),
            most,
            linger: Duration::from_millis(linger_ms),
        }
    }

    #[tokio::test]
    async fn a_closing_receiver_gives_what_was_queued_then_ends_though_a_sender_lives() {
        let (tx, rx) = mpsc::channel(8);
        let mut rx = Closing::new(rx);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let finish = rx.finisher();
        let waiting = tokio::spawn(async move {
            let mut buf = Vec::new();
            let first = rx.recv_many(&mut buf, 10).await;
            let more = rx.recv_many(&mut buf, 10).await;
            (first, more, buf)
        });
        finish.begin();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        let (first, more, buf) = got.expect("ends while `tx` lives").unwrap();
        assert_eq!((first, more, &buf[..]), (2, 0, &[1, 2][..]));
        assert!(tx.send(3).await.is_err(), "closed for what comes after");
    }

    #[tokio::test]
    async fn a_short_batch_waits_for_what_comes_within_the_linger() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(1).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.send(2).unwrap();
            tokio::time::sleep(Duration::from_millis(800)).await;
            late.send(3).unwrap();
        });
        let mut buf = Vec::new();
        let n = next(&mut rx, &mut buf, 10, Duration::from_millis(300)).await;
        assert_eq!((n, &buf[..]), (2, &[1, 2][..]), "3 came after the linger");
    }

    #[tokio::test]
    async fn a_nudge_ends_a_short_batch_once_it_has_gathered_long_enough() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let nudge = std::sync::Arc::new(Notify::new());
        tx.send(1).unwrap();
        let (late, nudger) = (tx.clone(), nudge.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            nudger.notify_waiters(); // too early: the batch has not gathered 100 ms yet
            tokio::time::sleep(Duration::from_millis(150)).await;
            late.send(2).unwrap();
            nudger.notify_waiters();
            tokio::time::sleep(Duration::from_millis(50)).await;
            late.send(3).unwrap();
        });
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let n = next_nudged(&mut rx, &mut buf, 10, when(100, 2, 10_000), &nudge).await;
        assert_eq!((n, &buf[..]), (2, &[1, 2][..]), "ended by the second nudge");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not by the linger"
        );
    }

    #[tokio::test]
    async fn a_nudge_leaves_a_big_batch_to_its_linger() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let nudge = std::sync::Arc::new(Notify::new());
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        let nudger = nudge.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                nudger.notify_waiters();
            }
        });
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let n = next_nudged(&mut rx, &mut buf, 10, when(0, 2, 400), &nudge).await;
        assert_eq!(n, 3);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "3 is over 2"
        );
    }

    #[tokio::test]
    async fn without_a_nudge_a_short_batch_ends_at_the_linger() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(1).unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let n = next_nudged(&mut rx, &mut buf, 10, when(10, 10, 200), &Notify::new()).await;
        assert_eq!((n, &buf[..]), (1, &[1][..]));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_full_batch_does_not_wait_and_a_closed_channel_gives_zero() {
        let (tx, mut rx) = mpsc::channel(8);
        for i in 0..4 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        let mut buf = Vec::new();
        let n = next(&mut rx, &mut buf, 3, Duration::from_secs(3600)).await;
        assert_eq!((n, &buf[..]), (3, &[0, 1, 2][..]));
        buf.clear();
        assert_eq!(
            next(&mut rx, &mut buf, 3, Duration::from_millis(1)).await,
            1
        );
        buf.clear();
        assert_eq!(
            next(&mut rx, &mut buf, 3, Duration::from_millis(1)).await,
            0
        );
    }
}
