//! Standard Webhooks v1 signatures: HMAC-SHA256 over `{id}.{timestamp}.{body}`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secure::error::SecureError;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;

/// A keyed HMAC state, built once per secret and cloned per signature.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// Parses a `whsec_` secret (24–64 bytes once decoded).
    pub fn from_secret(secret: &str) -> Result<SigningKey, SecureError> {
        let key = decode_secret(secret)?;
        Ok(SigningKey {
            mac: HmacSha256::new_from_slice(&key).expect("HMAC takes any key length"),
        })
    }

    /// The base64 signature (without `v1,`).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        B64.encode(self.raw(msg_id, timestamp, body))
    }

    fn raw(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of one base64 signature.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], sig_b64: &str) -> bool {
        let Ok(given) = B64.decode(sig_b64) else {
            return false;
        };
        let want = self.raw(msg_id, timestamp, body);
        given.len() == want.len() && bool::from(want.ct_eq(&given))
    }
}

/// The raw key bytes of a `whsec_` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecureError> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecureError::SecretPrefix)?;
    let key = B64.decode(b64).map_err(|_| SecureError::SecretBase64)?;
    if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
        return Err(SecureError::SecretLength);
    }
    Ok(key)
}

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The `webhook-signature` value: one `v1,<sig>` per key, space-separated.
pub fn signature_header<'k>(
    keys: impl IntoIterator<Item = &'k SigningKey>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::with_capacity(96);
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&k.sign(msg_id, timestamp, body));
    }
    out
}

/// True when any `v1,` entry of a signature header verifies with the key.
pub fn verify_header(
    key: &SigningKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| key.verify(msg_id, timestamp, body, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let k = SigningKey::from_secret(SPEC_SECRET).unwrap();
        assert_eq!(k.sign(SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()), SPEC_SIG);
        assert!(verify_header(
            &k,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY.as_bytes(),
            &format!("v1,{SPEC_SIG}")
        ));
        assert!(!verify_header(
            &k,
            SPEC_ID,
            SPEC_TS + 1,
            SPEC_BODY.as_bytes(),
            &format!("v1,{SPEC_SIG}")
        ));
    }

    #[test]
    fn rotation_sends_one_entry_per_key() {
        let a = SigningKey::from_secret(&generate_secret()).unwrap();
        let b = SigningKey::from_secret(&generate_secret()).unwrap();
        let h = signature_header([&a, &b], "m", 1, b"x");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify_header(&a, "m", 1, b"x", &h) && verify_header(&b, "m", 1, b"x", &h));
    }

    #[test]
    fn secrets_outside_24_to_64_bytes_are_refused() {
        let short = format!("whsec_{}", B64.encode([1u8; 23]));
        let long = format!("whsec_{}", B64.encode([1u8; 65]));
        assert_eq!(decode_secret(&short), Err(SecureError::SecretLength));
        assert_eq!(decode_secret(&long), Err(SecureError::SecretLength));
        assert_eq!(decode_secret("abc"), Err(SecureError::SecretPrefix));
        assert_eq!(decode_secret("whsec_!!"), Err(SecureError::SecretBase64));
        assert!(decode_secret(&generate_secret()).is_ok());
    }
}
