//! What every handler shares: the connection, the registry, the queues, the dispatcher for
//! test sends, and the API's own settings.

use std::sync::Arc;

use crate::api::limit;
use crate::api::token_store::UsedMemory;
use crate::config::Config;
use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::db::shards::Shards;
use crate::deliver::dispatcher::Dispatcher;
use crate::event::catalog::Catalog;
use crate::notice::Notices;
use crate::registry::Store;
use crate::retry::dlq::Dlq;
use crate::retry::RetryQueue;
use crate::secure::seal::Sealer;
use crate::secure::ssrf::Guard;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Conn,
    pub(crate) keys: Keys,
    /// Where published events go.
    pub(crate) shards: Shards,
    pub(crate) store: Store,
    pub(crate) retry: RetryQueue,
    pub(crate) dlq: Dlq,
    pub(crate) sealer: Sealer,
    pub(crate) catalog: Catalog,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// The SHA-256 digests of `http.admin_tokens`, made once: every request compares its
    /// token's digest with them, and a portal session its minter's.
    pub(crate) admin_digests: Vec<[u8; 32]>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_event_bytes: usize,
    pub(crate) allow_http: bool,
    /// The SSRF guard registration checks URLs against (the same ranges as delivery's).
    pub(crate) guard: Guard,
    pub(crate) rotation_overlap_ms: i64,
    /// When this replica last wrote each token's use.
    pub(crate) token_use: UsedMemory,
    pub(crate) rate_limit: limit::RateLimit,
    pub(crate) body_reads: limit::BodyReads,
    /// `http.public_url`: portal links are absolute under it, and its cookie `Secure` if https.
    pub(crate) public_url: String,
    /// Operational events: a tenant's disable and enable.
    pub(crate) notices: Notices,
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &Config,
        conn: Conn,
        keys: Keys,
        store: Store,
        retry: RetryQueue,
        dlq: Dlq,
        sealer: Sealer,
        catalog: Catalog,
        dispatcher: Arc<Dispatcher>,
        notices: Notices,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                conn,
                keys,
                shards: Shards::of(config),
                store,
                retry,
                dlq,
                sealer,
                catalog,
                dispatcher,
                admin_digests: config
                    .http
                    .admin_tokens
                    .iter()
                    .map(|t| crate::api::token_store::digest(t.trim()))
                    .collect(),
                max_body_bytes: config.http.max_body_bytes,
                max_event_bytes: config.stream.max_event_bytes,
                allow_http: config.delivery.allow_http,
                guard: Guard::new(config.delivery.allowed_cidrs.clone()),
                rotation_overlap_ms: config.signing.rotation_overlap.get().as_millis() as i64,
                token_use: UsedMemory::default(),
                rate_limit: limit::RateLimit::new(config.http.rate_limit),
                body_reads: limit::BodyReads::default(),
                public_url: config.http.public_url.clone(),
                notices,
            }),
        }
    }
}
