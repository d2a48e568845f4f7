//! Taking work off a channel in batches, lingering briefly for more when a batch is short:
//! at a steady rate, each item would otherwise be a round trip of its own.

use std::time::Duration;

use tokio::sync::mpsc;

/// The two kinds of tokio receiver the writers read from.
pub(crate) trait Batches<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize;
    fn try_recv(&mut self) -> Option<T>;
}

impl<T> Batches<T> for mpsc::Receiver<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        mpsc::Receiver::recv_many(self, buf, limit).await
    }
    fn try_recv(&mut self) -> Option<T> {
        mpsc::Receiver::try_recv(self).ok()
    }
}

impl<T> Batches<T> for mpsc::UnboundedReceiver<T> {
    async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        mpsc::UnboundedReceiver::recv_many(self, buf, limit).await
    }
    fn try_recv(&mut self) -> Option<T> {
        mpsc::UnboundedReceiver::try_recv(self).ok()
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
    let n = rx.recv_many(buf, limit).await;
    if n > 0 && n < limit {
        tokio::time::sleep(linger).await;
        while buf.len() < limit {
            match rx.try_recv() {
                Some(item) => buf.push(item),
                None => break,
            }
        }
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

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
