//! Ingest: reading the stream through the consumer group (`read`), keeping what this replica
//! works on claimed (`claim`), setting invalid entries aside (`validate`), dropping repeats
//! (`dedup`), handing the rest to fan-out (`consumer`), and acknowledging each entry once all
//! its deliveries have a fate (`ack`).

pub mod read;
pub mod claim;
pub mod validate;
pub mod dedup;
pub mod consumer;
pub mod ack;

pub use ack::run_acker;
pub use claim::{run_heartbeat, InFlight};
pub use consumer::{Consumer, Intake};
pub use read::{Reader, StreamSettings};
