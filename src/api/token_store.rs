//! Tenant tokens in Redis: stored by their SHA-256 digest, looked up by it, and their use
//! noted at most once a minute per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::support::clock::now_ms;

/// How often a token's `last_used_at` is written, at most, per replica.
const USED_EVERY: Duration = Duration::from_secs(60);
/// Tokens whose last write this replica remembers; past it the memory starts afresh.
const USED_MEMORY: usize = 10_000;

/// What a token's digest maps to in `keys.tokens()`.
#[derive(Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) tenant: String,
    pub(crate) created_at: String,
    /// Absent on tokens made before ids existed: derived from the digest then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// Unix ms; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<i64>,
}

impl TokenRecord {
    pub(crate) fn id(&self, digest_hex: &str) -> String {
        self.id.clone().unwrap_or_else(|| derived_id(digest_hex))
    }

    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The id of a token made before ids existed.
/// The SHA-256 digest a token is stored and looked up by.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn derived_id(digest_hex: &str) -> String {
    format!("tok_{}", &digest_hex[..16.min(digest_hex.len())])
}

pub(crate) use crate::support::hex::encode as hex;

/// Replica-local memory of when each token's use was last written.
#[derive(Default)]
pub(crate) struct UsedMemory(Mutex<HashMap<[u8; 32], Instant>>);

impl UsedMemory {
    /// Whether this use should be written now.
    fn due(&self, digest: &[u8; 32]) -> bool {
        let mut seen = self.0.lock().expect("token use memory");
        if seen.len() >= USED_MEMORY {
            seen.clear();
        }
        match seen.get(digest) {
            Some(at) if at.elapsed() < USED_EVERY => false,
            _ => {
                seen.insert(*digest, Instant::now());
                true
            }
        }
    }
}

/// The tenant a token (given as its SHA-256 digest) belongs to, if it is one of ours and has
/// not expired.
pub(super) async fn tenant_of(
    conn: &Conn,
    keys: &Keys,
    used: &UsedMemory,
    digest: &[u8; 32],
) -> redis::RedisResult<Option<String>> {
    let digest_hex = hex(digest);
    let Some(rec) = record(conn, keys, &digest_hex).await? else {
        return Ok(None);
    };
    let now = now_ms();
    if rec.expired(now) {
        return Ok(None);
    }
    if used.due(digest) {
        // Best effort: a failed write only leaves last_used_at older.
        let _ = redis::cmd("HSET")
            .arg(keys.tokens_used())
            .arg(&digest_hex)
            .arg(now)
            .query_async::<()>(&mut conn.clone())
            .await;
    }
    Ok(Some(rec.tenant))
}

/// The record of the token with this digest (hex), if it exists, expired or not.
pub(crate) async fn record(
    conn: &Conn,
    keys: &Keys,
    digest_hex: &str,
) -> redis::RedisResult<Option<TokenRecord>> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(keys.tokens())
        .arg(digest_hex)
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str::<TokenRecord>(&r).ok()))
}

/// Indexes tokens made before ids and per-tenant indexes existed (idempotent; run at start).
pub(crate) async fn migrate(conn: &Conn, keys: &Keys) -> redis::RedisResult<usize> {
    let mut cursor = 0u64;
    let mut indexed = 0;
    loop {
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(keys.tokens())
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn.clone())
            .await?;
        let mut pipe = redis::pipe();
        for (digest, raw) in &pairs {
            let Ok(rec) = serde_json::from_str::<TokenRecord>(raw) else {
                continue;
            };
            if rec.id.is_none() {
                pipe.hset_nx(keys.tenant_tokens(&rec.tenant), derived_id(digest), digest)
                    .ignore();
                indexed += 1;
            }
        }
        if pipe.cmd_iter().next().is_some() {
            pipe.query_async::<()>(&mut conn.clone()).await?;
        }
        if next == 0 {
            return Ok(indexed);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_records_read_with_a_derived_id_and_no_expiry() {
        let rec: TokenRecord =
            serde_json::from_str(r#"{"tenant":"t","created_at":"2026-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(rec.id("0123456789abcdef0123"), "tok_0123456789abcdef");
        assert!(!rec.expired(i64::MAX));
    }

    #[test]
    fn a_token_expires_at_its_time() {
        let rec = TokenRecord {
            tenant: "t".into(),
            created_at: String::new(),
            id: Some("tok_1".into()),
            expires_at: Some(1_000),
        };
        assert!(!rec.expired(999));
        assert!(rec.expired(1_000));
    }
}
