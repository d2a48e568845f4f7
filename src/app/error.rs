//! Why `webhookd serve` could not start.

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Redis(String),
    #[error("{0}")]
    Connect(#[from] crate::db::conn::ConnectError),
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start the hot path's thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub(super) fn redis_err(what: &str) -> impl Fn(redis::RedisError) -> ServeError + '_ {
    move |e| ServeError::Redis(format!("{what}: {e}"))
}
