//! Small pieces every stage uses: time, durations, shutdown, backoff, batches, redaction, hex.

pub(crate) mod backoff;
pub(crate) mod batch;
pub mod clock;
pub mod duration;
pub(crate) mod hex;
pub(crate) mod hot;
pub(crate) mod https;
pub(crate) mod permits;
pub(crate) mod redact;
pub(crate) mod shutdown;
