//! The security layer's one error type: a secret that is not one, a sealed secret that does
//! not open, a URL webhookd will not call. Each message says what to fix.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    #[error("secret must start with `whsec_`")]
    SecretPrefix,
    #[error("secret must be `whsec_` + base64")]
    SecretBase64,
    #[error("secret must encode 24 to 64 bytes")]
    SecretLength,
    #[error("private key must be `whsk_` + base64 of a 32-byte Ed25519 seed (or of seed and public key, 64 bytes)")]
    PrivateKey,
    #[error("public key must be `whpk_` + base64 of a 32-byte Ed25519 public key")]
    PublicKey,
    #[error("stored secret is encrypted but signing.encryption_key is not set")]
    NoKey,
    #[error("stored secret cannot be decrypted: not sealed for this endpoint, or under none of signing.encryption_key and previous_encryption_keys")]
    Decrypt,
    #[error("stored secret is malformed")]
    Malformed,
    #[error("url is longer than {0} characters")]
    UrlTooLong(usize),
    #[error("`{0}` is not a valid URL")]
    UrlInvalid(String),
    #[error("url must use https (delivery.allow_http is off)")]
    UrlHttp,
    #[error("url must be an absolute https:// URL")]
    UrlNotHttps,
    #[error("url has no host")]
    UrlNoHost,
    #[error("url must not contain user-info (user:password@)")]
    UrlUserInfo,
    #[error("url targets {0} address, which is not allowed")]
    UrlBlocked(&'static str),
}
