//! `config.yaml` plus `WEBHOOKD_*` environment overrides, validated once at start: its shape
//! and defaults (`model`), reading it (`load`), judging it (`check`), and the error naming the
//! key at fault (`error`).

mod check;
mod error;
mod load;
mod model;

pub(crate) use check::MAX_PROBE_INTERVAL;
pub use error::ConfigError;
pub use model::{
    Config, DeliveryConfig, DlqConfig, HttpConfig, RedisConfig, RetryConfig, SigningConfig,
    StaticEndpoint, StreamConfig, TelemetryConfig,
};

#[cfg(test)]
mod tests;
