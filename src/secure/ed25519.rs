//! Standard Webhooks asymmetric signatures (`v1a`): Ed25519 over `{id}.{timestamp}.{body}`.
//!
//! webhookd generates the private key (`whsk_` + base64 of its 32-byte seed), keeps it sealed at
//! rest like an HMAC secret and never shows it; receivers get the public key (`whpk_` + base64
//! of its 32 bytes), which is all a verifier needs, and which cannot sign.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::secure::error::SecureError;

pub const PRIVATE_PREFIX: &str = "whsk_";
pub const PUBLIC_PREFIX: &str = "whpk_";
const SEED: usize = 32;
/// libsodium's form of a private key, the seed followed by its public key; taken too, so a
/// key made by another Standard Webhooks tool works with `webhookd sign`.
const SEED_AND_PUBLIC: usize = 64;
const PUBLIC: usize = 32;

/// An Ed25519 key pair, expanded from its seed once (when the live endpoint is built) and
/// kept for every signature.
pub struct Ed25519Key {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Key(***)")
    }
}

impl Ed25519Key {
    /// Parses a `whsk_` private key: base64 of the 32-byte seed, or of seed ‖ public key.
    pub fn from_private(private: &str) -> Result<Ed25519Key, SecureError> {
        let bytes = private
            .strip_prefix(PRIVATE_PREFIX)
            .and_then(|b64| B64.decode(b64).ok())
            .ok_or(SecureError::PrivateKey)?;
        let pair = match bytes.len() {
            SEED => Ed25519KeyPair::from_seed_unchecked(&bytes),
            SEED_AND_PUBLIC => {
                Ed25519KeyPair::from_seed_and_public_key(&bytes[..SEED], &bytes[SEED..])
            }
            _ => return Err(SecureError::PrivateKey),
        }
        .map_err(|_| SecureError::PrivateKey)?;
        Ok(Ed25519Key { pair })
    }

    /// `whpk_` + base64 of the public key.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}{}",
            B64.encode(self.pair.public_key().as_ref())
        )
    }

    /// The raw 64-byte signature of `content`, the whole signed content: Ed25519 hashes its
    /// message twice, so it cannot be fed in pieces as HMAC is.
    pub fn sign(&self, content: &[u8]) -> impl AsRef<[u8]> {
        self.pair.sign(content)
    }
}

/// A fresh private key: `whsk_` + base64 of a 32-byte seed from the OS's random source.
pub fn generate_private_key() -> String {
    let mut seed = [0u8; SEED];
    SystemRandom::new()
        .fill(&mut seed)
        .expect("the OS random source answers");
    format!("{PRIVATE_PREFIX}{}", B64.encode(seed))
}

/// What a receiver verifies with: the 32 bytes of a `whpk_` public key.
pub struct PublicKey {
    bytes: [u8; PUBLIC],
}

impl PublicKey {
    pub fn parse(public: &str) -> Result<PublicKey, SecureError> {
        public
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(|b64| B64.decode(b64).ok())
            .and_then(|b| <[u8; PUBLIC]>::try_from(b).ok())
            .map(|bytes| PublicKey { bytes })
            .ok_or(SecureError::PublicKey)
    }

    /// True when any `v1a,` entry of a signature header verifies with this key.
    pub fn verify_header(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let content = signed_content(msg_id, timestamp, body);
        let key = UnparsedPublicKey::new(&ED25519, &self.bytes);
        header
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1a,"))
            .filter_map(|sig| B64.decode(sig).ok())
            .any(|sig| key.verify(&content, &sig).is_ok())
    }
}

/// `{id}.{timestamp}.{body}`: what every Standard Webhooks signature covers.
pub(crate) fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(ts.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8032, section 7.1, TEST 2 (a one-byte message).
    const RFC_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                           085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn matches_the_rfc_8032_test_vector() {
        let private = format!("whsk_{}", B64.encode(hex(RFC_SEED)));
        let key = Ed25519Key::from_private(&private).unwrap();
        assert_eq!(key.sign(&[0x72]).as_ref(), hex(RFC_SIG).as_slice());
        assert_eq!(
            key.public_key(),
            format!("whpk_{}", B64.encode(hex(RFC_PUBLIC)))
        );
        // libsodium's 64-byte form of the same key, and one whose public half is not its own.
        let long = format!(
            "whsk_{}",
            B64.encode([hex(RFC_SEED), hex(RFC_PUBLIC)].concat())
        );
        assert_eq!(
            Ed25519Key::from_private(&long).unwrap().public_key(),
            key.public_key()
        );
        let mismatched = format!("whsk_{}", B64.encode([hex(RFC_SEED), vec![9; 32]].concat()));
        assert!(Ed25519Key::from_private(&mismatched).is_err());
    }

    #[test]
    fn a_header_verifies_with_the_public_key_and_only_over_its_content() {
        let key = Ed25519Key::from_private(&generate_private_key()).unwrap();
        let public = PublicKey::parse(&key.public_key()).unwrap();
        let sig = B64.encode(key.sign(&signed_content("m", 1, b"x")));
        let header = format!("v1,AAAA v1a,{sig}");
        assert!(public.verify_header("m", 1, b"x", &header));
        assert!(!public.verify_header("m", 2, b"x", &header));
        assert!(!public.verify_header("m", 1, b"y", &header));
        assert!(!public.verify_header("m", 1, b"x", &format!("v1,{sig}")));
        let other = Ed25519Key::from_private(&generate_private_key()).unwrap();
        assert!(!PublicKey::parse(&other.public_key())
            .unwrap()
            .verify_header("m", 1, b"x", &header));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "whsk_",
            "whsec_AAAA",
            "whsk_!!",
            &format!("whsk_{}", B64.encode([1; 31])),
        ] {
            assert_eq!(
                Ed25519Key::from_private(bad).unwrap_err(),
                SecureError::PrivateKey,
                "{bad}"
            );
        }
        let short = format!("whpk_{}", B64.encode([1; 31]));
        for bad in ["whpk_", "whsk_AAAA", short.as_str()] {
            assert!(PublicKey::parse(bad).is_err(), "{bad}");
        }
    }
}
