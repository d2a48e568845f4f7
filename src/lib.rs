//! webhookd: an outbound webhook fan-out dispatcher.
//!
//! An event flows one way: stream → validate → match → fan out → sign → deliver →
//! (retry | dead-letter). Each stage has its own module, named for what it does.

pub mod api;
pub mod app;
pub mod attempt_log;
pub mod backoff;
pub mod breaker;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod conn;
pub mod deliver;
pub mod dispatch;
pub mod dlq;
pub mod duration;
pub mod event;
pub mod filter;
pub mod gauges;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod lane;
pub mod metrics;
pub mod normalize;
pub mod park;
pub mod promote;
pub mod publish;
pub mod redact;
pub mod registry;
pub mod retry;
pub mod seal;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod trim;
