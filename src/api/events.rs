//! Producing through the API: `POST /v1/events` (a normalized envelope),
//! `POST /v1/ingest/{provider}` (provider-native payloads) and the catalog.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{check_tenant, parse_json};
use super::extract::{ApiPath, ApiQuery, Caller, RawBody};
use super::state::ApiState;
use crate::event;
use crate::normalize::{self, NormalizeError, Provider};
use crate::publish::{self, PublishError};
use crate::support::clock::now_secs;

/// The envelope's fields (SPEC 1); anything else is refused so a typo is not ignored.
const ENVELOPE_FIELDS: &[&str] = &["id", "type", "tenant", "created_at", "data"];

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(publish_event))
        .routes(routes!(ingest))
        .routes(routes!(event_types))
}

/// The envelope of SPEC 1.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documents the shape; the body is validated by `event::parse`.
pub(super) struct Envelope {
    /// 1–128 characters of `[A-Za-z0-9_.:-]`; unique per event.
    #[schema(pattern = r"^[A-Za-z0-9_.:\-]{1,128}$", example = "evt_01J")]
    id: String,
    /// 2+ dot-separated segments of `[a-z0-9_]+`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", example = "outbound.bounced")]
    event_type: String,
    #[schema(pattern = r"^[A-Za-z0-9_.\-]{1,64}$", example = "acct_42")]
    tenant: String,
    /// Unix seconds.
    #[schema(minimum = 0, example = 1704825600)]
    created_at: i64,
    #[schema(value_type = Object)]
    data: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Published {
    /// The entry id in the input stream.
    #[schema(example = "1704825600000-0")]
    pub(super) stream_id: String,
    /// The input stream's shard it went to: CRC-32 of the tenant mod `stream.shards`.
    #[schema(example = 0)]
    pub(super) shard: u32,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Ingested {
    pub(super) published: usize,
    /// The normalized events' ids, in payload order.
    pub(super) ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EventType {
    #[serde(rename = "type")]
    pub(super) event_type: String,
    pub(super) description: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EventTypeList {
    pub(super) data: Vec<EventType>,
    pub(super) next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct IngestQuery {
    /// The tenant the events belong to (required).
    #[param(required = true, value_type = String, pattern = r"^[A-Za-z0-9_.\-]{1,64}$")]
    pub(super) tenant: Option<String>,
}

fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Invalid(i) => ApiError::Invalid(i.0),
        PublishError::Redis(r) => ApiError::Unavailable(r),
    }
}

/// Publish one normalized event envelope to the input stream.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body = Envelope,
    responses(
        (status = 202, description = "Appended to the stream", body = Published),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "A tenant token publishing for another tenant", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Invalid envelope; nothing published", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn publish_event(
    State(state): State<ApiState>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let object: Value = parse_json(&body)?;
    let Value::Object(fields) = &object else {
        return Err(ApiError::Invalid("the event must be a JSON object".into()));
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !ENVELOPE_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::Invalid(format!(
            "unknown field `{k}`, expected one of `id`, `type`, `tenant`, `created_at`, `data`"
        )));
    }
    let ev =
        event::parse(&body, state.inner.max_event_bytes).map_err(|e| ApiError::Invalid(e.0))?;
    caller.may_publish_for(&ev.tenant)?;
    let raw = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::Malformed("body is not UTF-8".into()))?;
    let appended = publish::publish_raw(
        &state.inner.conn,
        &state.inner.shards,
        &[raw],
        state.inner.max_event_bytes,
    )
    .await
    .map_err(publish_error)?;
    let Some(publish::Appended { stream_id, shard }) = appended.into_iter().next() else {
        return Err(ApiError::Malformed("nothing to publish".into()));
    };
    Ok((StatusCode::ACCEPTED, Json(Published { stream_id, shard })))
}

/// Normalize and publish a provider's own webhook payload.
///
/// One object or an array of them (CloudMailin also takes its `{"events": […]}` batch).
/// All or nothing: one unknown or malformed item publishes none. The same provider event
/// ingested twice gets the same id and is delivered once.
#[utoipa::path(
    post,
    path = "/v1/ingest/{provider}",
    tag = "events",
    params(
        ("provider" = String, Path, description = "`sendpost`, `cloudmailin` or `jetemail`"),
        IngestQuery,
    ),
    request_body(content = Object, description = "The provider's payload: an object or an array of objects"),
    responses(
        (status = 202, description = "Published", body = Ingested),
        (status = 400, description = "Missing or bad tenant, or malformed payload", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "A tenant token ingesting for another tenant", body = ErrorBody),
        (status = 404, description = "Unknown provider", body = ErrorBody),
        (status = 413, description = "Body over http.max_body_bytes", body = ErrorBody),
        (status = 422, description = "Unknown provider event (named); nothing published", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn ingest(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(q): ApiQuery<IngestQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let provider: Provider = provider
        .parse()
        .map_err(|e: NormalizeError| ApiError::NotFound(e.to_string()))?;
    let tenant = q
        .tenant
        .ok_or_else(|| ApiError::Malformed("the `tenant` query parameter is required".into()))?;
    check_tenant(&tenant)?;
    caller.may_publish_for(&tenant)?;
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Malformed(format!("invalid JSON: {e}")))?;
    let events = normalize::normalize(provider, &payload, now_secs()).map_err(|e| match e {
        NormalizeError::UnknownEvent { .. } => ApiError::Invalid(e.to_string()),
        NormalizeError::Malformed(_) | NormalizeError::UnknownProvider(_) => {
            ApiError::Malformed(e.to_string())
        }
    })?;
    let envelopes = publish::envelopes(&tenant, &events);
    let published = publish::publish_raw(
        &state.inner.conn,
        &state.inner.shards,
        &envelopes,
        state.inner.max_event_bytes,
    )
    .await
    .map_err(publish_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Ingested {
            published: published.len(),
            ids: events.into_iter().map(|e| e.id).collect(),
        }),
    ))
}

/// The event catalog: every type a filter can name.
#[utoipa::path(
    get,
    path = "/v1/event-types",
    tag = "events",
    responses(
        (status = 200, description = "The catalog", body = EventTypeList),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
async fn event_types(State(state): State<ApiState>, _caller: Caller) -> Json<EventTypeList> {
    Json(EventTypeList {
        data: state
            .inner
            .catalog
            .types()
            .iter()
            .map(|t| EventType {
                event_type: t.event_type.clone(),
                description: t.description.clone(),
            })
            .collect(),
        next_cursor: None,
    })
}
