//! Helpers the API tests share: a JSON client for the management API, the error-shape
//! check, and "the consumer has acknowledged this entry".

use std::time::Duration;

use serde_json::Value;

use crate::common::{self, wait_until, Setup, Webhookd, ADMIN_TOKEN};

pub use hyper::Method;

/// The path of endpoint `id` (a JSON string) of `tenant`.
pub fn ep_path(tenant: &str, id: &Value) -> String {
    format!("/v1/tenants/{tenant}/endpoints/{}", id.as_str().unwrap())
}

/// A caller of the management API with one bearer token (or none).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn admin(setup: &Setup) -> Api {
        Api {
            base: setup.api(),
            token: Some(ADMIN_TOKEN.to_string()),
        }
    }

    /// `POST /v1/events` of an `outbound.sent` event with empty data.
    pub async fn publish_event(&self, id: &str, tenant: &str) -> (u16, Value) {
        self.post(
            "/v1/events",
            serde_json::json!({"id": id, "type": "outbound.sent", "tenant": tenant,
                               "created_at": 1704825600, "data": {}}),
        )
        .await
    }

    pub fn as_token(&self, token: &str) -> Api {
        Api {
            base: self.base.clone(),
            token: Some(token.to_string()),
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            base: self.base.clone(),
            token: None,
        }
    }

    /// A request with a raw body; the answer's status and JSON (null when empty).
    pub async fn raw(&self, method: Method, path: &str, body: Option<String>) -> (u16, Value) {
        let (status, text) = common::http(
            method,
            &format!("{}{path}", self.base),
            self.token.as_deref(),
            body,
        )
        .await;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
        };
        (status, json)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.raw(method, path, body.map(|b| b.to_string())).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates an endpoint and answers its JSON (with `secret`), asserting 201.
    pub async fn create_endpoint(&self, tenant: &str, body: Value) -> Value {
        let (status, ep) = self
            .post(&format!("/v1/tenants/{tenant}/endpoints"), body)
            .await;
        assert_eq!(status, 201, "create endpoint: {ep}");
        ep
    }

    /// A new tenant token (asserting 201).
    pub async fn new_token(&self, tenant: &str) -> String {
        let (status, body) = self
            .call(Method::POST, &format!("/v1/tenants/{tenant}/tokens"), None)
            .await;
        assert_eq!(status, 201, "create token: {body}");
        body["token"].as_str().unwrap().to_string()
    }
}

/// Asserts an answer is `{"error": {"code", "message"}}` with this status and code.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        got.0, status,
        "expected {status} {code}, got {} {}",
        got.0, got.1
    );
    let err = &got.1["error"];
    assert_eq!(err["code"], code, "{}", got.1);
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error needs a message: {}",
        got.1
    );
    assert_eq!(
        got.1.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {}",
        got.1
    );
}

pub fn xlen(stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query(&mut common::redis())
        .unwrap()
}

/// Waits (bounded) until the consumer group has read past `entry` and nothing is pending.
pub async fn wait_acked(stream: &str, entry: &str, limit: Duration) -> bool {
    let stream = stream.to_string();
    let entry = entry.to_string();
    let mut conn = common::redis();
    wait_until(limit, || {
        let groups: Vec<Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query::<redis::Value>(&mut conn)
            .ok()
            .map(|v| groups_json(&v))
            .unwrap_or_default();
        groups.iter().any(|g| {
            g["pending"].as_i64() == Some(0)
                && g["last-delivered-id"]
                    .as_str()
                    .is_some_and(|last| stream_id_ge(last, &entry))
        })
    })
    .await
}

fn stream_id_ge(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) >= parse(b)
}

/// `XINFO GROUPS` as JSON objects (field → string or integer).
fn groups_json(v: &redis::Value) -> Vec<Value> {
    let redis::Value::Array(groups) = v else {
        return Vec::new();
    };
    groups
        .iter()
        .map(|g| {
            let mut obj = serde_json::Map::new();
            let fields: Vec<&redis::Value> = match g {
                redis::Value::Array(f) => f.iter().collect(),
                redis::Value::Map(m) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => Vec::new(),
            };
            for pair in fields.chunks(2) {
                if let [k, v] = pair {
                    let key = scalar(k).as_str().unwrap_or_default().to_string();
                    obj.insert(key, scalar(v));
                }
            }
            Value::Object(obj)
        })
        .collect()
}

fn scalar(v: &redis::Value) -> Value {
    match v {
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s.clone()),
        redis::Value::Int(i) => Value::from(*i),
        _ => Value::Null,
    }
}

/// A valid envelope for `POST /v1/events`.
pub fn event(id: &str, event_type: &str, tenant: &str) -> Value {
    serde_json::json!({"id": id, "type": event_type, "tenant": tenant, "created_at": 1704825600, "data": {"to": "x@example.com"}})
}

/// A webhookd started for `setup`, and an admin client of its API: how most API tests begin.
pub async fn admin_api(setup: Setup) -> (Setup, Webhookd, Api) {
    let webhookd = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    (setup, webhookd, api)
}

pub const HOUR_MS: i64 = 3_600_000;

/// The start (ms) of the hour `ms` falls in: what webhookd names its hourly keys by.
pub fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}
