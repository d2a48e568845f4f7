//! Delivering: each delivery waits for room at its endpoint (its lane, its circuit, the slow
//! budget), is signed and attempted, and its fate is recorded before its source is let go.
//! Due retries and parked backlogs come back through `pull`.

pub mod attempt;
pub mod attempt_log;
pub mod breaker;
pub mod client;
pub mod decide;
pub mod delivery;
pub mod dispatcher;
pub mod lane;
pub mod lanes;
pub mod pull;
pub mod stats;
