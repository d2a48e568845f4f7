//! Security primitives: Standard Webhooks signatures, secrets sealed at rest, the SSRF guard.

pub(crate) mod error;
pub mod seal;
pub mod sign;
pub(crate) mod ssrf;

pub(crate) use error::SecureError;
