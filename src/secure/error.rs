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
    #[error("url targets a {0} address, which is not allowed")]
    UrlBlocked(&'static str),
}
