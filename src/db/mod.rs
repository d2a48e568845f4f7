//! Redis: the connection that follows a failover, and every key name webhookd uses.

pub mod commandstats;
pub mod conn;
pub mod keys;
pub mod shards;
pub(crate) mod sized;
