//! Running it: metrics, gauges, health and readiness, the ops server, stream trimming.

pub mod gauges;
pub mod health;
pub mod metrics;
pub mod server;
pub mod trim;
