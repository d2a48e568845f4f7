//! Endpoint secrets at rest: AES-256-GCM under `signing.encryption_key`, so a Redis dump
//! does not leak them.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const SEALED: &str = "v1:";
const PLAIN: &str = "plain:";

#[derive(Clone)]
pub struct Sealer {
    cipher: Option<Aes256Gcm>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("stored secret is encrypted but signing.encryption_key is not set")]
    NoKey,
    #[error("stored secret cannot be decrypted: wrong signing.encryption_key?")]
    Decrypt,
    #[error("stored secret is malformed")]
    Malformed,
}

impl Sealer {
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Sealer {
            cipher: key.map(|k| Aes256Gcm::new(&k.into())),
        }
    }

    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    pub fn seal(&self, secret: &str) -> String {
        match &self.cipher {
            Some(c) => {
                let nonce: [u8; 12] = rand::random();
                let ct = c
                    .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
                    .expect("AES-GCM encryption of a short secret");
                let mut blob = nonce.to_vec();
                blob.extend_from_slice(&ct);
                format!("{SEALED}{}", B64.encode(blob))
            }
            None => format!("{PLAIN}{secret}"),
        }
    }

    pub fn open(&self, stored: &str) -> Result<String, SealError> {
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return Ok(plain.to_string());
        }
        let b64 = stored.strip_prefix(SEALED).ok_or(SealError::Malformed)?;
        let cipher = self.cipher.as_ref().ok_or(SealError::NoKey)?;
        let blob = B64.decode(b64).map_err(|_| SealError::Malformed)?;
        if blob.len() < 12 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        let pt = cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SealError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_hide_the_text() {
        let s = Sealer::new(Some([9; 32]));
        let sealed = s.seal("whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(s.open(&sealed).unwrap(), "whsec_abc");
        assert!(matches!(
            Sealer::new(Some([8; 32])).open(&sealed),
            Err(SealError::Decrypt)
        ));
        assert!(matches!(
            Sealer::new(None).open(&sealed),
            Err(SealError::NoKey)
        ));
    }
}
