//! The configuration's shape (SPEC 8): every section and key with its default.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::event::catalog::EventTypeDef;
use crate::support::duration::Dur;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub redis: RedisConfig,
    pub stream: StreamConfig,
    pub dlq: DlqConfig,
    pub telemetry: TelemetryConfig,
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
    /// `standalone` (default), `cluster` or `sentinel`.
    pub mode: String,
    pub sentinel_master: String,
    /// Credentials for the data nodes; when set, they override the URL's `user:password@`.
    pub username: String,
    pub password: String,
    /// A PEM file of the CA that signed the server's certificate (`rediss://` only); empty:
    /// the system's roots.
    pub ca_file: String,
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
    /// Input streams (SPEC 1); this build reads one.
    pub shards: u32,
    /// How long an event id is remembered per tenant, so a second entry carrying it is not
    /// delivered again.
    pub dedup_window: Dur,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Dead letters older than this are removed.
    pub retention: Dur,
    /// Dead letters kept per endpoint at most; the oldest go first.
    pub max_per_endpoint: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP base URL (`http://otel-collector:4318`); spans go to `<it>/v1/traces`.
    /// Empty: no traces, and nothing of them is built.
    pub otlp_endpoint: String,
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
    /// Where users reach webhookd (`https://hooks.example.com`): portal links are absolute
    /// under it, and the portal's cookie is `Secure` when it is https. Empty: links are paths.
    pub public_url: String,
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
            telemetry: TelemetryConfig::default(),
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
            mode: "standalone".into(),
            sentinel_master: String::new(),
            username: String::new(),
            password: String::new(),
            ca_file: String::new(),
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
            shards: 1,
            dedup_window: Dur::secs(24 * 3600),
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
            public_url: String::new(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Dur::secs(15),
            connect_timeout: Dur::secs(5),
            max_in_flight: 1024,
            per_endpoint_in_flight: 16,
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

impl Config {
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
