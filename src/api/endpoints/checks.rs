//! What every endpoint write must satisfy, and the lookups handlers share.

use std::time::Duration;

use crate::api::error::ApiError;
use crate::api::state::ApiState;
use crate::event::catalog::check_filters;
use crate::registry::model::{parse_headers, MAX_DESCRIPTION};
use crate::registry::EndpointRecord;
use crate::secure::sign::{decode_secret, Scheme};
use crate::secure::ssrf::{check_url, literal_ip};

/// How long registration waits for DNS before accepting a name it could not resolve (the
/// connect-time guard still applies to whatever it resolves to later).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_METADATA: usize = 50;
const MAX_RATE_LIMIT: u32 = 1_000_000;
const MAX_METADATA_KEY: usize = 128;
const MAX_METADATA_VALUE: usize = 1024;
/// A custom header's value, and all of them together (names and values): a value of 500 KB
/// was taken, and sent with every delivery.
const MAX_HEADER_VALUE: usize = 4096;
const MAX_HEADERS_TOTAL: usize = 8192;

/// Refuses (422) a hostname that resolves to any address the SSRF guard blocks. A name that
/// does not resolve now is accepted: the connect-time guard checks whatever it becomes.
pub(super) async fn check_target(state: &ApiState, raw: &str) -> Result<(), ApiError> {
    let guard = &state.inner.guard;
    let uri = check_url(raw, state.inner.allow_http, guard)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let host = uri.host().unwrap_or_default();
    if literal_ip(host).is_some() {
        return Ok(()); // check_url has judged the literal address.
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let resolved =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    if let Ok(Ok(addrs)) = resolved {
        for addr in addrs {
            if let Err(kind) = guard.check(addr.ip()) {
                // The rule, never the address: an internal address is itself worth hiding.
                return Err(ApiError::Invalid(format!(
                    "url host `{host}` resolves to {kind} address, which is not allowed \
                     (delivery.allowed_cidrs can allow internal ranges)"
                )));
            }
        }
    }
    Ok(())
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    decode_secret(secret)
        .map(|_| ())
        .map_err(|e| ApiError::Invalid(format!("`secret`: {e}")))
}

/// The key a new endpoint, or a rotation, signs with from now on, as kept (sealed): a supplied
/// `whsec_` secret once checked, else a fresh one of the scheme. An ed25519 key pair is always
/// generated, so that its private key is never anywhere but in webhookd.
pub(super) fn new_key(signing: Scheme, supplied: Option<String>) -> Result<String, ApiError> {
    match (signing, supplied) {
        (Scheme::HmacSha256, Some(secret)) => check_secret(&secret).map(|_| secret),
        (Scheme::Ed25519, Some(_)) => Err(ApiError::Invalid(
            "`secret` cannot be given for an ed25519 endpoint: webhookd generates its key pair \
             and shows its public key (`whpk_…`) in `secret`"
                .into(),
        )),
        (scheme, None) => Ok(scheme.generate()),
    }
}

/// Refuses (422) a change of `signing`: receivers hold a key of the scheme chosen at create.
pub(super) fn check_signing_kept(
    asked: Option<Scheme>,
    rec: &EndpointRecord,
) -> Result<(), ApiError> {
    match asked {
        Some(s) if s != rec.signing => Err(ApiError::Invalid(format!(
            "`signing` cannot change: endpoint `{}` signs with {}, chosen when it was created \
             (create a new endpoint to use {s})",
            rec.id, rec.signing
        ))),
        _ => Ok(()),
    }
}

/// Checks the fields every write must satisfy, whatever changed.
pub(super) fn check_fields(state: &ApiState, rec: &EndpointRecord) -> Result<(), ApiError> {
    check_filters(&rec.filters, &state.inner.catalog)
        .map_err(|e| ApiError::Invalid(format!("`filters`: {e}")))?;
    parse_headers(&rec.headers).map_err(|e| ApiError::Invalid(format!("`headers`: {e}")))?;
    if let Some((k, _)) = rec.headers.iter().find(|(_, v)| v.len() > MAX_HEADER_VALUE) {
        return Err(ApiError::Invalid(format!(
            "`headers.{k}` is longer than {MAX_HEADER_VALUE} bytes"
        )));
    }
    if rec
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        > MAX_HEADERS_TOTAL
    {
        return Err(ApiError::Invalid(format!(
            "`headers` take more than {MAX_HEADERS_TOTAL} bytes together (names and values)"
        )));
    }
    if rec.description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::Invalid(format!(
            "`description` is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    if rec.rate_limit.is_some_and(|r| r == 0 || r > MAX_RATE_LIMIT) {
        return Err(ApiError::Invalid(format!(
            "`rate_limit` must be an integer from 1 to {MAX_RATE_LIMIT} (per second) or null"
        )));
    }
    if rec
        .ordering_key
        .as_deref()
        .is_some_and(|k| !crate::registry::model::valid_key_path(k))
    {
        return Err(ApiError::Invalid(
            "`ordering_key` must be a dotted path of 1 to 8 segments of [A-Za-z0-9_], at most 256 characters, such as `data.uid`"
                .into(),
        ));
    }
    if rec.metadata.len() > MAX_METADATA {
        return Err(ApiError::Invalid(format!(
            "`metadata` has more than {MAX_METADATA} keys"
        )));
    }
    for (k, v) in &rec.metadata {
        if k.chars().count() > MAX_METADATA_KEY {
            return Err(ApiError::Invalid(format!(
                "`metadata` keys must be at most {MAX_METADATA_KEY} characters"
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE {
            return Err(ApiError::Invalid(format!(
                "`metadata.{k}` is longer than {MAX_METADATA_VALUE} characters"
            )));
        }
    }
    Ok(())
}

/// The tenant's endpoint `id`, or 404 (also when it belongs to another tenant).
pub(super) async fn load(
    state: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<EndpointRecord, ApiError> {
    match state.inner.store.get(id).await? {
        Some(rec) if rec.tenant == tenant => Ok(rec),
        _ => Err(ApiError::NotFound(format!("endpoint `{id}` not found"))),
    }
}

pub(super) fn refuse_static(rec: &EndpointRecord) -> Result<(), ApiError> {
    if rec.from_config {
        return Err(ApiError::Conflict(format!(
            "endpoint `{}` is declared in config.yaml (endpoints:); change it there \
             (the API may only enable it again: PATCH {{\"disabled\": false}})",
            rec.id
        )));
    }
    Ok(())
}

/// What the API shows of the endpoint's current key: its secret, or its public key.
pub(super) fn shown_secret(state: &ApiState, rec: &EndpointRecord) -> Result<String, ApiError> {
    let current = rec
        .secrets
        .first()
        .ok_or_else(|| ApiError::Internal(format!("endpoint `{}` has no secret", rec.id)))?;
    let kept = state
        .inner
        .sealer
        .open(&current.sealed, &rec.id)
        .map_err(|e| ApiError::Internal(format!("endpoint `{}`: {e}", rec.id)))?;
    shown(rec, &kept)
}

/// What the API shows of a key `rec` keeps (`kept`, in the clear).
pub(super) fn shown(rec: &EndpointRecord, kept: &str) -> Result<String, ApiError> {
    rec.signing
        .shown(kept)
        .map_err(|e| ApiError::Internal(format!("endpoint `{}`: {e}", rec.id)))
}

/// 409 for a change that found the endpoint changed by others at each of its tries.
pub(super) fn contended(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "endpoint `{id}` was changed by other requests at each try; send the change again"
    ))
}
