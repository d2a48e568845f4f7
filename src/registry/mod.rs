//! Endpoints: the stored records, the live match index, and the config's static endpoints.

pub mod live;
pub mod model;
pub mod statics;
pub mod store;

pub use live::{LiveIndex, Snapshot, Syncer};
pub use model::{Endpoint, EndpointRecord, StoredSecret};
pub use store::{Store, Updated};
