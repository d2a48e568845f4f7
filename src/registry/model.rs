//! What an endpoint is: the stored record, its validation, and the live form used to deliver.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use crate::event::filter::Pattern;
use crate::registry::error::RegistryError;
use crate::secure::seal::Sealer;
use crate::secure::sign::{Key, Scheme};

pub(crate) const MAX_HEADERS: usize = 20;
pub(crate) const MAX_DESCRIPTION: usize = 1024;

/// Headers webhookd sets itself; endpoint headers may not override them.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "user-agent",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

/// A signing secret as stored: sealed, with the time (ms) it stops signing, if rotated out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredSecret {
    pub sealed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// An endpoint as kept in Redis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub filters: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Newest first: the current secret, then any still overlapping after a rotation. For an
    /// ed25519 endpoint, its private keys (`whsk_`), sealed the same way.
    pub secrets: Vec<StoredSecret>,
    /// Absent from records written before endpoints had a choice: those are HMAC.
    #[serde(default)]
    pub signing: Scheme,
    /// Declared in `config.yaml`; the API may not change it.
    #[serde(default, rename = "static")]
    pub from_config: bool,
    /// A dotted path into the delivered body (`data.uid`): deliveries with the same scalar
    /// value there are attempted one at a time, in stream order (SPEC 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

impl EndpointRecord {
    /// For unit tests: a record for every event type (`*`) with a fresh secret sealed without
    /// a key (`Sealer::new(None)` opens it), created and updated at 1.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, tenant: &str, url: &str) -> EndpointRecord {
        let secret = crate::secure::sign::generate_secret();
        let sealed = crate::secure::seal::Sealer::new(None).seal(&secret, id);
        EndpointRecord::new(
            id.into(),
            tenant.into(),
            url.into(),
            vec!["*".into()],
            sealed,
            1,
        )
    }

    /// A record with one (already sealed) secret, enabled, without description, headers,
    /// rate limit or metadata, created and updated at `now_ms`.
    pub fn new(
        id: String,
        tenant: String,
        url: String,
        filters: Vec<String>,
        sealed_secret: String,
        now_ms: i64,
    ) -> Self {
        EndpointRecord {
            id,
            tenant,
            url,
            filters,
            description: String::new(),
            headers: BTreeMap::new(),
            rate_limit: None,
            disabled: false,
            disabled_reason: None,
            metadata: BTreeMap::new(),
            created_at: now_ms,
            updated_at: now_ms,
            secrets: vec![StoredSecret {
                sealed: sealed_secret,
                expires_at: None,
            }],
            signing: Scheme::HmacSha256,
            from_config: false,
            ordering_key: None,
        }
    }
}

/// The live endpoint the dispatcher delivers to; parsed once, shared by `Arc`.
#[derive(Debug)]
pub struct Endpoint {
    pub id: Arc<str>,
    pub tenant: Arc<str>,
    pub url: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Signing keys with their expiry (ms), current first.
    pub keys: Vec<(Key, Option<i64>)>,
    pub disabled: bool,
    pub rate_limit: Option<u32>,
    pub filters: Vec<Pattern>,
    /// The record's `updated_at`: an unchanged record reuses this live endpoint.
    pub updated_at: i64,
    /// Its `ordering_key`, split into segments.
    pub ordering: Option<Vec<Box<str>>>,
    /// Why this replica cannot deliver to it (a secret it cannot open, a URL it cannot
    /// parse): its deliveries are matched and parked, never dropped, until a replica that can
    /// deliver them pulls them.
    pub quarantined: Option<String>,
}

/// Segments of an ordering key path (validated when stored).
fn key_path(path: Option<&str>) -> Option<Vec<Box<str>>> {
    path.map(|p| p.split('.').map(Box::from).collect())
}

/// The longest `ordering_key` path: a 1 MB one was taken, and stored with every endpoint.
pub(crate) const MAX_KEY_PATH: usize = 256;

/// Whether `path` is an ordering key: 1–8 dot-separated segments of `[A-Za-z0-9_]+`.
pub(crate) fn valid_key_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    path.len() <= MAX_KEY_PATH
        && (1..=8).contains(&segments.len())
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// A record's filters, parsed (they were validated when stored).
fn patterns(filters: &[String]) -> Vec<Pattern> {
    filters
        .iter()
        .filter_map(|f| Pattern::parse(f).ok())
        .collect()
}

impl Endpoint {
    pub fn from_record(rec: &EndpointRecord, sealer: &Sealer) -> Result<Endpoint, RegistryError> {
        let url: Uri = rec
            .url
            .parse()
            .map_err(|_| RegistryError::Url(rec.url.clone()))?;
        let headers = parse_headers(&rec.headers)?;
        let mut keys = Vec::with_capacity(rec.secrets.len());
        for s in &rec.secrets {
            let secret = sealer.open(&s.sealed, &rec.id)?;
            let key = Key::parse(rec.signing, &secret)?;
            keys.push((key, s.expires_at));
        }
        if keys.is_empty() {
            return Err(RegistryError::NoSecret);
        }
        Ok(Endpoint {
            id: rec.id.as_str().into(),
            tenant: rec.tenant.as_str().into(),
            url,
            headers,
            keys,
            disabled: rec.disabled,
            rate_limit: rec.rate_limit,
            filters: patterns(&rec.filters),
            updated_at: rec.updated_at,
            ordering: key_path(rec.ordering_key.as_deref()),
            quarantined: None,
        })
    }

    /// The endpoint as matched but not deliverable here, for a record that does not decode.
    pub fn quarantined(rec: &EndpointRecord, reason: String) -> Endpoint {
        Endpoint {
            id: rec.id.as_str().into(),
            tenant: rec.tenant.as_str().into(),
            url: rec
                .url
                .parse()
                .unwrap_or_else(|_| Uri::from_static("https://quarantined.invalid/")),
            headers: Vec::new(),
            keys: Vec::new(),
            disabled: rec.disabled,
            rate_limit: rec.rate_limit,
            filters: patterns(&rec.filters),
            updated_at: rec.updated_at,
            ordering: key_path(rec.ordering_key.as_deref()),
            quarantined: Some(reason),
        }
    }

    /// Keys that still sign at `now_ms`: the current one and any within its overlap.
    pub fn active_keys(&self, now_ms: i64) -> impl Iterator<Item = &Key> {
        self.keys
            .iter()
            .enumerate()
            .filter(move |(i, (_, exp))| *i == 0 || exp.is_none_or(|e| e > now_ms))
            .map(|(_, (k, _))| k)
    }
}

pub(crate) fn parse_headers(
    map: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, RegistryError> {
    if map.len() > MAX_HEADERS {
        return Err(RegistryError::TooManyHeaders(MAX_HEADERS));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| RegistryError::HeaderName(k.clone()))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(RegistryError::ReservedHeader(k.clone()));
        }
        let value = HeaderValue::from_str(v).map_err(|_| RegistryError::HeaderValue(k.clone()))?;
        out.push((name, value));
    }
    Ok(out)
}

/// A fresh, time-ordered endpoint id.
pub(crate) fn new_endpoint_id() -> String {
    format!(
        "ep_{:012x}{:012x}",
        crate::support::clock::now_ms(),
        rand::random::<u64>() >> 16
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_builds_before_signing_read_as_hmac() {
        let old = r#"{"id":"ep_1","tenant":"t","url":"https://example.com/","filters":["*"],
            "created_at":1,"updated_at":1,"secrets":[{"sealed":"plain:whsec_x"}]}"#;
        let rec: EndpointRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec.signing, Scheme::HmacSha256);
        let ed = EndpointRecord {
            signing: Scheme::Ed25519,
            ..rec
        };
        let again: EndpointRecord =
            serde_json::from_str(&serde_json::to_string(&ed).unwrap()).unwrap();
        assert_eq!(again.signing, Scheme::Ed25519);
    }

    #[test]
    fn custom_headers_cannot_override_signing_headers() {
        let mut h = BTreeMap::new();
        h.insert("Webhook-Signature".to_string(), "x".to_string());
        assert!(parse_headers(&h).is_err());
        let mut ok = BTreeMap::new();
        ok.insert("x-team".to_string(), "mail".to_string());
        assert_eq!(parse_headers(&ok).unwrap().len(), 1);
    }
}
