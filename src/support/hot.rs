//! The hot path's own thread: a current-thread Tokio runtime that runs the stream consumers,
//! their Redis connections and acknowledgements, and up to `HOT_IN_FLIGHT` of their
//! deliveries at once, with those deliveries' HTTP connections. On the multi-thread runtime a
//! small read woke two threads: the one doing the work, and the idle worker Tokio offers a
//! second runnable task to. Here one thread wakes once for what it has to do. Deliveries
//! beyond the bound go to the multi-thread runtime, so a big fan-out still uses every core
//! (BENCHMARKS, issue 16's sixth slice).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// Deliveries the hot thread runs at once; more go to the multi-thread runtime. Enough for a
/// steady stream's deliveries and one endpoint at full speed (`per_endpoint_in_flight` is 16
/// by default), few enough that one thread keeps up with them.
pub(crate) const HOT_IN_FLIGHT: usize = 64;

/// The thread's name, as `top -H` and the tests see it.
pub(crate) const THREAD_NAME: &str = "webhookd-hot";

/// The running thread; dropping this ends it (and whatever still runs on it).
pub(crate) struct Hot {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Hot {
    pub(crate) fn start() -> std::io::Result<Hot> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Hot {
            handle,
            stop: Some(stop),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the hot thread and waits for its output: what it creates there (a Redis
    /// connection's driver, say) stays there.
    pub(crate) async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(fut).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only its runtime's end cancels it, and `self` keeps that running.
            Err(e) => unreachable!("the hot thread ended under a running task: {e}"),
        }
    }
}

impl Drop for Hot {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a delivery runs: on the hot thread while it has room, else on the runtime that made
/// this (the multi-thread one), through a relay task there: a task spawned onto it from
/// another thread wakes one of its workers each time, so a fan-out's 10,000 spawns from the
/// hot thread cost thousands of wake-ups; the relay takes them in batches and spawns them
/// from inside.
pub(crate) struct Placement {
    hot: Handle,
    relay: mpsc::UnboundedSender<Task>,
    on_hot: Arc<AtomicUsize>,
}

/// Spawns, from a worker thread, what the hot thread hands over.
async fn relay(mut rx: mpsc::UnboundedReceiver<Task>) {
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    while rx.recv_many(&mut batch, RELAY_BATCH).await > 0 {
        for task in batch.drain(..) {
            tokio::spawn(task);
        }
    }
}

const RELAY_BATCH: usize = 256;

/// Gives a hot slot back when its task ends, however it ends.
struct OnHot(Arc<AtomicUsize>);

impl Drop for OnHot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Placement {
    /// Made on the multi-thread runtime, which the relay then runs on.
    pub(crate) fn new(hot: Handle) -> Placement {
        let (relay, handed) = mpsc::unbounded_channel();
        tokio::spawn(self::relay(handed));
        Placement {
            hot,
            relay,
            on_hot: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `hot`: may it run on the hot thread? Not the deliveries of a backlog's full reads:
    /// there the consumer keeps the hot thread busy, and they get the other cores.
    pub(crate) fn spawn<F>(&self, tasks: &TaskTracker, task: F, hot: bool)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if hot {
            if self.on_hot.fetch_add(1, Ordering::AcqRel) < HOT_IN_FLIGHT {
                let slot = OnHot(self.on_hot.clone());
                tasks.spawn_on(
                    async move {
                        let _slot = slot;
                        task.await
                    },
                    &self.hot,
                );
                return;
            }
            self.on_hot.fetch_sub(1, Ordering::AcqRel);
        }
        // Tracked from now: shutdown waits for it even while it is still in the relay.
        let task = tasks.track_future(task);
        // The relay ends only with its runtime; then the task runs here.
        if let Err(back) = self.relay.send(Box::pin(task)) {
            tokio::spawn(back.0);
        }
    }

    /// Deliveries on the hot thread now.
    #[cfg(test)]
    fn on_hot(&self) -> usize {
        self.on_hot.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_beyond_the_hot_bound_run_on_the_other_runtime() {
        let hot = Hot::start().unwrap();
        let place = Placement::new(hot.handle().clone());
        let tasks = TaskTracker::new();
        let names = Arc::new(Mutex::new(Vec::new()));
        let (release, held) = tokio::sync::watch::channel(false);
        for _ in 0..HOT_IN_FLIGHT + 3 {
            let (names, mut held) = (names.clone(), held.clone());
            place.spawn(
                &tasks,
                async move {
                    names.lock().unwrap().push(thread_name());
                    let _ = held.wait_for(|go| *go).await;
                },
                true,
            );
        }
        let wait = std::time::Instant::now();
        while names.lock().unwrap().len() < HOT_IN_FLIGHT + 3 {
            assert!(wait.elapsed().as_secs() < 10, "tasks never started");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(place.on_hot(), HOT_IN_FLIGHT);
        let on_hot = |n: &Vec<String>| n.iter().filter(|t| *t == THREAD_NAME).count();
        assert_eq!(on_hot(&names.lock().unwrap()), HOT_IN_FLIGHT);
        release.send(true).unwrap();
        tasks.close();
        tasks.wait().await;
        assert_eq!(place.on_hot(), 0, "every hot slot is given back");
        // With room again, the next one runs on the hot thread, unless it may not.
        for (may, expected) in [(true, true), (false, false)] {
            let (tx, rx) = oneshot::channel();
            let task = async move {
                let _ = tx.send(thread_name());
            };
            place.spawn(&TaskTracker::new(), task, may);
            assert_eq!(rx.await.unwrap() == THREAD_NAME, expected);
        }
    }

    #[tokio::test]
    async fn what_runs_on_the_hot_thread_ends_with_it() {
        let hot = Hot::start().unwrap();
        assert_eq!(hot.run(async { thread_name() }).await, THREAD_NAME);
        let forever = hot.handle().spawn(std::future::pending::<()>());
        drop(hot);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), forever).await;
        assert!(
            ended.expect("ends when the thread does").is_err(),
            "cancelled"
        );
    }
}
