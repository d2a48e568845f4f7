//! What reaching Redis needs besides an address, and what connecting can fail with.

/// The database layer's own error: Redis commands fail with `redis::RedisError` as they are;
/// this is what connecting adds. The URL is shown with its password redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("redis.url `{url}` is invalid: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot connect to Redis at {url}: {source}")]
    Unreachable {
        url: String,
        source: redis::RedisError,
    },
    #[error("redis.ca_file `{path}`: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
}

/// What reaching Redis needs beyond its URL: the CA of a `rediss://` server that is not in the
/// system's roots, and ACL credentials that override the URL's `user:password@`.
#[derive(Clone, Default)]
pub struct Access {
    pub ca_pem: Option<Vec<u8>>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Access {
    /// From the `redis` section of the config (its checks have read the CA file once already).
    pub fn from_config(redis: &crate::config::RedisConfig) -> Result<Access, ConnectError> {
        let ca_pem = match redis.ca_file.as_str() {
            "" => None,
            path => Some(std::fs::read(path).map_err(|source| ConnectError::CaFile {
                path: path.to_string(),
                source,
            })?),
        };
        let set = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Access {
            ca_pem,
            username: set(&redis.username),
            password: set(&redis.password),
        })
    }
}
