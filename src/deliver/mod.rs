//! Delivering: each delivery waits for room at its endpoint (its lane, its circuit, the slow
//! budget), is signed and attempted, and its fate is recorded before its source is let go.
//! Due retries and parked backlogs come back through `pull`.

pub(crate) mod attempt;
pub(crate) mod attempt_log;
pub(crate) mod attempt_trim;
pub(crate) mod breaker;
pub(crate) mod client;
pub(crate) mod decide;
pub(crate) mod delivery;
pub(crate) mod dispatcher;
pub(crate) mod expiries;
pub(crate) mod hosts;
pub(crate) mod lane;
pub(crate) mod lanes;
pub(crate) mod looks;
pub(crate) mod ordered;
pub(crate) mod overview;
pub(crate) mod pull;
pub(crate) mod stats;
pub(crate) mod tenant_room;

// What the integration tests reach in for: seeding a circuit, a disabled endpoint, the stats.
pub use attempt_log::disable;
pub use breaker::Circuit;
pub use stats::publish_once;
