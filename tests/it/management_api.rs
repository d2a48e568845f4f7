//! The management API (SPEC 6) against the real binary, a real Redis and real receivers:
//! each route's success and failure codes, tenant isolation, and that API changes reach
//! the dispatcher within a second.

use std::time::Duration;

use crate::api_common::*;
use crate::common::*;
use serde_json::{json, Value};
use webhookd::support::clock::now_ms;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_created_read_listed_changed_and_deleted() {
    let (_setup, _w, api) = admin_api(Setup::new("api_crud")).await;

    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": "http://127.0.0.1:9/hook", "filters": ["outbound.*"], "description": "mine",
                   "headers": {"x-team": "mail"}, "rate_limit": 5, "metadata": {"k": "v"}}),
        )
        .await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{ep}");
    let mut keys: Vec<&str> = ep.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "disabled",
            "disabled_reason",
            "filters",
            "headers",
            "id",
            "metadata",
            "ordering_key",
            "rate_limit",
            "secret",
            "signing",
            "tenant",
            "updated_at",
            "url"
        ]
    );
    assert_eq!(ep["tenant"], "acct_a");
    assert_eq!(ep["rate_limit"], 5);
    assert_eq!(ep["disabled"], false);
    assert!(webhookd::support::clock::parse_rfc3339(ep["created_at"].as_str().unwrap()).is_some());
    let path = ep_path("acct_a", &ep["id"]);

    let (status, got) = api.get(&path).await;
    assert_eq!(status, 200, "{got}");
    assert!(
        got.get("secret").is_none(),
        "secret only on create and GET …/secret: {got}"
    );
    assert_eq!(got["url"], "http://127.0.0.1:9/hook");
    assert_eq!(got["headers"], json!({"x-team": "mail"}));
    assert_eq!(got["metadata"], json!({"k": "v"}));

    let (status, got) = api.get(&format!("{path}/secret")).await;
    assert_eq!((status, got), (200, json!({"secret": secret})));

    // Pagination: limit 1 gives a cursor, the cursor the second page, which is the last.
    let second = api
        .create_endpoint(
            "acct_a",
            json!({"url": "http://127.0.0.1:9/two", "filters": ["*"]}),
        )
        .await;
    let (status, page1) = api.get("/v1/tenants/acct_a/endpoints?limit=1").await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["data"].as_array().unwrap().len(), 1);
    assert_eq!(page1["data"][0]["id"], ep["id"]);
    let cursor = page1["next_cursor"].as_str().expect("a next cursor");
    let (status, page2) = api
        .get(&format!(
            "/v1/tenants/acct_a/endpoints?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(page2["data"][0]["id"], second["id"]);
    assert_eq!(page2["next_cursor"], Value::Null);
    let (_, all) = api.get("/v1/tenants/acct_a/endpoints").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, patched) = api
        .patch(
            &path,
            json!({"description": "changed", "rate_limit": null, "filters": ["outbound.bounced"]}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["description"], "changed");
    assert_eq!(patched["rate_limit"], Value::Null);
    assert_eq!(patched["filters"], json!(["outbound.bounced"]));
    assert_eq!(
        patched["url"], "http://127.0.0.1:9/hook",
        "untouched fields stay"
    );
    assert_eq!(patched["created_at"], ep["created_at"]);
    // Compared as times: RFC 3339 fractions vary in length ("…01.1Z" is before "…01.105Z"
    // but sorts after it as text), which made this check fail now and then.
    let at = |v: &Value| webhookd::support::clock::parse_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        at(&patched["updated_at"]) > at(&ep["updated_at"]),
        "updated_at is bumped: {} then {}",
        ep["updated_at"],
        patched["updated_at"]
    );
    assert_error(
        &api.patch(&path, json!({"filters": ["outbound.bounce"]}))
            .await,
        422,
        "invalid",
    );
    assert_error(
        &api.patch(&path, json!({"secret": secret})).await,
        422,
        "invalid",
    );
    let (status, whole) = api.patch(&path, json!({"rate_limit": 7.0})).await;
    assert_eq!((status, &whole["rate_limit"]), (200, &json!(7)), "{whole}");

    let (status, body) = api.delete(&path).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_error(&api.get(&path).await, 404, "not_found");
    assert_error(&api.delete(&path).await, 404, "not_found");
    assert_error(
        &api.patch(&path, json!({"description": "x"})).await,
        404,
        "not_found",
    );

    let (status, empty) = api.get("/v1/tenants/acct_nobody/endpoints").await;
    assert_eq!(
        (status, empty),
        (200, json!({"data": [], "next_cursor": null}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_answer_422_naming_the_problem() {
    let (_setup, _w, api) = admin_api(Setup::new("api_invalid")).await;
    // What was sent is quoted, but not all of it: a 100 KB filter made a 100 KB answer.
    let (status, body) = api
        .post(
            "/v1/tenants/acct_v/endpoints",
            json!({"url": "http://127.0.0.1:9/hook", "filters": ["x".repeat(100_000)]}),
        )
        .await;
    assert_eq!(status, 422);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.len() <= 1003 && message.ends_with('…'),
        "{} bytes",
        message.len()
    );
    // A cursor that no list handed out is 400, as for dead letters (it read as the first page).
    for bad in ["%ff%fe", "a%20b", "x%2Fy"] {
        let got = api
            .get(&format!("/v1/tenants/acct_v/endpoints?cursor={bad}"))
            .await;
        assert_error(&got, 400, "malformed");
    }
    let url = "http://127.0.0.1:9/hook";
    let long = "d".repeat(1025);
    let many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            json!({"url": url, "filters": ["outbound.bounce"]}),
            "did you mean `outbound.bounced`",
        ),
        (json!({"url": url, "filters": ["Outbound.*"]}), "filters"),
        (json!({"url": url, "filters": []}), "filters"),
        (json!({"url": url}), "filters"),
        (json!({"filters": ["*"]}), "url"),
        (
            json!({"url": url, "filters": ["*"], "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"url": url, "filters": ["*"], "headers": {"webhook-signature": "x"}}),
            "webhook-signature",
        ),
        (
            json!({"url": url, "filters": ["*"], "headers": {"Content-Type": "text/plain"}}),
            "Content-Type",
        ),
        (
            json!({"url": url, "filters": ["*"], "secret": "whsec_c2hvcnQ="}),
            "secret",
        ),
        (
            json!({"url": url, "filters": ["*"], "ordering_key": "a".repeat(257)}),
            "at most 256 characters",
        ),
        // A 500 KB header value was taken, and sent with every delivery.
        (
            json!({"url": url, "filters": ["*"], "headers": {"x-big": "v".repeat(4097)}}),
            "`headers.x-big` is longer than 4096 bytes",
        ),
        (
            json!({"url": url, "filters": ["*"], "headers": {
                "x-a": "v".repeat(3000), "x-b": "v".repeat(3000), "x-c": "v".repeat(3000)}}),
            "more than 8192 bytes",
        ),
        (
            json!({"url": url, "filters": ["*"], "secret": "not-a-secret"}),
            "secret",
        ),
        (
            json!({"url": url, "filters": ["*"], "description": long}),
            "description",
        ),
        (
            json!({"url": url, "filters": ["*"], "metadata": many}),
            "metadata",
        ),
        (
            json!({"url": url, "filters": ["*"], "metadata": {"k": 1}}),
            "metadata",
        ),
        (
            json!({"url": url, "filters": ["*"], "rate_limit": 0}),
            "rate_limit",
        ),
        (
            json!({"url": url, "filters": ["*"], "rate_limit": -3}),
            "rate_limit",
        ),
        (
            json!({"url": url, "filters": ["*"], "rate_limit": 1.5}),
            "rate_limit",
        ),
        (
            json!({"url": "ftp://example.com/x", "filters": ["*"]}),
            "https",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1:9/x", "filters": ["*"]}),
            "user-info",
        ),
        (
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2048)), "filters": ["*"]}),
            "2048",
        ),
        (json!({"url": "not a url", "filters": ["*"]}), "URL"),
    ];
    for (body, needle) in cases {
        let got = api.post("/v1/tenants/acct_a/endpoints", body.clone()).await;
        assert_error(&got, 422, "invalid");
        let msg = got.1["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: message `{msg}` should mention `{needle}`"
        );
    }
    let (_, list) = api.get("/v1/tenants/acct_a/endpoints").await;
    assert_eq!(list["data"], json!([]), "nothing invalid was stored");

    // A supplied valid secret is kept as given.
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": url, "filters": ["*"], "secret": SECRET}),
        )
        .await;
    assert_eq!(ep["secret"], SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_required_unless_allow_http() {
    let (_setup, _w, api) =
        admin_api(Setup::new("api_https").with("delivery:\n  allowed_cidrs: [127.0.0.0/8]\n"))
            .await;
    let got = api
        .post(
            "/v1/tenants/acct_a/endpoints",
            json!({"url": "http://127.0.0.1:9/x", "filters": ["*"]}),
        )
        .await;
    assert_error(&got, 422, "invalid");
    assert!(got.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("https"));
    api.create_endpoint(
        "acct_a",
        json!({"url": "https://127.0.0.1:9/x", "filters": ["*"]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_json_400_401_404_405_413() {
    let setup = Setup::new("api_bad");
    let _w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_HTTP__MAX_BODY_BYTES", "2048")]).await;
    let api = Api::admin(&setup);
    let eps = "/v1/tenants/acct_a/endpoints";

    // 400: malformed JSON, bad query parameters, bad tenant, bad cursor.
    for body in [
        "{\"url\":",
        "not json",
        "",
        "{\"url\":\"x\",\"filters\":[\"*\"]} trailing",
    ] {
        assert_error(
            &api.raw(Method::POST, eps, Some(body.to_string())).await,
            400,
            "malformed",
        );
    }
    for q in ["limit=0", "limit=251", "limit=abc", "limit=-1"] {
        assert_error(&api.get(&format!("{eps}?{q}")).await, 400, "malformed");
    }
    assert_error(
        &api.get("/v1/tenants/acct_a/dlq?cursor=abc").await,
        400,
        "malformed",
    );
    let (status, _) = api.get(&format!("{eps}?limit=250")).await;
    assert_eq!(status, 200);
    assert_error(
        &api.get("/v1/tenants/bad%20tenant/endpoints").await,
        400,
        "malformed",
    );
    // Dot segments: clients and browsers resolve them away, so no tenant may be one (the
    // portal of a tenant `..` called /v1/endpoints). Sent as is, they are refused.
    for dots in [".", ".."] {
        let path = format!("/v1/tenants/{dots}/endpoints");
        let body = json!({"url": "https://example.com/d", "filters": ["*"]});
        assert_error(&api.post(&path, body).await, 400, "malformed");
    }
    assert_error(
        &api.get(&format!("/v1/tenants/{}/endpoints", "t".repeat(65)))
            .await,
        400,
        "malformed",
    );
    assert_error(
        &api.raw(Method::POST, "/v1/events", Some("{oops".into()))
            .await,
        400,
        "malformed",
    );

    // 401: no token, a wrong token, a wrong scheme.
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let caller = match token {
            Some(t) => api.as_token(t),
            None => api.anonymous(),
        };
        assert_error(&caller.get(eps).await, 401, "unauthorized");
        assert_error(&caller.get("/v1/event-types").await, 401, "unauthorized");
        assert_error(
            &caller
                .post("/v1/events", event("e1", "outbound.sent", "acct_a"))
                .await,
            401,
            "unauthorized",
        );
    }

    // 413: over http.max_body_bytes, as JSON, also with a body that is valid JSON.
    let big =
        json!({"url": "http://127.0.0.1:9/x", "filters": ["*"], "description": "x".repeat(4000)});
    assert_error(&api.post(eps, big).await, 413, "payload_too_large");
    assert_error(
        &api.raw(Method::POST, "/v1/events", Some("x".repeat(10_000)))
            .await,
        413,
        "payload_too_large",
    );

    // 404 and 405 are JSON too.
    assert_error(&api.get("/v1/nothing-here").await, 404, "not_found");
    assert_error(
        &api.get("/v1/tenants/acct_a/endpoints/ep_missing/attempts")
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.raw(Method::PUT, eps, None).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &api.raw(Method::DELETE, "/v1/events", None).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_act_only_on_their_own_tenant() {
    let rx = Receiver::start(always(200)).await;
    let (_setup, _w, admin) = admin_api(Setup::new("api_scope")).await;
    let token_a = admin.new_token("acct_a").await;
    let token_b = admin.new_token("acct_b").await;
    assert!(
        token_a.starts_with("whk_") && token_a.len() == 4 + 43,
        "{token_a}"
    );
    assert_ne!(token_a, token_b);
    let a = admin.as_token(&token_a);
    let b = admin.as_token(&token_b);

    let ep = a
        .create_endpoint("acct_a", json!({"url": rx.url("/a"), "filters": ["*"]}))
        .await;
    let path = ep_path("acct_a", &ep["id"]);
    let (status, _) = a.get(&path).await;
    assert_eq!(status, 200);

    // Another tenant's endpoint is absent for B, by every route and path.
    assert_error(&b.get(&path).await, 404, "not_found");
    assert_error(
        &b.patch(&path, json!({"description": "mine now"})).await,
        404,
        "not_found",
    );
    assert_error(&b.delete(&path).await, 404, "not_found");
    assert_error(&b.get(&format!("{path}/secret")).await, 404, "not_found");
    assert_error(
        &b.post(&format!("{path}/secret/rotate"), json!({})).await,
        404,
        "not_found",
    );
    assert_error(&b.get(&format!("{path}/attempts")).await, 404, "not_found");
    assert_error(&b.get(&format!("{path}/stats")).await, 404, "not_found");
    assert_error(
        &b.post(&format!("{path}/test"), json!({})).await,
        404,
        "not_found",
    );
    assert_error(
        &b.get("/v1/tenants/acct_a/endpoints").await,
        404,
        "not_found",
    );
    assert_error(
        &b.post(
            "/v1/tenants/acct_a/endpoints",
            json!({"url": rx.url("/b"), "filters": ["*"]}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(&b.get("/v1/tenants/acct_a/dlq").await, 404, "not_found");
    assert_error(
        &b.post("/v1/tenants/acct_a/dlq/replay", json!({"endpoint": "x"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &b.delete("/v1/tenants/acct_a/dlq/1-0").await,
        404,
        "not_found",
    );
    // The same id under B's own path is absent too.
    assert_error(
        &b.get(&ep_path("acct_b", &ep["id"])).await,
        404,
        "not_found",
    );
    let (status, own) = b.get("/v1/tenants/acct_b/endpoints").await;
    assert_eq!(
        (status, own),
        (200, json!({"data": [], "next_cursor": null}))
    );
    // Nothing B tried changed A's endpoint.
    let (_, still) = admin.get(&path).await;
    assert_eq!(still["description"], "");

    // Publishing for another tenant is refused (403), for one's own accepted.
    assert_error(
        &b.post("/v1/events", event("e1", "outbound.sent", "acct_a"))
            .await,
        403,
        "forbidden",
    );
    let sendpost = json!({"event": "CSSent", "messageId": "m1", "to": "x@example.com"});
    assert_error(
        &b.post("/v1/ingest/sendpost?tenant=acct_a", sendpost.clone())
            .await,
        403,
        "forbidden",
    );
    let (status, _) = b
        .post("/v1/events", event("e2", "outbound.sent", "acct_b"))
        .await;
    assert_eq!(status, 202);
    let (status, _) = b.post("/v1/ingest/sendpost?tenant=acct_b", sendpost).await;
    assert_eq!(status, 202);

    // Admin-only routes are 403 for tenant tokens, even for their own tenant.
    assert_error(
        &a.post("/v1/tenants/acct_a/tokens", json!({})).await,
        403,
        "forbidden",
    );
    assert_error(
        &a.post("/v1/tenants/acct_b/tokens", json!({})).await,
        403,
        "forbidden",
    );

    // The catalog needs any valid token.
    let (status, types) = a.get("/v1/event-types").await;
    assert_eq!(status, 200);
    assert_eq!(types["next_cursor"], Value::Null);

    // The admin does everything.
    let (status, _) = admin.patch(&path, json!({"description": "by admin"})).await;
    assert_eq!(status, 200);
    let (status, _) = admin.delete(&path).await;
    assert_eq!(status, 204);
    assert_error(&a.get(&path).await, 404, "not_found");
    assert_error(
        &admin.post("/v1/tenants/bad%20t/tokens", json!({})).await,
        400,
        "malformed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_reach_dispatch_within_a_second_and_deleted_endpoints_get_nothing() {
    let rx = Receiver::start(always(200)).await;
    let (setup, _w, api) = admin_api(Setup::new("api_live")).await;
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": rx.url("/live"), "filters": ["outbound.*"]}),
        )
        .await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, published) = api
        .post(
            "/v1/events",
            event("evt_live_1", "outbound.delivered", "acct_a"),
        )
        .await;
    assert_eq!(status, 202, "{published}");
    assert!(published["stream_id"].as_str().unwrap().contains('-'));
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the new endpoint gets the event");
    assert_eq!(got[0].header("webhook-id"), "evt_live_1");
    assert!(
        verify(&got[0], &secret),
        "signed with the secret the API returned"
    );

    // Disabled through PATCH: nothing; enabled again: delivered.
    let path = ep_path("acct_a", &ep["id"]);
    let (status, off) = api.patch(&path, json!({"disabled": true})).await;
    assert_eq!(status, 200);
    assert_eq!(off["disabled"], true);
    assert!(off["disabled_reason"].is_string(), "{off}");

    let (status, _) = api.delete(&path).await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, published) = api
        .post(
            "/v1/events",
            event("evt_live_2", "outbound.delivered", "acct_a"),
        )
        .await;
    let entry = published["stream_id"].as_str().unwrap();
    assert!(
        wait_acked(&setup.stream(), entry, WAIT).await,
        "the entry is acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 1, "a deleted endpoint receives nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_and_re_enabling_clears_the_reason_and_the_failure_streak() {
    let rx = Receiver::start(always(200)).await;
    let s = Streaked::start("api_enable", &rx).await;
    let (setup, api, ep) = (&s.setup, &s.api, &s.ep);
    assert_eq!(ep["disabled"], true);
    assert!(ep["disabled_reason"].is_string());

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, p) = api
        .post("/v1/events", event("evt_off", "outbound.sent", "acct_a"))
        .await;
    assert!(wait_acked(&setup.stream(), p["stream_id"].as_str().unwrap(), WAIT).await);
    assert_eq!(rx.count(), 0, "a disabled endpoint gets nothing");

    let (status, on) = api
        .patch(&ep_path("acct_a", &ep["id"]), json!({"disabled": false}))
        .await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(on["disabled"], false);
    assert_eq!(on["disabled_reason"], Value::Null);
    assert!(!s.streak(), "re-enabling clears the failure streak");
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.post("/v1/events", event("evt_on", "outbound.sent", "acct_a"))
        .await;
    let got = rx.wait_for(1, WAIT).await;
    assert!(got.iter().any(|g| g.header("webhook-id") == "evt_on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_endpoints_are_readable_but_managed_in_config() {
    let rx = Receiver::start(always(200)).await;
    let (_setup, _w, api) =
        admin_api(Setup::new("api_static").endpoint("ep_static", "acct_a", &rx.url("/s"), &["*"]))
            .await;
    let path = "/v1/tenants/acct_a/endpoints/ep_static";
    let (status, ep) = api.get(path).await;
    assert_eq!(status, 200, "{ep}");
    assert_eq!(ep["id"], "ep_static");
    let (_, secret) = api.get(&format!("{path}/secret")).await;
    assert_eq!(secret["secret"], SECRET);
    for got in [
        api.patch(path, json!({"description": "x"})).await,
        api.delete(path).await,
        api.post(&format!("{path}/secret/rotate"), json!({})).await,
    ] {
        assert_error(&got, 409, "conflict");
        assert!(got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config.yaml"));
    }
    let (status, _) = api.get(path).await;
    assert_eq!(status, 200, "still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_validates_the_envelope_and_publishes_nothing_invalid() {
    let (setup, _w, api) = admin_api(Setup::new("api_publish")).await;
    let stream = setup.stream();
    let (status, body) = api
        .post("/v1/events", event("evt_ok", "outbound.bounced", "acct_a"))
        .await;
    assert_eq!(status, 202, "{body}");
    // SPEC 1: the entry id and the shard (one shard here: 0).
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert_eq!(body["shard"], 0, "{body}");
    assert!(body["stream_id"].as_str().unwrap().contains('-'), "{body}");
    assert_eq!(xlen(&stream), 1);
    let mut bad_tenant = event("e", "outbound.sent", "acct_a");
    bad_tenant["tenant"] = json!("a/b");
    let mut extra = event("e", "outbound.sent", "acct_a");
    extra["service"] = json!("outbound");
    let cases = [
        (
            json!({"type": "outbound.sent", "tenant": "acct_a", "created_at": 1, "data": {}}),
            "`id`",
        ),
        (
            json!({"id": "e", "type": "Outbound", "tenant": "acct_a", "created_at": 1, "data": {}}),
            "`type`",
        ),
        (
            json!({"id": "e", "type": "outbound.sent", "tenant": "acct_a", "created_at": "1", "data": {}}),
            "created_at",
        ),
        (
            json!({"id": "e", "type": "outbound.sent", "tenant": "acct_a", "created_at": 1, "data": [1]}),
            "`data`",
        ),
        (bad_tenant, "`tenant`"),
        (extra, "unknown field `service`"),
        (json!([1, 2]), "object"),
    ];
    for (body, needle) in cases {
        let got = api.post("/v1/events", body.clone()).await;
        assert_error(&got, 422, "invalid");
        let msg = got.1["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: `{msg}` should mention {needle}"
        );
    }
    assert_eq!(xlen(&stream), 1, "nothing invalid was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_every_type_with_its_description() {
    let setup = Setup::new("api_types")
        .with("event_types:\n  - {type: billing.paid, description: Invoice paid}\n");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let (status, body) = api.get("/v1/event-types").await;
    assert_eq!(status, 200);
    let data = body["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        27,
        "21 event types, 5 operational ones and the operator's"
    );
    assert!(data.contains(&json!({"type": "outbound.bounced", "description": "Bounced; data.bounce_type is hard or soft"})));
    assert!(data
        .iter()
        .any(|t| t["type"] == "webhookd.endpoint.circuit_opened"));
    assert!(data.contains(&json!({"type": "billing.paid", "description": "Invoice paid"})));
    assert_eq!(body["next_cursor"], Value::Null);
    // Operator types can be subscribed to.
    api.create_endpoint(
        "acct_a",
        json!({"url": "http://127.0.0.1:9/x", "filters": ["billing.*"]}),
    )
    .await;
}

/// `ordering_key` (SPEC 6): a dotted path of 1 to 8 segments, shown on read, removed by null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordering_key_is_a_checked_path_that_patch_can_remove() {
    let (_setup, _w, api) = admin_api(Setup::new("api_ordering")).await;
    for bad in [
        "",
        "data..uid",
        "data.uid!",
        "a.b.c.d.e.f.g.h.i",
        " data.uid",
    ] {
        let (status, err) = api
            .post(
                "/v1/tenants/acct_a/endpoints",
                json!({"url": "http://127.0.0.1:9/o", "filters": ["*"], "ordering_key": bad}),
            )
            .await;
        assert_eq!(status, 422, "{bad:?}: {err}");
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ordering_key"));
    }
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": "http://127.0.0.1:9/o", "filters": ["*"], "ordering_key": "data.uid"}),
        )
        .await;
    assert_eq!(ep["ordering_key"], "data.uid");
    let path = ep_path("acct_a", &ep["id"]);
    assert_eq!(api.get(&path).await.1["ordering_key"], "data.uid");
    let (status, out) = api.patch(&path, json!({"ordering_key": null})).await;
    assert_eq!((status, &out["ordering_key"]), (200, &Value::Null), "{out}");
    let plain = api
        .create_endpoint(
            "acct_a",
            json!({"url": "http://127.0.0.1:9/p", "filters": ["*"]}),
        )
        .await;
    assert_eq!(plain["ordering_key"], Value::Null, "unordered unless asked");
}

/// A test delivery of a chosen type: any catalog type the endpoint's filters match, with a
/// real event's shape; another type is a 422 naming `type`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_delivery_sends_a_chosen_type_the_endpoint_would_receive() {
    let rx = Receiver::start(always(200)).await;
    let (_setup, _w, api) = admin_api(Setup::new("api_test_type")).await;
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": rx.url("/t"), "filters": ["outbound.*"]}),
        )
        .await;
    let path = format!("{}/test", ep_path("acct_a", &ep["id"]));
    let (status, outcome) = api.post(&path, json!({"type": "outbound.dropped"})).await;
    assert_eq!(status, 200, "{outcome}");
    let got = rx.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "outbound.dropped");
    assert_eq!(body["service"], "outbound");
    assert_eq!(body["data"]["reason"], "suppressed");
    assert_eq!(body["data"]["test"], true);
    assert!(verify(&got[0], ep["secret"].as_str().unwrap()));
    for (ty, says) in [
        ("inbound.received", "do not match"),
        ("outbound.bounce", "did you mean `outbound.bounced`"),
    ] {
        let (status, err) = api.post(&path, json!({"type": ty})).await;
        assert_eq!(status, 422, "{ty}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("`type`") && message.contains(says),
            "{message}"
        );
    }
    let (status, err) = api.post(&path, json!({"kind": "x"})).await;
    assert_eq!(status, 422, "an unknown field: {err}");
    assert_eq!(rx.count(), 1, "nothing sent for a refused test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_test_deliveries_show_what_happened() {
    let rx = Receiver::start(always(200)).await;
    let failing = Receiver::start(always(503)).await;
    let (_setup, _w, api) = admin_api(Setup::new("api_attempts")).await;
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": rx.url("/t"), "filters": ["*"], "headers": {"x-team": "mail"}}),
        )
        .await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    let path = ep_path("acct_a", &ep["id"]);

    let (status, outcome) = api.post(&format!("{path}/test"), json!({})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], 200);
    assert_eq!(outcome["error"], Value::Null);
    assert_eq!(outcome["response"], "ok");
    assert!(outcome["latency_ms"].is_u64());
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["type"], "webhookd.test");
    assert_eq!(body["service"], "webhookd");
    assert_eq!(body["data"], json!({"test": true}));
    assert!(body["id"].as_str().unwrap().starts_with("evt_test_"));
    assert_eq!(outcome["event_id"], body["id"]);
    assert_eq!(got[0].header("webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(got[0].header("x-team"), "mail");
    assert!(verify(&got[0], &secret));

    let bad = api
        .create_endpoint(
            "acct_a",
            json!({"url": failing.url("/f"), "filters": ["*"]}),
        )
        .await;
    let (status, outcome) = api
        .post(
            &format!("{}/test", ep_path("acct_a", &bad["id"])),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "a failed test delivery is still a 200 answer");
    assert_eq!(outcome["status"], 503);
    assert!(outcome["error"].is_string());

    tokio::time::sleep(Duration::from_secs(1)).await;
    api.post("/v1/events", event("evt_att", "outbound.sent", "acct_a"))
        .await;
    let found = wait_until(WAIT, || rx.count() >= 2).await;
    assert!(found);
    let start = std::time::Instant::now();
    let attempts = loop {
        let (status, body) = api.get(&format!("{path}/attempts?limit=10")).await;
        assert_eq!(status, 200);
        if body["data"].as_array().is_some_and(|d| !d.is_empty()) || start.elapsed() > WAIT {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen = !attempts["data"].as_array().unwrap().is_empty();
    assert!(seen, "the attempt is logged: {attempts}");
    let a = &attempts["data"][0];
    assert_eq!(a["event_id"], "evt_att");
    assert_eq!(a["status"], 200);
    assert_eq!(a["attempt"], 1);
    assert!(
        webhookd::support::clock::parse_rfc3339(a["at"].as_str().unwrap()).is_some(),
        "{a}"
    );
    assert_eq!(attempts["next_cursor"], Value::Null);
    assert_error(
        &api.get(&format!("{path}/attempts?limit=0")).await,
        400,
        "malformed",
    );
}

/// Reads an endpoint's stats until `done` holds or WAIT passes; answers the last reading.
async fn stats_until(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) || start.elapsed() > WAIT {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn total(stats: &Value, field: &str) -> u64 {
    stats["hours"]
        .as_array()
        .map_or(0, |h| h.iter().filter_map(|h| h[field].as_u64()).sum())
}

/// Asserts the 24 hours SPEC 6 promises: consecutive, oldest first, the last the current
/// hour; every attempt made since `since` (an hour's start) counted in the hours from then
/// on (the current one, unless the hour turned during the test) with its percentiles, and
/// the hours before empty, with zero counts and null latencies.
#[track_caller]
fn assert_hours(stats: &Value, since: i64, success: u64, failure: u64) {
    let hours = stats["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24, "{stats}");
    let starts: Vec<i64> = hours
        .iter()
        .map(|h| webhookd::support::clock::parse_rfc3339(h["start"].as_str().unwrap()).unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == HOUR_MS), "{stats}");
    let current = starts[23];
    assert!(
        current >= since && current == hour_start(current) && current <= now_ms(),
        "the last hour is the current one: {stats}"
    );
    for (h, &start) in hours.iter().zip(&starts) {
        assert_eq!(
            h.as_object().unwrap().len(),
            5,
            "start, success, failure, p50_ms, p99_ms: {h}"
        );
        let attempts = h["success"].as_u64().unwrap() + h["failure"].as_u64().unwrap();
        if attempts == 0 {
            assert!(h["p50_ms"].is_null() && h["p99_ms"].is_null(), "{h}");
        } else {
            assert!(start >= since, "attempts only in the test's hours: {h}");
            let (p50, p99) = (h["p50_ms"].as_u64().unwrap(), h["p99_ms"].as_u64().unwrap());
            assert!(p50 <= p99, "{h}");
        }
    }
    assert_eq!(total(stats, "success"), success, "{stats}");
    assert_eq!(total(stats, "failure"), failure, "{stats}");
    if current == since {
        let last = &hours[23];
        assert_eq!(
            (last["success"].as_u64(), last["failure"].as_u64()),
            (Some(success), Some(failure)),
            "{last}"
        );
        let timed = success + failure > 0;
        assert_eq!(last["p50_ms"].is_u64(), timed, "{last}");
        assert_eq!(last["p99_ms"].is_u64(), timed, "{last}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_each_hours_successes_and_failures_with_their_latencies() {
    let ok = Receiver::start(always(200)).await;
    let failing = Receiver::start(always(500)).await;
    let (_setup, _w, admin) =
        admin_api(Setup::new("api_stats").with("retry:\n  schedule: [50ms]\n  jitter: 0\n")).await;
    let a = admin.as_token(&admin.new_token("acct_a").await);
    let b = admin.as_token(&admin.new_token("acct_b").await);
    let good = a
        .create_endpoint("acct_a", json!({"url": ok.url("/ok"), "filters": ["*"]}))
        .await;
    let bad = a
        .create_endpoint(
            "acct_a",
            json!({"url": failing.url("/bad"), "filters": ["*"]}),
        )
        .await;
    let good_path = format!("{}/stats", ep_path("acct_a", &good["id"]));
    let bad_path = format!("{}/stats", ep_path("acct_a", &bad["id"]));

    // Nothing yet: 24 empty hours.
    let since = hour_start(now_ms());
    let (status, empty) = a.get(&good_path).await;
    assert_eq!(status, 200, "{empty}");
    assert_hours(&empty, since, 0, 0);
    assert_eq!(empty["circuit"], "closed");
    assert_eq!(empty["in_flight"], 0);

    // Three events: three successes at one endpoint; at the other, two failed attempts each
    // (the schedule's one retry), then dead letters.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let (status, _) = a
            .post(
                "/v1/events",
                event(&format!("evt_stats_{i}"), "outbound.sent", "acct_a"),
            )
            .await;
        assert_eq!(status, 202);
    }
    let good_stats = stats_until(&a, &good_path, |s| total(s, "success") >= 3).await;
    assert_hours(&good_stats, since, 3, 0);
    assert_eq!(good_stats["circuit"], "closed");
    let bad_stats = stats_until(&a, &bad_path, |s| total(s, "failure") >= 6).await;
    assert_hours(&bad_stats, since, 0, 6);
    assert_eq!(failing.count(), 6);
    assert_eq!(bad_stats["circuit"], "closed", "6 failures are under 20");
    assert_eq!(bad_stats["in_flight"], 0, "idle: {bad_stats}");

    // Another tenant's endpoint is absent, and so is one that does not exist.
    assert_error(&b.get(&good_path).await, 404, "not_found");
    let other = good_path.replace("acct_a", "acct_b");
    assert_error(&admin.get(&other).await, 404, "not_found");
    assert_error(
        &a.get("/v1/tenants/acct_a/endpoints/ep_nope/stats").await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_the_circuit_state_every_replica_shares() {
    let (setup, _w, api) = admin_api(Setup::new("api_stats_circuit")).await;
    let body = json!({"url": "http://127.0.0.1:9/hook", "filters": ["outbound.*"]});
    let one = api.create_endpoint("acct_a", body.clone()).await;
    let two = api.create_endpoint("acct_a", body).await;
    let path = |ep: &Value| format!("{}/stats", ep_path("acct_a", &ep["id"]));
    assert_eq!(api.get(&path(&one)).await.1["circuit"], "closed");

    let keys = webhookd::db::keys::Keys::new(&setup.prefix, "events");
    let mut r = redis();
    for (ep, state) in [(&one, "open"), (&two, "half_open")] {
        let circuit = json!({"state": state, "failures": 20, "opened_at": now_ms(),
            "probe_at": now_ms() + 5000, "interval_ms": 5000, "last_error": "HTTP 500"});
        serde_json::from_value::<webhookd::deliver::Circuit>(circuit.clone())
            .expect("a breaker::Circuit");
        let _: () = redis::cmd("HSET")
            .arg(keys.circuits())
            .arg(ep["id"].as_str().unwrap())
            .arg(circuit.to_string())
            .query(&mut r)
            .unwrap();
    }
    assert_eq!(api.get(&path(&one)).await.1["circuit"], "open");
    assert_eq!(api.get(&path(&two)).await.1["circuit"], "half_open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_sum_in_flight_over_the_replicas_seen_in_the_last_5s() {
    let (setup, _w, api) = admin_api(Setup::new("api_stats_in_flight")).await;
    let body = json!({"url": "http://127.0.0.1:9/hook", "filters": ["outbound.*"]});
    let one = api.create_endpoint("acct_a", body.clone()).await;
    let two = api.create_endpoint("acct_a", body).await;
    let path = |ep: &Value| format!("{}/stats", ep_path("acct_a", &ep["id"]));
    let id = |ep: &Value| -> std::sync::Arc<str> { ep["id"].as_str().unwrap().into() };

    // Other replicas publish as webhookd's own publisher does; this one publishes nothing.
    let keys = webhookd::db::keys::Keys::new(&setup.prefix, "events");
    let conn = webhookd::db::conn::connect(&redis_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let publish = |replica: &'static str, counts: Vec<(std::sync::Arc<str>, usize)>, at: i64| {
        let (conn, keys) = (conn.clone(), keys.clone());
        async move {
            webhookd::deliver::publish_once(&conn, &keys, replica, counts, at)
                .await
                .unwrap()
        }
    };
    publish("silent", vec![(id(&one), 100)], now_ms() - 10_000).await;
    let start = std::time::Instant::now();
    let busy = loop {
        publish("r1", vec![(id(&one), 3), (id(&two), 0)], now_ms()).await;
        publish("r2", vec![(id(&one), 2)], now_ms()).await;
        let (_, body) = api.get(&path(&one)).await;
        if body["in_flight"] == 5 || start.elapsed() > WAIT {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(busy["in_flight"], 5, "{busy}");
    assert_eq!(api.get(&path(&two)).await.1["in_flight"], 0);

    publish("r1", vec![], now_ms()).await;
    publish("r2", vec![(id(&one), 0)], now_ms()).await;
    assert_eq!(
        api.get(&path(&one)).await.1["in_flight"],
        0,
        "idle once no replica has any in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged_within_the_tenant() {
    let rx_a = Receiver::start(always(500)).await;
    let rx_b = Receiver::start(always(500)).await;
    let (_setup, _w, admin) =
        admin_api(Setup::new("api_dlq").with("retry:\n  schedule: [50ms]\n  jitter: 0\n")).await;
    let a = admin.as_token(&admin.new_token("acct_a").await);
    let ep_a = admin
        .create_endpoint("acct_a", json!({"url": rx_a.url("/a"), "filters": ["*"]}))
        .await;
    let ep_b = admin
        .create_endpoint("acct_b", json!({"url": rx_b.url("/b"), "filters": ["*"]}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (id, tenant) in [("d1", "acct_a"), ("d2", "acct_a"), ("d3", "acct_b")] {
        let (status, _) = admin
            .post("/v1/events", event(id, "outbound.sent", tenant))
            .await;
        assert_eq!(status, 202);
    }
    let dead = |tenant: &'static str, n: usize| {
        let admin = admin.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let (_, body) = admin.get(&format!("/v1/tenants/{tenant}/dlq")).await;
                if body["data"].as_array().is_some_and(|d| d.len() >= n) || start.elapsed() > WAIT {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let list_a = dead("acct_a", 2).await;
    let list_b = dead("acct_b", 1).await;
    let letters = list_a["data"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{list_a}");
    assert!(letters
        .iter()
        .all(|l| l["tenant"] == "acct_a" && l["endpoint_id"] == ep_a["id"]));
    let first = &letters[0];
    for k in [
        "id",
        "tenant",
        "endpoint_id",
        "event_id",
        "event_type",
        "attempts",
        "last_status",
        "last_error",
        "first_attempt_at",
        "dead_at",
        "body",
    ] {
        assert!(first.get(k).is_some(), "dead letter lacks {k}: {first}");
    }
    assert_eq!(first["attempts"], 2);
    assert_eq!(first["last_status"], 500);
    assert_eq!(first["body"]["type"], "outbound.sent");
    assert!(webhookd::support::clock::parse_rfc3339(first["dead_at"].as_str().unwrap()).is_some());
    let b_letter = list_b["data"][0]["id"].as_str().unwrap().to_string();

    // The tenant token sees its own, paginated; another tenant's letter is absent.
    let (status, page) = a.get("/v1/tenants/acct_a/dlq?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = a
        .get(&format!("/v1/tenants/acct_a/dlq?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page2["data"][0]["id"], letters[1]["id"]);
    let (_, filtered) = a
        .get(&format!(
            "/v1/tenants/acct_a/dlq?endpoint={}",
            ep_b["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(filtered["data"], json!([]));
    assert_error(
        &a.delete(&format!("/v1/tenants/acct_a/dlq/{b_letter}"))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &admin
            .delete(&format!("/v1/tenants/acct_a/dlq/{b_letter}"))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &a.delete("/v1/tenants/acct_a/dlq/not-an-id").await,
        404,
        "not_found",
    );
    // A cursor naming a shard this setup has not (it quietly ended the listing).
    assert_error(
        &a.get("/v1/tenants/acct_a/dlq?cursor=3:1-0").await,
        400,
        "malformed",
    );
    // Ids past what Redis can hold are absent or malformed, never a storage error.
    let huge = "98732257723999836500";
    assert_error(
        &a.delete(&format!("/v1/tenants/acct_a/dlq/{huge}")).await,
        404,
        "not_found",
    );
    assert_error(
        &a.get(&format!("/v1/tenants/acct_a/dlq?cursor={huge}"))
            .await,
        400,
        "malformed",
    );
    // An id that names no dead letter is refused, not counted as nothing replayed (it was
    // 200 `{"replayed": 0}`, as for a letter already gone); a shard where there is one too.
    for ids in [
        json!([huge]),
        json!(["1-18446744073709551616"]),
        json!(["bogus"]),
        json!(["2:1-0"]),
        json!([letters[0]["id"], "not an id"]),
    ] {
        let (status, body) = a
            .post("/v1/tenants/acct_a/dlq/replay", json!({ "ids": ids }))
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("invalid")),
            "{ids}: {body}"
        );
        let bad = ids
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(&bad),
            "{body}"
        );
    }

    // Replay takes exactly one selector.
    let replay = "/v1/tenants/acct_a/dlq/replay";
    for body in [
        json!({}),
        json!({"ids": [b_letter], "endpoint": "x"}),
        json!({"since": "yesterday"}),
        json!({"ids": []}),
        json!({"endpoints": "x"}),
    ] {
        assert_error(&a.post(replay, body).await, 422, "invalid");
    }
    let (status, n) = a.post(replay, json!({"ids": [b_letter]})).await;
    assert_eq!(
        (status, n),
        (200, json!({"replayed": 0, "endpoint_deleted": 0})),
        "another tenant's letter is not replayed"
    );
    let before = rx_a.count();
    let (status, n) = a.post(replay, json!({"ids": [letters[0]["id"]]})).await;
    assert_eq!(
        (status, n),
        (200, json!({"replayed": 1, "endpoint_deleted": 0}))
    );
    assert!(
        wait_until(WAIT, || rx_a.count() > before).await,
        "a replay delivers again"
    );
    let (status, n) = a
        .post(replay, json!({"since": "1969-12-31T00:00:00Z"}))
        .await;
    assert_eq!(status, 200);
    assert!(n["replayed"].as_u64().unwrap() >= 1, "{n}");

    // Purge one of B's, by the admin under B's path.
    let (status, _) = admin
        .delete(&format!("/v1/tenants/acct_b/dlq/{b_letter}"))
        .await;
    assert_eq!(status, 204);
    assert_error(
        &admin
            .delete(&format!("/v1/tenants/acct_b/dlq/{b_letter}"))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_without_auth_and_covers_every_route() {
    let setup = Setup::new("api_openapi");
    let _w = Webhookd::start(&setup).await;
    let (status, doc) = Api::admin(&setup).anonymous().get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/event-types", "get"),
        ("/v1/events", "post"),
        ("/v1/ingest/{provider}", "post"),
        ("/v1/tenants/{tenant}/tokens", "post"),
        ("/v1/tenants/{tenant}/tokens", "get"),
        ("/v1/tenants/{tenant}/tokens/{id}", "delete"),
        ("/v1/tenants/{tenant}/endpoints", "post"),
        ("/v1/tenants/{tenant}/endpoints", "get"),
        ("/v1/tenants/{tenant}/endpoints/{id}", "get"),
        ("/v1/tenants/{tenant}/endpoints/{id}", "patch"),
        ("/v1/tenants/{tenant}/endpoints/{id}", "delete"),
        ("/v1/tenants/{tenant}/endpoints/{id}/secret", "get"),
        ("/v1/tenants/{tenant}/endpoints/{id}/secret/rotate", "post"),
        ("/v1/tenants/{tenant}/endpoints/{id}/attempts", "get"),
        ("/v1/tenants/{tenant}/endpoints/{id}/test", "post"),
        ("/v1/tenants/{tenant}/endpoints/{id}/stats", "get"),
        ("/v1/tenants/{tenant}/dlq", "get"),
        ("/v1/tenants/{tenant}/dlq/replay", "post"),
        ("/v1/tenants/{tenant}/dlq/{id}", "delete"),
        ("/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    // What any tenant route can answer is in each one's list: 429 over the rate limit, and
    // 403 for a read-only portal session's (or a CSRF-less) change or secret reveal.
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/tenants/")) {
        for (method, op) in item.as_object().unwrap() {
            let answers = &op["responses"];
            assert!(answers.get("429").is_some(), "{method} {path} lacks 429");
            if method != "get" || path.ends_with("/secret") {
                assert!(answers.get("403").is_some(), "{method} {path} lacks 403");
            }
        }
    }
}

/// Tokens can be listed (never shown again), revoked — refused by every replica at once —
/// and made to expire; tokens made by an older build (no id) are listed and revocable too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_are_listed_revoked_everywhere_and_expire() {
    use sha2::Digest;
    let setup = Setup::new("api_tokens");
    // A token as the previous build stored it: digest → {tenant, created_at}, nothing else.
    let old_token = "whk_made_by_the_previous_build_0123456789";
    let old_digest: String = sha2::Sha256::digest(old_token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let _: () = redis::cmd("HSET")
        .arg(format!("{}tokens", setup.prefix))
        .arg(&old_digest)
        .arg(r#"{"tenant":"acct_k","created_at":"2026-01-01T00:00:00.000Z"}"#)
        .query(&mut redis())
        .unwrap();
    let _w1 = Webhookd::start(&setup).await;
    let mut other = Setup::new("api_tokens");
    other.prefix = setup.prefix.clone();
    let _w2 = Webhookd::start(&other).await;
    let (one, two) = (Api::admin(&setup), Api::admin(&other));

    let (status, made) = one.post("/v1/tenants/acct_k/tokens", json!({})).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["expires_at"], Value::Null);
    let (id, token) = (
        made["id"].as_str().unwrap(),
        made["token"].as_str().unwrap(),
    );
    assert_eq!(
        two.as_token(token)
            .get("/v1/tenants/acct_k/endpoints")
            .await
            .0,
        200
    );

    let (status, list) = one.get("/v1/tenants/acct_k/tokens").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let old_id = format!("tok_{}", &old_digest[..16]);
    assert!(
        ids.contains(&id) && ids.contains(&old_id.as_str()),
        "{list}"
    );
    assert!(
        !list.to_string().contains(token),
        "a listed token is never shown again"
    );
    let mine = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(mine["last_used_at"].is_string(), "{mine}");
    assert_error(
        &one.as_token(token).get("/v1/tenants/acct_k/tokens").await,
        403,
        "forbidden",
    );

    assert_eq!(
        one.delete(&format!("/v1/tenants/acct_k/tokens/{id}"))
            .await
            .0,
        204
    );
    let refused = two
        .as_token(token)
        .get("/v1/tenants/acct_k/endpoints")
        .await;
    assert_error(&refused, 401, "unauthorized");
    assert_error(
        &one.delete(&format!("/v1/tenants/acct_k/tokens/{id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &one.delete(&format!("/v1/tenants/acct_x/tokens/{old_id}"))
            .await,
        404,
        "not_found",
    );

    assert_eq!(
        one.as_token(old_token)
            .get("/v1/tenants/acct_k/endpoints")
            .await
            .0,
        200
    );
    assert_eq!(
        one.delete(&format!("/v1/tenants/acct_k/tokens/{old_id}"))
            .await
            .0,
        204
    );
    assert_error(
        &two.as_token(old_token)
            .get("/v1/tenants/acct_k/endpoints")
            .await,
        401,
        "unauthorized",
    );

    let (status, short) = one
        .post("/v1/tenants/acct_k/tokens", json!({"ttl": "1s"}))
        .await;
    assert_eq!(status, 201, "{short}");
    assert!(short["expires_at"].is_string());
    let short_token = short["token"].as_str().unwrap();
    assert_eq!(
        two.as_token(short_token)
            .get("/v1/tenants/acct_k/endpoints")
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_error(
        &two.as_token(short_token)
            .get("/v1/tenants/acct_k/endpoints")
            .await,
        401,
        "unauthorized",
    );
    assert_error(
        &one.post("/v1/tenants/acct_k/tokens", json!({"ttl": "soon"}))
            .await,
        422,
        "invalid",
    );
}

/// A token's `ttl` whose expiry no RFC 3339 time can carry (after year 9999) is refused: it was
/// taken, and the token answered `expires_at` 1970-01-01 while it never expired. A long ttl
/// that can be written keeps its true date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_ttl_past_year_9999_is_refused_not_dated_1970() {
    let setup = Setup::new("api_token_ttl");
    let _w = Webhookd::start(&setup).await;
    let admin = Api::admin(&setup);
    for ttl in ["1000000000h", "9223372036854775807s", "3000000d"] {
        let got = admin
            .post("/v1/tenants/acct_l/tokens", json!({ "ttl": ttl }))
            .await;
        assert_error(&got, 422, "invalid");
        assert!(
            got.1["error"]["message"].as_str().unwrap().contains("9999"),
            "{ttl}: {}",
            got.1
        );
    }
    let (status, listed) = admin.get("/v1/tenants/acct_l/tokens").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"], json!([]), "a refused ttl made no token");

    let (status, long) = admin
        .post("/v1/tenants/acct_l/tokens", json!({"ttl": "100000d"}))
        .await;
    assert_eq!(status, 201, "{long}");
    let at = webhookd::support::clock::parse_rfc3339(long["expires_at"].as_str().unwrap())
        .expect("an RFC 3339 expiry");
    let want = now_ms() + 100_000 * 86_400_000;
    assert!((at - want).abs() < 60_000, "{long}");
}

/// Each tenant token is rate limited (`http.rate_limit`, per replica): over it answers 429
/// with `Retry-After`. Admin tokens from the config and the publishing routes are exempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_are_rate_limited_with_retry_after() {
    // The setup writes its own `http` section (listen, admin tokens): the limit comes by env.
    let setup = Setup::new("api_rate");
    let _w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_HTTP__RATE_LIMIT", "5")]).await;
    let admin = Api::admin(&setup);
    let token = admin.new_token("acct_r").await;
    let url = format!("{}/v1/tenants/acct_r/endpoints", setup.api());
    let mut limited = None;
    for _ in 0..30 {
        let got = http_with_headers(Method::GET, &url, Some(&token), None).await;
        if got.0 == 429 {
            limited = Some(got);
            break;
        }
    }
    let (_, headers, body) = limited.expect("30 quick requests never met the limit of 5/s");
    assert!(body.contains("too_many_requests"), "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    for _ in 0..30 {
        assert_eq!(
            admin.get("/v1/tenants/acct_r/endpoints").await.0,
            200,
            "admins are exempt"
        );
    }
    let publisher = admin.as_token(&token);
    for i in 0..30 {
        let (status, body) = publisher
            .post(
                "/v1/events",
                event(&format!("evt_rl{i}"), "outbound.sent", "acct_r"),
            )
            .await;
        assert_eq!(status, 202, "publishing is exempt: {body}");
    }
}

/// A PATCH refused as invalid changes nothing: not the record, and not the failure streak a
/// valid `{"disabled": false}` would have cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_patch_that_would_enable_keeps_the_failure_streak() {
    let rx = Receiver::start(always(200)).await;
    let s = Streaked::start("api_patch_invalid", &rx).await;
    let (api, ep) = (&s.api, &s.ep);
    let path = ep_path("acct_a", &ep["id"]);
    assert_error(
        &api.patch(
            &path,
            json!({"disabled": false, "filters": ["outbound.bounce"]}),
        )
        .await,
        422,
        "invalid",
    );
    assert!(s.streak(), "a refused PATCH cleared the failure streak");
    let (_, now) = api.get(&path).await;
    assert_eq!(now["disabled"], true);
}

/// A webhookd with one disabled endpoint of `acct_a` (posting to `rx`) whose failure streak is
/// set: where re-enabling is judged.
struct Streaked {
    setup: Setup,
    _w: Webhookd,
    api: Api,
    ep: Value,
}

impl Streaked {
    async fn start(name: &str, rx: &Receiver) -> Streaked {
        let setup = Setup::new(name);
        let _w = Webhookd::start(&setup).await;
        let api = Api::admin(&setup);
        let ep = api
            .create_endpoint(
                "acct_a",
                json!({"url": rx.url("/e"), "filters": ["*"], "disabled": true}),
            )
            .await;
        let s = Streaked { setup, _w, api, ep };
        let _: () = redis::cmd("HSET")
            .arg(s.failing_key())
            .arg(s.id())
            .arg(1)
            .query(&mut redis())
            .unwrap();
        s
    }

    fn id(&self) -> &str {
        self.ep["id"].as_str().unwrap()
    }

    fn failing_key(&self) -> String {
        format!("{}{{endpoints}}:failing", self.setup.prefix)
    }

    /// Whether the endpoint's failure streak is still stored.
    fn streak(&self) -> bool {
        redis::cmd("HEXISTS")
            .arg(self.failing_key())
            .arg(self.id())
            .query(&mut redis())
            .unwrap()
    }
}

/// Fifty clients changing one endpoint at once: some PATCHes answered 503 "storage
/// unavailable" (Redis was fine: every try lost the race). A change that keeps losing now
/// waits its turn, and one that never gets it is a 409, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_of_one_endpoint_never_answer_5xx() {
    let (_setup, _w, admin) = admin_api(Setup::new("api_race")).await;
    let ep = admin
        .create_endpoint(
            "acct_r",
            json!({"url": "https://example.com/race", "filters": ["*"]}),
        )
        .await;
    let path = ep_path("acct_r", &ep["id"]);
    let mut tasks = Vec::new();
    for c in 0..50 {
        let (api, path) = (admin.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                let body = json!({"description": format!("client {c} change {i}")});
                statuses.push(api.patch(&path, body).await.0);
            }
            statuses
        }));
    }
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *by_status.entry(s).or_default() += 1;
        }
    }
    assert!(
        by_status.keys().all(|s| *s == 200 || *s == 409),
        "{by_status:?}"
    );
    assert!(
        by_status.get(&200).copied().unwrap_or(0) >= 450,
        "{by_status:?}"
    );
    let (status, got) = admin.get(&path).await;
    assert_eq!(status, 200);
    assert!(
        got["description"].as_str().unwrap().starts_with("client "),
        "{got}"
    );
}

/// A tenant could create endpoints without end (3,010 in one probe, each held by every
/// replica): the API stops at 10,000 a tenant, with a 409 saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_has_at_most_ten_thousand_endpoints() {
    let (setup, _w, admin) = admin_api(Setup::new("api_many")).await;
    let body = json!({"url": "https://example.com/many", "filters": ["*"]});
    let first = admin.create_endpoint("acct_m", body.clone()).await;
    // The other 9,999 as the index holds them (creating them one by one would take minutes).
    let key = format!("{}{{endpoints}}:tenant:acct_m", setup.prefix);
    let mut r = redis();
    for chunk in (1..10_000).collect::<Vec<_>>().chunks(1000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&key);
        for i in chunk {
            cmd.arg(0).arg(format!("ep_filler_{i:05}"));
        }
        let _: i64 = cmd.query(&mut r).unwrap();
    }
    let refused = admin
        .post("/v1/tenants/acct_m/endpoints", body.clone())
        .await;
    assert_error(&refused, 409, "conflict");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10000"),
        "{refused:?}"
    );
    // Another tenant is not held back, and a deletion makes room.
    assert_eq!(
        admin
            .post("/v1/tenants/acct_n/endpoints", body.clone())
            .await
            .0,
        201
    );
    assert_eq!(admin.delete(&ep_path("acct_m", &first["id"])).await.0, 204);
    assert_eq!(
        admin.post("/v1/tenants/acct_m/endpoints", body).await.0,
        201
    );
}

/// A tenant's dead letters were found by scanning the whole stream, 20,000 entries a page:
/// one whose letters came after another tenant's 20,500 got an empty first page with a
/// cursor, which the portal shows as "no dead letters". Letters from before this build (here
/// written straight to the stream before it starts) are indexed by tenant when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_dead_letters_are_on_its_first_page_whatever_precedes_them() {
    let setup = Setup::new("dlq_index");
    let dlq = format!("{}dlq", setup.prefix);
    let mut r = redis();
    let letter = |tenant: &str, i: usize| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&dlq).arg("*");
        for (k, v) in [
            ("tenant", tenant.to_string()),
            ("endpoint_id", format!("ep_{tenant}")),
            ("event_id", format!("evt_{i}")),
            ("event_type", "outbound.sent".into()),
            ("attempts", "3".into()),
            ("last_status", "500".into()),
            ("last_error", "HTTP 500".into()),
            ("first_attempt_at", "1".into()),
            ("dead_at", webhookd::support::clock::now_ms().to_string()),
            ("published_at", "1".into()),
            ("body", "{}".into()),
        ] {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    for chunk in (0..20_500).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.add_command(letter("t_big", *i)).ignore();
        }
        let _: () = pipe.query(&mut r).unwrap();
    }
    for i in 0..3 {
        let _: String = letter("t_small", i).query(&mut r).unwrap();
    }
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let mut page = json!(null);
    // The catch-up runs as the replica starts; until it has, lists scan as before.
    for _ in 0..100 {
        let (status, got) = api.get("/v1/tenants/t_small/dlq").await;
        assert_eq!(status, 200, "{got}");
        page = got;
        if page["data"].as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["evt_0", "evt_1", "evt_2"], "{page}");
    assert_eq!(page["next_cursor"], json!(null));
    // Pages of the big tenant still go in order, and a purge leaves its index.
    let (_, first) = api.get("/v1/tenants/t_big/dlq?limit=2").await;
    let ids: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(first["next_cursor"], json!(ids[1]));
    let (status, _) = api
        .delete(&format!("/v1/tenants/t_big/dlq/{}", ids[0]))
        .await;
    assert_eq!(status, 204);
    let (_, again) = api.get("/v1/tenants/t_big/dlq?limit=1").await;
    assert_eq!(again["data"][0]["id"], json!(ids[1]));
    let cursor = &ids[1];
    let (_, next) = api
        .get(&format!("/v1/tenants/t_big/dlq?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next["data"][0]["event_id"], "evt_2", "{next}");
}
