//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes, and
//! served at `GET /v1/openapi.json` (no auth).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::state::ApiState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd management API",
        description = "Register webhook endpoints, publish events, inspect and replay dead letters. \
            Every error answers `{\"error\": {\"code\", \"message\"}}`. Admin tokens may act on any \
            tenant; a tenant token only on its own (another tenant's resources answer 404).",
    ),
    paths(openapi_json, healthz, readyz, metrics),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "endpoints", description = "Webhook endpoints of a tenant"),
        (name = "events", description = "Publishing events and the event catalog"),
        (name = "dlq", description = "Dead letters of a tenant"),
        (name = "tokens", description = "Tenant tokens"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Last touches once every route is in.
pub(super) fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for (path, item) in doc.paths.paths.iter_mut() {
        shared_answers(path, item);
    }
    doc
}

/// The answers every route of a kind can give, added where its own list lacks them: a
/// tenant token or portal session over `http.rate_limit` (429) on a tenant's routes, and on
/// their changes (and a secret's reveal) a portal session that is read-only or sent no CSRF
/// token (403). Generated clients then model what the server answers.
fn shared_answers(path: &str, item: &mut utoipa::openapi::PathItem) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    if !path.starts_with("/v1/tenants/") {
        return;
    }
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let reveals = path.ends_with("/secret");
    let ops = [
        (&mut item.get, reveals),
        (&mut item.post, true),
        (&mut item.put, true),
        (&mut item.patch, true),
        (&mut item.delete, true),
    ];
    for (op, changes) in ops {
        let Some(op) = op.as_mut() else { continue };
        let answers = &mut op.responses.responses;
        answers.entry("429".into()).or_insert_with(|| {
            error("Over this tenant token's or portal session's `http.rate_limit`; `Retry-After` says when to try again").into()
        });
        if changes {
            answers.entry("403".into()).or_insert_with(|| {
                error("A read-only portal session, or a change from the portal without its CSRF token").into()
            });
        }
    }
}

/// Serves the document, serialized once.
pub(super) fn routes(doc: utoipa::openapi::OpenApi) -> Router<ApiState> {
    let json: Arc<str> = doc
        .to_json()
        .expect("the OpenAPI document serializes")
        .into();
    Router::new().route("/v1/openapi.json", get(serve).with_state(json))
}

async fn serve(State(json): State<Arc<str>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}

// The routes below are served outside this module; these functions only document them.

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct Healthz {
    #[schema(example = "ok")]
    status: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct Readyz {
    ready: bool,
    redis: bool,
    consumer: bool,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is alive", body = Healthz)))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: Redis reachable and the consumer running.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Readyz),
        (status = 503, description = "Not ready (Redis unreachable or consumer stopped)", body = Readyz),
    ))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus metrics (OpenMetrics text). Absent here when `http.metrics_listen` is set.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String)))]
#[allow(dead_code)]
fn metrics() {}
