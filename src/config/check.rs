//! Validating a loaded configuration: every refusal names its key.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use base64::Engine;

use crate::config::error::{key_err, ConfigError};
use crate::config::model::{Config, StaticEndpoint};
use crate::event::catalog::{check_filters, Catalog, OPERATIONAL};
use crate::event::filter::RESERVED;
use crate::ids::{EndpointId, EventType, TenantId};
use crate::secure::sign::decode_secret;
use crate::secure::ssrf::{check_url, Guard};

/// The longest wait between probes (SPEC 5).
pub(crate) const MAX_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// `stream.shards` at most: each shard costs every replica a blocking connection.
const MAX_SHARDS: u32 = 256;
/// The most attempts in flight `delivery.max_in_flight` and `per_endpoint_in_flight` allow.
const MAX_IN_FLIGHT: usize = 100_000;

/// The path of a Redis URL (its database, `/N`), without a query.
fn db_path(url: &str) -> &str {
    let url = url.trim();
    let after = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after.find('/').map_or("", |i| &after[i..]);
    path.split('?').next().unwrap_or("")
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // In sentinel mode the URL lists the sentinels, separated by commas.
        for url in self.redis.url.split(',') {
            if redis::Client::open(url.trim()).is_err() {
                return Err(key_err(
                    "redis.url",
                    format!(
                        "`{}` is not a Redis URL (redis://host:port/db or rediss://)",
                        crate::support::redact::url(url.trim())
                    ),
                ));
            }
        }
        self.check_redis_access()?;
        if self.stream.key.is_empty() {
            return Err(key_err("stream.key", "must not be empty"));
        }
        if !(1..=MAX_SHARDS).contains(&self.stream.shards) {
            return Err(key_err("stream.shards", "must be from 1 to 256"));
        }
        let window = self.stream.dedup_window.get();
        if window < std::time::Duration::from_secs(1)
            || window > std::time::Duration::from_secs(30 * 86400)
        {
            return Err(key_err("stream.dedup_window", "must be from 1s to 30d"));
        }
        if self.stream.group.is_empty() {
            return Err(key_err("stream.group", "must not be empty"));
        }
        if self.stream.batch == 0 || self.stream.batch > 10_000 {
            return Err(key_err("stream.batch", "must be between 1 and 10000"));
        }
        let block = self.stream.block.get();
        // Redis reads `BLOCK 0` as "forever"; a long block holds shutdown and claims up.
        if block.is_zero() || block > std::time::Duration::from_secs(60) {
            return Err(key_err("stream.block", "must be above 0 and at most 60s"));
        }
        if self.stream.claim_idle.get().as_millis() < 1000 {
            return Err(key_err("stream.claim_idle", "must be at least 1s"));
        }
        if self.stream.invalid_max_len == 0 {
            return Err(key_err("stream.invalid_max_len", "must be at least 1"));
        }
        if self.dlq.max_per_endpoint == 0 {
            return Err(key_err("dlq.max_per_endpoint", "must be at least 1"));
        }
        if self.dlq.retention.get().is_zero() {
            return Err(key_err("dlq.retention", "must be above 0"));
        }
        if self.stream.max_event_bytes < 256 {
            return Err(key_err("stream.max_event_bytes", "must be at least 256"));
        }
        self.otlp_traces_url()?;
        parse_addr(&self.http.listen, "http.listen")?;
        if !self.http.metrics_listen.is_empty() {
            parse_addr(&self.http.metrics_listen, "http.metrics_listen")?;
        }
        if self.http.admin_tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(key_err(
                "http.admin_tokens",
                "an admin token must not be empty",
            ));
        }
        let public = self.http.public_url.as_str();
        if !public.is_empty()
            && (!(public.starts_with("https://") || public.starts_with("http://"))
                || public.contains(['?', '#', ' '])
                || public.len() < "http://x".len())
        {
            return Err(key_err(
                "http.public_url",
                format!("`{public}` is not an http(s) URL without query or fragment (e.g. https://hooks.example.com)"),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(key_err("http.max_body_bytes", "must be at least 1024"));
        }
        // Each attempt in flight is a connection: far past any file-descriptor limit, and
        // past what Tokio's semaphores hold, is a typo, not a setting.
        for (key, n) in [
            ("delivery.max_in_flight", self.delivery.max_in_flight),
            (
                "delivery.per_endpoint_in_flight",
                self.delivery.per_endpoint_in_flight,
            ),
        ] {
            if !(1..=MAX_IN_FLIGHT).contains(&n) {
                return Err(key_err(key, format!("must be 1 to {MAX_IN_FLIGHT}")));
            }
        }
        if self.delivery.breaker_probe.get().is_zero()
            || self.delivery.breaker_probe.get() > MAX_PROBE_INTERVAL
        {
            return Err(key_err(
                "delivery.breaker_probe",
                "must be above 0 and at most 5m",
            ));
        }
        if self.delivery.timeout.get().is_zero() {
            return Err(key_err("delivery.timeout", "must be above 0"));
        }
        if self.delivery.connect_timeout.get().is_zero() {
            return Err(key_err("delivery.connect_timeout", "must be above 0"));
        }
        if !(0.0..1.0).contains(&self.retry.jitter) {
            return Err(key_err(
                "retry.jitter",
                "must be a fraction from 0 up to (not including) 1",
            ));
        }
        if self.retry.schedule.len() > 50 {
            return Err(key_err("retry.schedule", "at most 50 delays"));
        }
        if !self.signing.encryption_key.is_empty() {
            self.encryption_key_bytes()?;
        }
        self.previous_key_bytes()?;
        let mut seen_types = BTreeSet::new();
        for (i, def) in self.event_types.iter().enumerate() {
            if let Err(e) = EventType::parse(&def.event_type) {
                return Err(key_err(
                    &format!("event_types[{i}].type"),
                    format!("`{}` is not an event type: it {e}", def.event_type),
                ));
            }
            let reserved = def.event_type.split('.').next() == Some(RESERVED);
            if reserved && !OPERATIONAL.iter().any(|(t, _)| *t == def.event_type) {
                return Err(key_err(
                    &format!("event_types[{i}].type"),
                    format!(
                        "`{}` is in the `{RESERVED}` service, which is reserved for webhookd's own events",
                        def.event_type
                    ),
                ));
            }
            if !seen_types.insert(def.event_type.as_str()) {
                return Err(key_err(
                    &format!("event_types[{i}].type"),
                    format!("`{}` is listed twice", def.event_type),
                ));
            }
        }
        let mut seen_ids = BTreeSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = |k: &str| format!("endpoints[{i}].{k}");
            validate_static(ep, self).map_err(|(k, m)| key_err(&at(k), m))?;
            if !seen_ids.insert(ep.id.as_str()) {
                return Err(key_err(&at("id"), format!("`{}` is used twice", ep.id)));
            }
        }
        Ok(())
    }

    /// The Redis deployment: its mode, and what TLS and ACL need.
    fn check_redis_access(&self) -> Result<(), ConfigError> {
        let r = &self.redis;
        let several = r.url.contains(',');
        match r.mode.as_str() {
            "standalone" if several => {
                return Err(key_err(
                    "redis.url",
                    "lists several addresses, which standalone mode cannot use: set redis.mode \
                     to cluster (the nodes) or sentinel (the sentinels), or give one URL",
                ))
            }
            "standalone" if !r.sentinel_master.is_empty() => {
                return Err(key_err(
                    "redis.sentinel_master",
                    "is set, but redis.mode is standalone: set redis.mode: sentinel (and list \
                     the sentinels in redis.url), or remove it",
                ))
            }
            "standalone" => {}
            "sentinel" if r.sentinel_master.is_empty() => {
                return Err(key_err(
                    "redis.sentinel_master",
                    "names the master the sentinels watch; it must be set in sentinel mode",
                ))
            }
            "sentinel" => {}
            "cluster"
                if r.url
                    .split(',')
                    .any(|u| !matches!(db_path(u), "" | "/" | "/0")) =>
            {
                return Err(key_err(
                    "redis.url",
                    "names a database other than 0, which Redis Cluster does not have",
                ))
            }
            "cluster" => {}
            other => {
                return Err(key_err(
                    "redis.mode",
                    format!("`{other}` is not one of standalone, cluster, sentinel"),
                ))
            }
        }
        let tls: Vec<bool> = r
            .url
            .split(',')
            .map(|u| u.trim().starts_with("rediss://"))
            .collect();
        if tls.contains(&true) && tls.contains(&false) {
            return Err(key_err(
                "redis.url",
                "mixes redis:// and rediss:// addresses; use one scheme for all",
            ));
        }
        if !r.username.is_empty() && r.password.is_empty() {
            return Err(key_err("redis.username", "is set without redis.password"));
        }
        if !r.ca_file.is_empty() {
            if !r.url.starts_with("rediss://") {
                return Err(key_err(
                    "redis.ca_file",
                    "is set, but redis.url is not a rediss:// (TLS) URL",
                ));
            }
            let pem = std::fs::read_to_string(&r.ca_file).map_err(|e| {
                key_err("redis.ca_file", format!("cannot read `{}`: {e}", r.ca_file))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(key_err(
                    "redis.ca_file",
                    format!("`{}` holds no PEM certificate", r.ca_file),
                ));
            }
        }
        Ok(())
    }

    /// Admin tokens too short to resist guessing (fewer than 16 characters), for a warning.
    pub fn weak_admin_tokens(&self) -> usize {
        self.http
            .admin_tokens
            .iter()
            .filter(|t| t.trim().len() < 16)
            .count()
    }

    /// Where spans are posted: `telemetry.otlp_endpoint` + `/v1/traces` (the OTLP/HTTP
    /// convention for a base URL); `None` when traces are off.
    pub fn otlp_traces_url(&self) -> Result<Option<http::Uri>, ConfigError> {
        let base = self.telemetry.otlp_endpoint.trim();
        if base.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| {
            key_err(
                "telemetry.otlp_endpoint",
                format!(
                    "`{}` {why} (e.g. http://otel-collector:4318; spans go to <it>/v1/traces)",
                    crate::support::redact::url(base)
                ),
            )
        };
        let url: http::Uri = format!("{}/v1/traces", base.trim_end_matches('/'))
            .parse()
            .map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(bad("is not an http:// or https:// URL"));
        }
        match url.authority() {
            Some(a) if a.as_str().contains('@') => Err(bad("must not carry user-info")),
            Some(a) if !a.host().is_empty() => Ok(()),
            _ => Err(bad("has no host")),
        }?;
        if base.contains(['?', '#']) {
            return Err(bad("must not carry a query or fragment"));
        }
        Ok(Some(url))
    }

    /// The 32-byte key that encrypts endpoint secrets at rest, if configured.
    /// `signing.previous_encryption_keys`, decoded.
    pub fn previous_key_bytes(&self) -> Result<Vec<[u8; 32]>, ConfigError> {
        self.signing
            .previous_encryption_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .ok()
                    .and_then(|raw| <[u8; 32]>::try_from(raw).ok());
                raw.ok_or_else(|| {
                    key_err(
                        &format!("signing.previous_encryption_keys[{i}]"),
                        "must be base64 of exactly 32 bytes",
                    )
                })
            })
            .collect()
    }

    pub fn encryption_key_bytes(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        if self.signing.encryption_key.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.signing.encryption_key.trim())
            .map_err(|_| key_err("signing.encryption_key", "must be base64"))?;
        let key: [u8; 32] = raw.try_into().map_err(|_| {
            key_err(
                "signing.encryption_key",
                "must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)",
            )
        })?;
        Ok(Some(key))
    }
}

fn parse_addr(text: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| key_err(key, format!("`{text}` is not an address like 0.0.0.0:8080")))
}

/// Validates a static endpoint of `config.yaml`; `Err((key, message))`.
fn validate_static(ep: &StaticEndpoint, config: &Config) -> Result<(), (&'static str, String)> {
    EndpointId::parse(&ep.id).map_err(|e| ("id", e.to_string()))?;
    TenantId::parse(&ep.tenant).map_err(|e| ("tenant", e.to_string()))?;
    let guard = Guard::new(config.delivery.allowed_cidrs.clone());
    check_url(&ep.url, config.delivery.allow_http, &guard).map_err(|e| ("url", e.to_string()))?;
    let catalog = Catalog::new(&config.event_types);
    check_filters(&ep.filters, &catalog).map_err(|m| ("filters", m))?;
    decode_secret(&ep.secret).map_err(|e| ("secret", e.to_string()))?;
    Ok(())
}
