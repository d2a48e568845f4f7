//! The management API (SPEC 6): one file per resource; what they share is in `state` (what
//! handlers work with), `extract` (who is calling, and extractors whose rejections are our
//! JSON errors instead of axum's plain text) and `error` (the one error type). Here: the
//! router and the OpenAPI document built from the same handlers.

mod dlq;
mod endpoints;
mod error;
mod events;
mod extract;
mod limit;
mod openapi;
mod portal;
mod state;
mod token_store;
mod tokens;
mod ttl;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use error::ApiError;
pub(crate) use state::ApiState;
pub(crate) use token_store::migrate as migrate_tokens;

/// Every `/v1` route, the OpenAPI document generated from them, and JSON 404/405/413.
pub(crate) fn router(state: ApiState) -> Router {
    let max_body = state.inner.max_body_bytes;
    let (routes, doc) = documented();
    routes
        .merge(openapi::routes(doc))
        .merge(portal::routes())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn documented() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(endpoints::routes())
        .merge(tokens::routes())
        .merge(dlq::routes())
        .merge(events::routes())
        .merge(portal::links::routes())
        .split_for_parts();
    (routes, openapi::finish(doc))
}
