//! What endpoint requests and answers look like (and so what the OpenAPI document says).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::deliver::breaker;
use crate::deliver::stats;
use crate::event::catalog::MAX_FILTERS;
use crate::registry::EndpointRecord;
use crate::support::clock::rfc3339;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateEndpoint {
    /// `https://` (or `http://` when delivery.allow_http), no user-info, at most 2048 characters;
    /// must not point at a loopback, private, link-local, CGNAT, multicast or unspecified address.
    #[schema(example = "https://example.com/webhooks")]
    pub(super) url: String,
    /// Event-type patterns (SPEC 3); each must match at least one catalog type.
    #[schema(schema_with = filter_list)]
    pub(super) filters: Vec<String>,
    #[schema(max_length = 1024)]
    pub(super) description: Option<String>,
    /// Extra request headers; the signing and transport headers cannot be overridden.
    pub(super) headers: Option<BTreeMap<String, String>>,
    /// `whsec_` + base64 of 24–64 bytes; generated when left out.
    #[schema(pattern = r"^whsec_([A-Za-z0-9+/]{4}){8,21}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub(super) secret: Option<String>,
    /// Deliveries per second, or null for no limit.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub(super) rate_limit: Option<u32>,
    pub(super) disabled: Option<bool>,
    /// At most 50 string values.
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

/// 1 to 64 patterns: dot-separated segments, each `[a-z0-9_]+` or `*` (SPEC 3).
fn filter_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let pattern = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^(\*|[a-z0-9_]+)(\.(\*|[a-z0-9_]+))*$"))
        .examples(["outbound.*"]);
    ArrayBuilder::new()
        .items(pattern)
        .min_items(Some(1))
        .max_items(Some(MAX_FILTERS))
        .build()
}

fn filter_list_or_null() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(filter_list())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// A partial update: fields left out (or null) stay as they are, except `rate_limit`, where
/// null removes the limit. `disabled: false` re-enables and clears `disabled_reason`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchEndpoint {
    pub(super) url: Option<String>,
    #[schema(schema_with = filter_list_or_null)]
    pub(super) filters: Option<Vec<String>>,
    #[schema(max_length = 1024)]
    pub(super) description: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present_whole_number")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    pub(super) rate_limit: Option<Option<u32>>,
    pub(super) disabled: Option<bool>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

impl PatchEndpoint {
    /// `{"disabled": false}` and nothing else.
    pub(super) fn only_enables(&self) -> bool {
        self.disabled == Some(false)
            && self.url.is_none()
            && self.filters.is_none()
            && self.description.is_none()
            && self.headers.is_none()
            && self.rate_limit.is_none()
            && self.metadata.is_none()
    }
}

/// An integer, also when written `5.0` (JSON Schema's integers include it).
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => {
            Ok(Some(n as u32))
        }
        Some(n) => Err(D::Error::custom(format!(
            "expected a positive integer, found {n}"
        ))),
    }
}

/// Tells a field given as null (`Some(None)`) from one left out (`None`).
fn present_whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    whole_number(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub(super) struct EndpointOut {
    #[schema(example = "ep_018d0a1b2c3d4e5f6a7b8c9d")]
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) url: String,
    pub(super) filters: Vec<String>,
    pub(super) description: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) rate_limit: Option<u32>,
    pub(super) disabled: bool,
    pub(super) disabled_reason: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    #[schema(format = DateTime)]
    pub(super) created_at: String,
    #[schema(format = DateTime)]
    pub(super) updated_at: String,
}

impl From<&EndpointRecord> for EndpointOut {
    fn from(r: &EndpointRecord) -> Self {
        EndpointOut {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            url: r.url.clone(),
            filters: r.filters.clone(),
            description: r.description.clone(),
            headers: r.headers.clone(),
            rate_limit: r.rate_limit,
            disabled: r.disabled,
            disabled_reason: r.disabled_reason.clone(),
            metadata: r.metadata.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// An endpoint as created: its fields plus its signing secret.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedEndpoint {
    #[serde(flatten)]
    pub(super) endpoint: EndpointOut,
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub(super) secret: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EndpointList {
    pub(super) data: Vec<EndpointOut>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub(super) next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Secret {
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub(super) secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateSecret {
    /// The new secret (`whsec_` + base64 of 24–64 bytes); generated when left out.
    #[schema(pattern = r"^whsec_([A-Za-z0-9+/]{4}){8,21}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub(super) secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AttemptOut {
    #[schema(format = DateTime)]
    pub(super) at: String,
    pub(super) event_id: String,
    pub(super) attempt: u32,
    /// HTTP status, or null when no response came.
    pub(super) status: Option<u16>,
    pub(super) latency_ms: u64,
    pub(super) error: Option<String>,
    /// Up to 4 KiB of the response body.
    pub(super) response: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AttemptList {
    pub(super) data: Vec<AttemptOut>,
    pub(super) next_cursor: Option<String>,
}

/// A test delivery's request: the event type to send (default `webhookd.test`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TestRequest {
    /// A catalog type the endpoint's filters match; its `data` is a made-up example.
    #[serde(rename = "type")]
    pub(super) event_type: Option<String>,
}

/// What a test delivery came to.
#[derive(Serialize, ToSchema)]
pub(super) struct TestOutcome {
    /// The test event's id (`webhook-id`), `evt_test_…`.
    pub(super) event_id: String,
    pub(super) status: Option<u16>,
    pub(super) latency_ms: u64,
    pub(super) error: Option<String>,
    pub(super) response: String,
}

/// How an endpoint is doing.
#[derive(Serialize, ToSchema)]
pub(super) struct EndpointStats {
    pub(super) circuit: Circuit,
    /// Deliveries to it in flight now, across every replica.
    pub(super) in_flight: u64,
    /// The last 24 hours, oldest first; the last is the current hour.
    #[schema(min_items = 24, max_items = 24)]
    pub(super) hours: Vec<HourStats>,
}

/// The circuit breaker's state (SPEC 5): `open` while attempts wait, `half_open` while a
/// probe is in flight.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl From<breaker::State> for Circuit {
    fn from(s: breaker::State) -> Self {
        match s {
            breaker::State::Closed => Circuit::Closed,
            breaker::State::Open => Circuit::Open,
            breaker::State::HalfOpen => Circuit::HalfOpen,
        }
    }
}

/// One hour of attempts to an endpoint.
#[derive(Serialize, ToSchema)]
pub(super) struct HourStats {
    /// The hour's start.
    #[schema(format = DateTime)]
    pub(super) start: String,
    /// Attempts answered with a 2xx.
    pub(super) success: u64,
    /// Every other attempt.
    pub(super) failure: u64,
    /// Median attempt latency, overstated by less than 20 %; null without attempts.
    pub(super) p50_ms: Option<u64>,
    /// 99th-percentile attempt latency, overstated by less than 20 %; null without attempts.
    pub(super) p99_ms: Option<u64>,
}

impl From<stats::Hour> for HourStats {
    fn from(h: stats::Hour) -> Self {
        HourStats {
            start: rfc3339(h.start_ms),
            success: h.success,
            failure: h.failure,
            p50_ms: h.p50_ms,
            p99_ms: h.p99_ms,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// 1 to 250; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub(super) limit: Option<String>,
    /// The `next_cursor` of the previous page (opaque).
    pub(super) cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LimitQuery {
    /// 1 to 250; default 50 (the log keeps the latest 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub(super) limit: Option<String>,
}
