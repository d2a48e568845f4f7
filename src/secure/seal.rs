//! Endpoint secrets at rest: AES-256-GCM under `signing.encryption_key`, so a Redis dump
//! does not leak them, each bound to its endpoint (the endpoint id is the associated data, so
//! a sealed secret copied into another record does not open there).
//!
//! Formats: `v2:` + base64(nonce ‖ ciphertext) with the endpoint id as AAD (what this build
//! writes); `v1:` without AAD (older builds); `plain:` when no key is configured. Secrets open
//! under the current key or any of `signing.previous_encryption_keys`; `is_current` tells the
//! re-seal pass which ones to write again under the current key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::secure::error::SecureError;

const SEALED: &str = "v2:";
const SEALED_V1: &str = "v1:";
const PLAIN: &str = "plain:";

#[derive(Clone)]
pub struct Sealer {
    cipher: Option<Aes256Gcm>,
    previous: Vec<Aes256Gcm>,
}

impl Sealer {
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Sealer {
            cipher: key.map(|k| Aes256Gcm::new(&k.into())),
            previous: Vec::new(),
        }
    }

    /// Keys that still open secrets sealed before a key rotation.
    pub fn with_previous(self, keys: &[[u8; 32]]) -> Self {
        Sealer {
            previous: keys.iter().map(|k| Aes256Gcm::new(&(*k).into())).collect(),
            ..self
        }
    }

    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// Seals `secret` for the endpoint `endpoint_id`.
    pub fn seal(&self, secret: &str, endpoint_id: &str) -> String {
        match &self.cipher {
            Some(c) => {
                let nonce: [u8; 12] = rand::random();
                let payload = Payload {
                    msg: secret.as_bytes(),
                    aad: endpoint_id.as_bytes(),
                };
                let ct = c
                    .encrypt(Nonce::from_slice(&nonce), payload)
                    .expect("AES-GCM encryption of a short secret");
                let mut blob = nonce.to_vec();
                blob.extend_from_slice(&ct);
                format!("{SEALED}{}", B64.encode(blob))
            }
            None => format!("{PLAIN}{secret}"),
        }
    }

    pub fn open(&self, stored: &str, endpoint_id: &str) -> Result<String, SecureError> {
        self.open_checked(stored, endpoint_id).map(|(s, _)| s)
    }

    /// The secret, and whether it is stored as this sealer would store it now (sealed under
    /// the current key and bound to the endpoint, or in the clear only when there is no key).
    pub fn open_checked(
        &self,
        stored: &str,
        endpoint_id: &str,
    ) -> Result<(String, bool), SecureError> {
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return Ok((plain.to_string(), self.cipher.is_none()));
        }
        let (b64, aad) = if let Some(b) = stored.strip_prefix(SEALED) {
            (b, endpoint_id.as_bytes())
        } else if let Some(b) = stored.strip_prefix(SEALED_V1) {
            (b, &[][..])
        } else {
            return Err(SecureError::Malformed);
        };
        let current = self.cipher.as_ref().ok_or(SecureError::NoKey)?;
        let blob = B64.decode(b64).map_err(|_| SecureError::Malformed)?;
        if blob.len() < 12 {
            return Err(SecureError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        let v2 = stored.starts_with(SEALED);
        for (i, cipher) in std::iter::once(current).chain(&self.previous).enumerate() {
            let payload = Payload { msg: ct, aad };
            if let Ok(pt) = cipher.decrypt(Nonce::from_slice(nonce), payload) {
                let secret = String::from_utf8(pt).map_err(|_| SecureError::Malformed)?;
                return Ok((secret, i == 0 && v2));
            }
        }
        Err(SecureError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_hide_the_text() {
        let s = Sealer::new(Some([9; 32]));
        let sealed = s.seal("whsec_abc", "ep_1");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            s.open_checked(&sealed, "ep_1").unwrap(),
            ("whsec_abc".into(), true)
        );
        assert!(matches!(
            Sealer::new(Some([8; 32])).open(&sealed, "ep_1"),
            Err(SecureError::Decrypt)
        ));
        assert!(matches!(
            Sealer::new(None).open(&sealed, "ep_1"),
            Err(SecureError::NoKey)
        ));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_endpoint() {
        let s = Sealer::new(Some([9; 32]));
        let sealed = s.seal("whsec_abc", "ep_1");
        assert!(matches!(s.open(&sealed, "ep_2"), Err(SecureError::Decrypt)));
    }

    #[test]
    fn previous_keys_open_but_are_not_current() {
        let old = Sealer::new(Some([1; 32]));
        let sealed = old.seal("whsec_abc", "ep_1");
        let rotated = Sealer::new(Some([2; 32])).with_previous(&[[1; 32]]);
        assert_eq!(
            rotated.open_checked(&sealed, "ep_1").unwrap(),
            ("whsec_abc".into(), false)
        );
        let plain = Sealer::new(None).seal("whsec_abc", "ep_1");
        assert_eq!(
            rotated.open_checked(&plain, "ep_1").unwrap(),
            ("whsec_abc".into(), false),
            "a key is configured now: the clear text must be sealed"
        );
    }

    #[test]
    fn secrets_of_older_builds_without_aad_still_open() {
        let key = [7; 32];
        let c = Aes256Gcm::new(&key.into());
        let nonce = [3u8; 12];
        let ct = c
            .encrypt(Nonce::from_slice(&nonce), b"whsec_old".as_slice())
            .unwrap();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        let v1 = format!("v1:{}", B64.encode(blob));
        let s = Sealer::new(Some(key));
        assert_eq!(
            s.open_checked(&v1, "any").unwrap(),
            ("whsec_old".into(), false)
        );
    }
}
