//! Everything about sending one request: client, SSRF guard, signing, the attempt itself.

pub mod attempt;
pub mod client;
pub mod sign;
pub mod ssrf;
