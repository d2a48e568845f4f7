//! Ingest: reading the stream through the consumer group (`read`), keeping what this replica
//! works on claimed (`claim`), setting invalid entries aside (`validate`), dropping repeats
//! (`dedup`), handing the rest to fan-out (`consumer`), and acknowledging each entry once all
//! its deliveries have a fate (`ack`); one of each per stream shard (`shard`).

pub(crate) mod read;
pub(crate) mod reply;
pub(crate) mod claim;
pub(crate) mod validate;
pub(crate) mod dedup;
pub(crate) mod next_read;
pub(crate) mod consumer;
pub(crate) mod ack;
pub(crate) mod shard;

pub(crate) use ack::run_acker;
pub(crate) use claim::{run_heartbeat, InFlight};
pub(crate) use consumer::{Consumer, Intake};
pub(crate) use read::{Reader, StreamSettings};
