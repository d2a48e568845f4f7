//! Running it: metrics, gauges, health and readiness, the ops server, stream trimming, traces.

pub(crate) mod gauges;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod trace;
pub(crate) mod trim;

pub use trace::TraceParent;
pub use trim::trim_once;
