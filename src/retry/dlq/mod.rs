//! The dead-letter streams: deliveries whose schedule ran out, listed, replayed and purged.
//! One stream per input-stream shard (`sharded`), each a `stream::LetterStream`.

mod letter;
mod scan;
mod sharded;
mod stream;
mod tenant_index;

pub use letter::{not_a_letter_id, valid_letter_id, valid_stream_id, DeadLetter, Selector};
pub use scan::Replayed;
pub use sharded::Dlq;
pub use stream::Page;
