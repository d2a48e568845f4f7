//! The mark that tells webhookd's own (operational) events from a producer's: an HMAC of the
//! entry's event, keyed by a random key kept in Redis. The `webhookd` service is reserved
//! (SPEC 2): an entry of that service without a valid mark is set aside as invalid, so a
//! producer cannot make webhookd speak in its own name.

use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::conn::Conn;
use crate::db::keys::Keys;

/// The stream entry field that carries the mark.
pub(crate) const FIELD: &str = "origin";

/// The key, read from Redis (made there by the first replica that needs it) and kept.
pub(crate) struct Mark {
    conn: Conn,
    key_name: String,
    key: Mutex<Option<Vec<u8>>>,
}

impl Mark {
    pub(crate) fn new(conn: Conn, keys: &Keys) -> Mark {
        Mark {
            conn,
            key_name: keys.notice_mark(),
            key: Mutex::new(None),
        }
    }

    /// The key as this replica last read it, if it has.
    pub(crate) fn cached(&self) -> Option<Vec<u8>> {
        self.key.lock().expect("mark key").clone()
    }

    /// Reads the key again (making it when Redis has none: a first start, or a Redis that
    /// lost its data), so every replica signs and checks with the same one.
    pub(crate) async fn reload(&self) -> redis::RedisResult<Vec<u8>> {
        let fresh: [u8; 32] = rand::random();
        let hex = crate::support::hex::encode(&fresh);
        let (key,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&self.key_name)
            .arg(hex)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&self.key_name)
            .query_async(&mut self.conn.clone())
            .await?;
        let key = key.into_bytes();
        *self.key.lock().expect("mark key") = Some(key.clone());
        Ok(key)
    }
}

/// The mark of an event's raw JSON under `key`.
pub(crate) fn sign(key: &[u8], raw: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(raw);
    crate::support::hex::encode(&mac.finalize().into_bytes())
}

/// Whether `mark` is the mark of `raw` under `key` (compared in constant time).
pub(crate) fn verify(key: &[u8], raw: &[u8], mark: &[u8]) -> bool {
    let Some(bytes) = decode_hex(mark) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(raw);
    mac.verify_slice(&bytes).is_ok()
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_verifies_only_its_own_event_under_its_own_key() {
        let m = sign(b"key", br#"{"id":"a"}"#);
        assert!(verify(b"key", br#"{"id":"a"}"#, m.as_bytes()));
        assert!(!verify(b"key", br#"{"id":"b"}"#, m.as_bytes()));
        assert!(!verify(b"other", br#"{"id":"a"}"#, m.as_bytes()));
        assert!(!verify(b"key", br#"{"id":"a"}"#, b"zz"));
    }
}
