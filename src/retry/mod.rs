//! Where deliveries wait between attempts: the retry queue (due at a time), the parked
//! backlogs (behind a busy or broken endpoint) and the dead letters (out of attempts), and the
//! schedule that decides which.

pub(crate) mod bodies;
pub mod dlq;
pub(crate) mod job;
pub(crate) mod order;
pub(crate) mod park;
pub(crate) mod queue;
pub(crate) mod schedule;
pub mod shards;

pub use queue::RetryQueue;
pub use shards::RetryShards;

pub(crate) use job::Job;
pub(crate) use schedule::{capped_wait, next_delay};
