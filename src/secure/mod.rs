//! Security primitives: Standard Webhooks signatures (HMAC and Ed25519), secrets sealed at
//! rest, the SSRF guard.

pub mod ed25519;
pub(crate) mod error;
pub mod seal;
pub mod sign;
pub(crate) mod ssrf;

pub(crate) use error::SecureError;
