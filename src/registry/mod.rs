//! Endpoints: the stored records, the live match index, and the config's static endpoints.

pub(crate) mod error;
pub(crate) mod live;
pub(crate) mod model;
pub(crate) mod statics;
pub(crate) mod store;

// Public: what the bench and the tests use.
pub use live::Snapshot;
pub use model::{Endpoint, EndpointRecord};
pub use store::Store;

pub(crate) use live::{LiveIndex, Syncer};
pub(crate) use model::StoredSecret;
pub(crate) use store::Updated;
