//! Small pieces every stage uses: time, durations, shutdown, backoff, redaction.

pub mod backoff;
pub mod clock;
pub mod duration;
pub mod redact;
pub mod shutdown;
