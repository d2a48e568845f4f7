//! `config.yaml` plus `WEBHOOKD_*` environment overrides, validated once at start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::catalog::{check_filters, Catalog, EventTypeDef};
use crate::event::{valid_id, valid_tenant};
use crate::secure::sign::decode_secret;
use crate::secure::ssrf::{check_url, Guard};
use crate::support::duration::Dur;

/// The longest wait between probes (SPEC 5).
pub const MAX_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub redis: RedisConfig,
    pub stream: StreamConfig,
    pub dlq: DlqConfig,
    pub http: HttpConfig,
    pub delivery: DeliveryConfig,
    pub retry: RetryConfig,
    pub signing: SigningConfig,
    pub shutdown_grace: Dur,
    pub event_types: Vec<EventTypeDef>,
    pub endpoints: Vec<StaticEndpoint>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub key: String,
    pub group: String,
    /// Empty: `$POD_NAME`, else `$HOSTNAME`, else `webhookd-<random>`.
    pub consumer: String,
    pub batch: usize,
    pub block: Dur,
    pub claim_idle: Dur,
    pub max_event_bytes: usize,
    /// Entries the invalid stream keeps at most (the oldest go first).
    pub invalid_max_len: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Dead letters older than this are removed.
    pub retention: Dur,
    /// Dead letters kept per endpoint at most; the oldest go first.
    pub max_per_endpoint: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Empty: `/metrics` is served on `listen`.
    pub metrics_listen: String,
    pub admin_tokens: Vec<String>,
    pub max_body_bytes: usize,
    /// Requests per second per tenant token (a burst of the same size), per replica; 0: off.
    pub rate_limit: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub timeout: Dur,
    pub connect_timeout: Dur,
    pub max_in_flight: usize,
    pub per_endpoint_in_flight: usize,
    pub allowed_cidrs: Vec<IpNet>,
    pub allow_http: bool,
    pub disable_after: Dur,
    /// Consecutive failed attempts that open an endpoint's circuit; 0 turns the breaker off.
    pub breaker_failures: u32,
    /// The first wait before an open circuit's probe (then doubling, up to 5 minutes).
    pub breaker_probe: Dur,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub schedule: Vec<Dur>,
    /// Fraction of each delay added or removed at random (0.2 = ±20 %).
    pub jitter: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    pub rotation_overlap: Dur,
    /// Base64 of 32 bytes; encrypts endpoint secrets at rest.
    pub encryption_key: String,
    /// Earlier encryption keys: secrets sealed under them still open, and are sealed again
    /// under `encryption_key`.
    pub previous_encryption_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub filters: Vec<String>,
    pub secret: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis: RedisConfig::default(),
            stream: StreamConfig::default(),
            dlq: DlqConfig::default(),
            http: HttpConfig::default(),
            delivery: DeliveryConfig::default(),
            retry: RetryConfig::default(),
            signing: SigningConfig::default(),
            shutdown_grace: Dur::secs(20),
            event_types: Vec::new(),
            endpoints: Vec::new(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "webhookd:".into(),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            key: "events".into(),
            group: "webhookd".into(),
            consumer: String::new(),
            batch: 256,
            block: Dur::secs(1),
            claim_idle: Dur::secs(30),
            max_event_bytes: 256 * 1024,
            invalid_max_len: 100_000,
        }
    }
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            retention: Dur::secs(14 * 86_400),
            max_per_endpoint: 100_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".into(),
            metrics_listen: String::new(),
            admin_tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            rate_limit: 50,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Dur::secs(15),
            connect_timeout: Dur::secs(5),
            max_in_flight: 1024,
            per_endpoint_in_flight: 8,
            allowed_cidrs: Vec::new(),
            allow_http: false,
            disable_after: Dur::secs(5 * 86_400),
            breaker_failures: 20,
            breaker_probe: Dur::secs(5),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            schedule: [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Dur::secs)
                .collect(),
            jitter: 0.2,
        }
    }
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            rotation_overlap: Dur::secs(86_400),
            encryption_key: String::new(),
            previous_encryption_keys: Vec::new(),
        }
    }
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "http.admin_tokens",
    "delivery.allowed_cidrs",
    "retry.schedule",
    "signing.previous_encryption_keys",
];
/// Top-level scalar keys that `WEBHOOKD_<KEY>` may set.
const TOP_LEVEL_ENV_KEYS: &[&str] = &["shutdown_grace"];
/// `WEBHOOKD_*` variables that are not config keys.
const NOT_CONFIG_ENV: &[&str] = &["WEBHOOKD_CONFIG"];

impl Config {
    /// Loads a file (a missing default `config.yaml` means all defaults), applies the
    /// environment, and validates.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::from_yaml_and_env(&text, &path.display().to_string(), std::env::vars())
    }

    pub fn from_yaml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
                path: origin.to_string(),
                // The first line says what and where; the rest is a source snippet.
                message: e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string(),
            })?
        };
        if tree.is_null() {
            tree = Value::Object(Default::default());
        }
        if !tree.is_object() {
            return Err(ConfigError::Yaml {
                path: origin.to_string(),
                message: "the top level must be a mapping of sections".into(),
            });
        }
        apply_env(&mut tree, env)?;
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            key_err(&key, e.inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if redis::Client::open(self.redis.url.as_str()).is_err() {
            return Err(key_err(
                "redis.url",
                format!(
                    "`{}` is not a Redis URL (redis://host:port/db)",
                    crate::support::redact::url(&self.redis.url)
                ),
            ));
        }
        if self.stream.key.is_empty() {
            return Err(key_err("stream.key", "must not be empty"));
        }
        if self.stream.group.is_empty() {
            return Err(key_err("stream.group", "must not be empty"));
        }
        if self.stream.batch == 0 || self.stream.batch > 10_000 {
            return Err(key_err("stream.batch", "must be between 1 and 10000"));
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
        if self.http.max_body_bytes < 1024 {
            return Err(key_err("http.max_body_bytes", "must be at least 1024"));
        }
        if self.delivery.max_in_flight == 0 {
            return Err(key_err("delivery.max_in_flight", "must be at least 1"));
        }
        if self.delivery.per_endpoint_in_flight == 0 {
            return Err(key_err(
                "delivery.per_endpoint_in_flight",
                "must be at least 1",
            ));
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
            if !crate::event::valid_type(&def.event_type) {
                return Err(key_err(
                    &format!("event_types[{i}].type"),
                    format!(
                        "`{}` is not an event type (2+ dot-separated segments of [a-z0-9_])",
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

    /// Admin tokens too short to resist guessing (fewer than 16 characters), for a warning.
    pub fn weak_admin_tokens(&self) -> usize {
        self.http
            .admin_tokens
            .iter()
            .filter(|t| t.trim().len() < 16)
            .count()
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

    /// The consumer name of this replica in the group.
    pub fn consumer_name(&self) -> String {
        if !self.stream.consumer.is_empty() {
            return self.stream.consumer.clone();
        }
        for var in ["POD_NAME", "HOSTNAME"] {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    return v;
                }
            }
        }
        format!("webhookd-{:08x}", rand::random::<u32>())
    }
}

fn parse_addr(text: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| key_err(key, format!("`{text}` is not an address like 0.0.0.0:8080")))
}

/// Folds `WEBHOOKD_<SECTION>__<KEY>` and `WEBHOOKD_<KEY>` variables into the YAML tree.
fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("WEBHOOKD_") && !NOT_CONFIG_ENV.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let rest = var["WEBHOOKD_".len()..].to_ascii_lowercase();
        let path: Vec<&str> = rest.split("__").collect();
        match path.as_slice() {
            [section, key] => {
                let dotted = format!("{section}.{key}");
                let value = env_value(&raw, LIST_KEYS.contains(&dotted.as_str()));
                let root = tree.as_object_mut().expect("checked object");
                let sect = root
                    .entry(section.to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                let Some(map) = sect.as_object_mut() else {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{section}` is not a section"),
                    });
                };
                map.insert(key.to_string(), value);
            }
            [key] if TOP_LEVEL_ENV_KEYS.contains(key) => {
                let root = tree.as_object_mut().expect("checked object");
                root.insert(key.to_string(), env_value(&raw, false));
            }
            // Other WEBHOOKD_* names (e.g. Kubernetes service links) are not ours.
            _ => {}
        }
    }
    Ok(())
}

/// An environment string as the YAML scalar it stands for.
fn env_value(raw: &str, list: bool) -> Value {
    if list {
        return Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        );
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match raw.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => match raw.parse::<f64>() {
                Ok(f) if raw.contains('.') => Value::from(f),
                _ => Value::String(raw.to_string()),
            },
        },
    }
}

/// Validates a static endpoint of `config.yaml`; `Err((key, message))`.
fn validate_static(ep: &StaticEndpoint, config: &Config) -> Result<(), (&'static str, String)> {
    if !valid_id(&ep.id) {
        return Err(("id", "must be 1-128 characters of [A-Za-z0-9_.:-]".into()));
    }
    if !valid_tenant(&ep.tenant) {
        return Err(("tenant", "must be 1-64 characters of [A-Za-z0-9_.-]".into()));
    }
    let guard = Guard::new(config.delivery.allowed_cidrs.clone());
    check_url(&ep.url, config.delivery.allow_http, &guard).map_err(|m| ("url", m))?;
    let catalog = Catalog::new(&config.event_types);
    check_filters(&ep.filters, &catalog).map_err(|m| ("filters", m))?;
    decode_secret(&ep.secret).map_err(|e| ("secret", e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml_and_env(
            yaml,
            "test.yaml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn every_key_has_a_default() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.redis.key_prefix, "webhookd:");
        assert_eq!(c.stream.claim_idle, Dur::secs(30));
        assert_eq!(c.delivery.per_endpoint_in_flight, 8);
        assert_eq!(c.retry.schedule.len(), 7);
        assert_eq!(c.shutdown_grace, Dur::secs(20));
        assert!(!c.delivery.allow_http);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("http:\n  listenn: 0.0.0.0:1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http") && e.contains("listenn"), "{e}");
        let e = load("bogus: 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_durations_name_the_key() {
        let e = load("retry:\n  schedule: [5s, 5x]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry.schedule") && e.contains("5x"), "{e}");
        let e = load("shutdown_grace: soon\n", &[]).unwrap_err().to_string();
        assert!(e.contains("shutdown_grace"), "{e}");
    }

    #[test]
    fn environment_overrides_sections_lists_and_top_level_keys() {
        let c = load(
            "redis:\n  url: redis://a:1\n",
            &[
                ("WEBHOOKD_REDIS__URL", "redis://b:2"),
                (
                    "WEBHOOKD_HTTP__ADMIN_TOKENS",
                    "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
                ),
                ("WEBHOOKD_STREAM__BATCH", "17"),
                ("WEBHOOKD_DELIVERY__ALLOW_HTTP", "true"),
                ("WEBHOOKD_RETRY__SCHEDULE", "1s,2s"),
                ("WEBHOOKD_SHUTDOWN_GRACE", "3s"),
                ("WEBHOOKD_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
            ],
        )
        .unwrap();
        assert_eq!(c.redis.url, "redis://b:2");
        assert_eq!(c.http.admin_tokens.len(), 2);
        assert_eq!(c.stream.batch, 17);
        assert!(c.delivery.allow_http);
        assert_eq!(c.retry.schedule, vec![Dur::secs(1), Dur::secs(2)]);
        assert_eq!(c.shutdown_grace, Dur::secs(3));
    }

    #[test]
    fn unknown_environment_keys_are_named() {
        let e = load("", &[("WEBHOOKD_HTTP__LISTN", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn encryption_key_must_be_32_bytes_of_base64() {
        let e = load("signing:\n  encryption_key: abc\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("signing.encryption_key"), "{e}");
        let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let c = load(&format!("signing:\n  encryption_key: {ok}\n"), &[]).unwrap();
        assert_eq!(c.encryption_key_bytes().unwrap(), Some([7u8; 32]));
    }

    #[test]
    fn the_sample_config_is_valid() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"))
            .expect("config.yaml at the repository root");
        load(&text, &[]).unwrap();
    }
}
