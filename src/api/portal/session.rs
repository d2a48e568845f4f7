//! Portal links and sessions in Redis (SPEC 6a). A link's token is used once: exchanging it
//! deletes it and makes a session, whose id travels only in an HttpOnly cookie. Both are kept
//! by the SHA-256 digest of their secret, like tenant tokens, and expire on their own.

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::api::state::Inner;
use crate::api::token_store::{self, digest, hex};
use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::support::clock::now_ms;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "webhookd_portal";
/// The header every change made from the portal carries.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The session id the request's cookie carries, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// A change must carry the session's CSRF token (compared in constant time).
pub(crate) fn csrf_checked(headers: &HeaderMap, session: &Session) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if sent.ct_eq(session.csrf.as_bytes()).unwrap_u8() == 1 {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a change from the portal needs the page's CSRF token".into(),
        ))
    }
}

/// What a link grants, and then its session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The tenant whose portal it opens; `None`: the operator view.
    pub(crate) tenant: Option<String>,
    pub(crate) read_only: bool,
    /// Unix ms the session ends (the link's own end is the same).
    pub(crate) expires_at: i64,
    /// The SHA-256 digest (hex) of the bearer token that minted the link. Once that token is
    /// revoked or expired (or, for an admin token, gone from the config), the link no longer
    /// opens and its session answers nothing. Absent in links made before it was kept:
    /// those last their own time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) minted_by: Option<String>,
}

/// Whether the token that minted `grant` may still act for it.
async fn minter_live(inner: &Inner, grant: &Grant) -> redis::RedisResult<bool> {
    let Some(minter) = &grant.minted_by else {
        return Ok(true);
    };
    if inner.admin_digests.iter().any(|d| hex(d) == *minter) {
        return Ok(true);
    }
    let rec = token_store::record(&inner.conn, &inner.keys, minter).await?;
    Ok(rec.is_some_and(|r| !r.expired(now_ms())))
}

/// A live session: its grant and the token every change must carry (CSRF).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) grant: Grant,
    pub(crate) csrf: String,
}

/// A fresh secret: `prefix` + 32 random bytes, base64url.
fn secret(prefix: &str) -> String {
    use base64::Engine;
    let raw: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// Stores a one-time link for `grant`; answers its token.
/// Unused links one token may have at once: minting was bounded only by the rate limit
/// times the longest ttl (some 30 million links in 7 days from one tenant token).
pub(crate) const MAX_LINKS_PER_TOKEN: u64 = 1000;

/// A new link for `grant`, or `None` when its minter has `MAX_LINKS_PER_TOKEN` unused ones.
pub(crate) async fn mint(
    conn: &Conn,
    keys: &Keys,
    grant: &Grant,
) -> redis::RedisResult<Option<String>> {
    let now = now_ms();
    let mut c = conn.clone();
    let minted = grant.minted_by.as_deref().map(|m| keys.portal_links_of(m));
    if let Some(minted) = &minted {
        let (held,): (u64,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(minted)
            .arg("-inf")
            .arg(now)
            .ignore()
            .zcard(minted)
            .query_async(&mut c)
            .await?;
        if held >= MAX_LINKS_PER_TOKEN {
            return Ok(None);
        }
    }
    let token = secret("wpl_");
    let link = hex(&digest(&token));
    let ttl = (grant.expires_at - now).max(1);
    // The link and its place in its minter's count, in one round trip.
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.portal_link(&link))
        .arg(serde_json::to_string(grant).expect("a grant serializes"))
        .arg("PX")
        .arg(ttl)
        .ignore();
    if let Some(minted) = &minted {
        // Kept as long as its latest link: the set never outlives what it counts.
        pipe.zadd(minted, &link, grant.expires_at)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(minted)
            .arg(grant.expires_at)
            .arg("GT")
            .ignore()
            .cmd("PEXPIREAT")
            .arg(minted)
            .arg(grant.expires_at)
            .arg("NX")
            .ignore();
    }
    let _: () = pipe.query_async(&mut c).await?;
    Ok(Some(token))
}

/// Uses a link: answers the new session's id and the session, or `None` when the link is
/// unknown, expired or already used. Of two exchanges racing for one link, one wins (the
/// one whose `DEL` removed it).
pub(crate) async fn exchange(
    inner: &Inner,
    token: &str,
) -> redis::RedisResult<Option<(String, Session)>> {
    let keys = &inner.keys;
    let key = keys.portal_link(&hex(&digest(token)));
    let mut c = inner.conn.clone();
    let raw: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut c).await?;
    let Some(grant) = raw.and_then(|r| serde_json::from_str::<Grant>(&r).ok()) else {
        return Ok(None);
    };
    let removed: u32 = redis::cmd("DEL").arg(&key).query_async(&mut c).await?;
    if let (1, Some(minter)) = (removed, grant.minted_by.as_deref()) {
        let _: () = redis::cmd("ZREM")
            .arg(keys.portal_links_of(minter))
            .arg(hex(&digest(token)))
            .query_async(&mut c)
            .await?;
    }
    if removed == 0 || grant.expires_at <= now_ms() || !minter_live(inner, &grant).await? {
        return Ok(None);
    }
    let id = secret("wps_");
    let session = Session {
        grant,
        csrf: secret(""),
    };
    let _: () = redis::cmd("SET")
        .arg(keys.portal_session(&hex(&digest(&id))))
        .arg(serde_json::to_string(&session).expect("a session serializes"))
        .arg("PX")
        .arg((session.grant.expires_at - now_ms()).max(1))
        .query_async(&mut c)
        .await?;
    Ok(Some((id, session)))
}

/// The live session a cookie names, if any: not expired, and its link's minter still valid.
pub(crate) async fn find(inner: &Inner, id: &str) -> redis::RedisResult<Option<Session>> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(inner.keys.portal_session(&hex(&digest(id))))
        .query_async(&mut inner.conn.clone())
        .await?;
    let Some(session) = raw
        .and_then(|r| serde_json::from_str::<Session>(&r).ok())
        .filter(|s| s.grant.expires_at > now_ms())
    else {
        return Ok(None);
    };
    Ok(minter_live(inner, &session.grant).await?.then_some(session))
}

/// Ends a session (logging out).
pub(crate) async fn end(conn: &Conn, keys: &Keys, id: &str) -> redis::RedisResult<()> {
    redis::cmd("DEL")
        .arg(keys.portal_session(&hex(&digest(id))))
        .query_async(&mut conn.clone())
        .await
}
