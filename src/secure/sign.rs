//! Standard Webhooks signatures over `{id}.{timestamp}.{body}`: `v1,` HMAC-SHA256 with a
//! shared `whsec_` secret, or `v1a,` Ed25519 (`ed25519.rs`), as the endpoint's `signing` says.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secure::ed25519::{generate_private_key, signed_content, Ed25519Key};
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

/// How an endpoint's deliveries are signed (SPEC 4): chosen when it is created, never changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scheme {
    /// `v1,` entries: HMAC-SHA256 keyed with a `whsec_` secret both sides hold.
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `v1a,` entries: Ed25519; webhookd keeps the private key, receivers get the `whpk_` key.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Ed25519 => "ed25519",
        }
    }

    /// A fresh key as webhookd keeps it (sealed): a `whsec_` secret or a `whsk_` private key.
    pub fn generate(self) -> String {
        match self {
            Scheme::HmacSha256 => generate_secret(),
            Scheme::Ed25519 => generate_private_key(),
        }
    }

    /// What receivers are shown of a kept key: the shared secret itself, or the public key of
    /// a private one (never the private key).
    pub fn shown(self, kept: &str) -> Result<String, SecureError> {
        match self {
            Scheme::HmacSha256 => Ok(kept.to_string()),
            Scheme::Ed25519 => Ed25519Key::from_private(kept).map(|k| k.public_key()),
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key an endpoint signs with, parsed once when its live form is built.
#[derive(Debug)]
pub enum Key {
    Hmac(SigningKey),
    Ed25519(Ed25519Key),
}

impl Key {
    /// Parses a kept key (`whsec_` or `whsk_`) of `scheme`.
    pub fn parse(scheme: Scheme, kept: &str) -> Result<Key, SecureError> {
        match scheme {
            Scheme::HmacSha256 => SigningKey::from_secret(kept).map(Key::Hmac),
            Scheme::Ed25519 => Ed25519Key::from_private(kept).map(Key::Ed25519),
        }
    }
}

/// The `webhook-signature` value: one `v1,<sig>` or `v1a,<sig>` per key, space-separated.
pub fn signature_header<'k>(
    keys: impl IntoIterator<Item = &'k Key>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::with_capacity(96);
    // Ed25519 needs the signed content in one piece: built once, for every key that needs it.
    let mut content = None;
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match k {
            Key::Hmac(key) => {
                out.push_str("v1,");
                B64.encode_string(key.raw(msg_id, timestamp, body), &mut out);
            }
            Key::Ed25519(key) => {
                let content =
                    content.get_or_insert_with(|| signed_content(msg_id, timestamp, body));
                out.push_str("v1a,");
                B64.encode_string(key.sign(content), &mut out);
            }
        }
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
        let (a, b) = (generate_secret(), generate_secret());
        let keys = [a.as_str(), b.as_str()].map(|s| Key::parse(Scheme::HmacSha256, s).unwrap());
        let h = signature_header(&keys, "m", 1, b"x");
        assert_eq!(h.split(' ').count(), 2);
        for s in [a, b] {
            let k = SigningKey::from_secret(&s).unwrap();
            assert!(verify_header(&k, "m", 1, b"x", &h));
        }
    }

    #[test]
    fn ed25519_keys_sign_v1a_entries_that_their_public_keys_verify() {
        use crate::secure::ed25519::PublicKey;
        let (a, b) = (Scheme::Ed25519.generate(), Scheme::Ed25519.generate());
        assert!(a.starts_with("whsk_") && a != b);
        let keys = [a.as_str(), b.as_str()].map(|s| Key::parse(Scheme::Ed25519, s).unwrap());
        let h = signature_header(&keys, "m", 1, b"x");
        let entries: Vec<&str> = h.split(' ').collect();
        assert_eq!(entries.len(), 2);
        for (entry, kept) in entries.iter().zip([&a, &b]) {
            let shown = Scheme::Ed25519.shown(kept).unwrap();
            assert!(shown.starts_with("whpk_"));
            let public = PublicKey::parse(&shown).unwrap();
            assert!(entry.starts_with("v1a,") && public.verify_header("m", 1, b"x", entry));
        }
        assert!(Key::parse(Scheme::Ed25519, &generate_secret()).is_err());
        assert!(Key::parse(Scheme::HmacSha256, &a).is_err());
    }

    #[test]
    fn signing_reads_as_the_api_writes_it() {
        assert_eq!(
            serde_json::to_string(&Scheme::Ed25519).unwrap(),
            "\"ed25519\""
        );
        let hmac: Scheme = serde_json::from_str("\"hmac-sha256\"").unwrap();
        assert_eq!(
            (hmac, Scheme::default()),
            (Scheme::HmacSha256, Scheme::HmacSha256)
        );
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
