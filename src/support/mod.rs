//! Small pieces every stage uses: time, durations, shutdown, backoff, redaction.

pub(crate) mod backoff;
pub mod clock;
pub mod duration;
pub(crate) mod redact;
pub(crate) mod shutdown;
