//! The management API (SPEC 6).

use std::sync::Arc;

use axum::Router;
use redis::aio::ConnectionManager;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::dlq::Dlq;
use crate::keys::Keys;
use crate::registry::{LiveIndex, Store};
use crate::retry::RetryQueue;
use crate::seal::Sealer;

#[derive(Clone)]
pub struct ApiState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub conn: ConnectionManager,
    pub keys: Keys,
    pub store: Store,
    pub retry: RetryQueue,
    pub dlq: Dlq,
    pub sealer: Sealer,
    pub catalog: Catalog,
    pub live: LiveIndex,
    pub dispatcher: Arc<Dispatcher>,
    pub admin_tokens: Vec<String>,
    pub max_body_bytes: usize,
    pub max_event_bytes: usize,
    pub allow_http: bool,
    pub rotation_overlap_ms: i64,
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        conn: ConnectionManager,
        keys: Keys,
        store: Store,
        retry: RetryQueue,
        dlq: Dlq,
        sealer: Sealer,
        catalog: Catalog,
        live: LiveIndex,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                conn,
                keys,
                store,
                retry,
                dlq,
                sealer,
                catalog,
                live,
                dispatcher,
                admin_tokens: config.http.admin_tokens.clone(),
                max_body_bytes: config.http.max_body_bytes,
                max_event_bytes: config.stream.max_event_bytes,
                allow_http: config.delivery.allow_http,
                rotation_overlap_ms: config.signing.rotation_overlap.get().as_millis() as i64,
            }),
        }
    }
}

pub fn router(_state: ApiState) -> Router {
    Router::new()
}
