//! Sentinel mode's client: the sentinels to ask, with their credentials and TLS, and the
//! master's.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::IntoConnectionInfo;

use crate::db::conn::access::Access;

/// The client that asks the sentinels at `sentinel_urls` which server is `master`.
/// `rediss://` sentinel URLs mean TLS to the sentinels and to the master alike, verified
/// against `access`'s CA (or the system's roots); the sentinels' own credentials come from
/// their URLs, the master's from `access`.
pub(super) fn client(
    sentinel_urls: &[String],
    master: &str,
    access: &Access,
) -> redis::RedisResult<SentinelClient> {
    let sentinels = sentinel_urls
        .iter()
        .map(|u| u.as_str().into_connection_info())
        .collect::<redis::RedisResult<Vec<_>>>()?;
    // One scheme for all: the config check refuses a mixed list, naming `redis.url`.
    let tls =
        |info: &redis::ConnectionInfo| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    let mut builder = SentinelClientBuilder::new(
        sentinels.iter().map(|s| s.addr().clone()),
        master,
        SentinelServerType::Master,
    )?;
    let own = sentinels.iter().map(|s| s.redis_settings());
    if let Some(user) = own.clone().find_map(|s| s.username()) {
        builder = builder.set_client_to_sentinel_username(user);
    }
    if let Some(password) = own.clone().find_map(|s| s.password()) {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(user) = &access.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &access.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if sentinels.iter().all(tls) {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(pem) = &access.ca_pem {
            let roots = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            };
            builder = builder
                .set_client_to_sentinel_certificates(roots.clone())
                .set_client_to_redis_certificates(roots);
        }
    }
    builder.build()
}
