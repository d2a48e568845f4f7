//! The signals that stop `webhookd serve`.

/// SIGTERM or SIGINT, as a stream: the first asks for a graceful stop, the second for a prompt one.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn new() -> Self {
        Signals {
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler"),
        }
    }
    pub(super) async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}
