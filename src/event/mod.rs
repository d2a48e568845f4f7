//! What an event is: the envelope producers publish (SPEC 1), the filter patterns endpoints
//! subscribe with (SPEC 3), and the catalog of event types (SPEC 2).

pub(crate) mod catalog;
pub(crate) mod envelope;
pub mod filter;

pub use envelope::{envelope_json, new_id, parse};
pub(crate) use envelope::{Event, Invalid};
