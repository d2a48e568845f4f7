//! The registry's one error type: a record that cannot become a live endpoint, or a field a
//! write may not hold.

use crate::secure::SecureError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid url `{0}`")]
    Url(String),
    #[error("{0}")]
    Secret(#[from] SecureError),
    #[error("endpoint has no secret")]
    NoSecret,
    #[error("at most {0} custom headers")]
    TooManyHeaders(usize),
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    #[error("header `{0}` is set by webhookd and cannot be overridden")]
    ReservedHeader(String),
    #[error("header `{0}` has an invalid value")]
    HeaderValue(String),
}
