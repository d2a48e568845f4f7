//! Running it: metrics, gauges, health and readiness, the ops server, stream trimming.

pub(crate) mod gauges;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod trim;

pub use trim::trim_once;
