//! The one shutdown signal every task shares: a task asks whether shutdown has begun, waits
//! for it, or sleeps until its next turn unless shutdown comes first.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub(crate) struct Shutdown(CancellationToken);

impl Shutdown {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Tells every holder to stop.
    pub(crate) fn begin(&self) {
        self.0.cancel();
    }

    pub(crate) fn begun(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// Sleeps for `d`, less if shutdown begins meanwhile; true while still running.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.0.cancelled() => false,
        }
    }
}

/// A task that shutdown tells to finish what it has and end (a writer, the span exporter),
/// then waits for, up to a deadline.
pub(crate) struct Finishing {
    finish: Shutdown,
    task: JoinHandle<()>,
}

impl Finishing {
    pub(crate) fn new(finish: Shutdown, task: JoinHandle<()>) -> Self {
        Finishing { finish, task }
    }

    pub(crate) async fn end_by(self, deadline: Instant) {
        self.finish.begin();
        let _ = tokio::time::timeout_at(deadline, self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;
    use std::time::Duration;

    #[tokio::test]
    async fn a_sleep_ends_early_when_shutdown_begins() {
        let s = Shutdown::new();
        assert!(s.sleep(Duration::from_millis(1)).await);
        let other = s.clone();
        tokio::spawn(async move { other.begin() });
        let cut = tokio::time::timeout(Duration::from_secs(10), s.sleep(Duration::from_secs(3600)));
        assert_eq!(
            cut.await,
            Ok(false),
            "an hour's sleep is cut short by shutdown"
        );
        assert!(s.begun());
    }
}
