//! The management API (SPEC 6): one file per resource, and here what they share — the
//! state, the router, who is calling ([`Caller`], [`TenantScope`]), the one error type, and
//! extractors whose rejections are our JSON errors instead of axum's plain text.

mod dlq;
mod endpoints;
mod error;
mod events;
mod extract;
mod limit;
mod openapi;
pub(crate) mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::deliver::dispatcher::Dispatcher;
use crate::event::catalog::Catalog;
use crate::registry::{LiveIndex, Store};
use crate::retry::dlq::Dlq;
use crate::retry::RetryQueue;
use crate::secure::seal::Sealer;

pub use error::{ApiError, ErrorBody};
pub use extract::{ApiPath, ApiQuery, Caller, JsonBody, RawBody, TenantScope};

#[derive(Clone)]
pub struct ApiState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub conn: Conn,
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
    /// When this replica last wrote each token's use.
    pub token_use: tokens::UsedMemory,
    pub rate_limit: limit::RateLimit,
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        conn: Conn,
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
                token_use: tokens::UsedMemory::default(),
                rate_limit: limit::RateLimit::new(config.http.rate_limit),
            }),
        }
    }
}

/// Every `/v1` route, the OpenAPI document generated from them, and JSON 404/405/413.
pub fn router(state: ApiState) -> Router {
    let max_body = state.inner.max_body_bytes;
    let (routes, doc) = documented();
    routes
        .merge(openapi::routes(doc))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The OpenAPI document the router serves, built from the same handlers it routes to.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented().1
}

fn documented() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(endpoints::routes())
        .merge(tokens::routes())
        .merge(dlq::routes())
        .merge(events::routes())
        .split_for_parts();
    (routes, openapi::finish(doc))
}
