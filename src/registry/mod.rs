//! Endpoints: the stored records, the live match index, and the config's static endpoints.

pub(crate) mod error;
pub(crate) mod live;
pub(crate) mod model;
pub(crate) mod statics;
pub(crate) mod store;

pub use error::RegistryError;
pub use live::{LiveIndex, Snapshot, Syncer};
pub use model::{Endpoint, EndpointRecord, StoredSecret};
pub use store::{Store, Updated};
