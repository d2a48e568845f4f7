//! SPEC 6 and 6a, the portal's sessions: a one-time link minted by an admin or the tenant's
//! own token is exchanged for an HttpOnly, SameSite=Lax cookie; the pages call the API with
//! it; every change needs the page's CSRF token; a read-only session changes nothing and
//! reveals no secret; a tenant's session reaches nothing of another tenant's and not the
//! operator view. Real webhookd, real Redis, HTTP as a browser sends it.

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use crate::api_common::*;
use crate::common::*;

/// A browser's view of one portal session: its cookie and the page's CSRF token.
pub(crate) struct Browser {
    pub(crate) base: String,
    pub(crate) cookie: String,
    csrf: String,
    pub(crate) page: String,
}

/// Mints a link for `tenant` with `body` as `token` (admin when `None`); answers the link.
pub(crate) async fn mint(setup: &Setup, path: &str, token: &str, body: Value) -> (u16, Value) {
    Api::admin(setup).as_token(token).post(path, body).await
}

/// Opens a link as a browser does: the login answers a redirect with the cookie, then the page.
pub(crate) async fn open(setup: &Setup, url: &str) -> Browser {
    let full = if url.starts_with('/') {
        format!("{}{url}", setup.api())
    } else {
        url.replacen("https://hooks.example.com", &setup.api(), 1)
    };
    let (status, headers, body) = http_request(Method::GET, &full, &[], None).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(headers["location"], "/portal/");
    let set = headers["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let (status, _, page) = http_request(
        Method::GET,
        &format!("{}/portal/", setup.api()),
        &[("cookie", cookie.clone())],
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    Browser {
        base: setup.api(),
        cookie,
        csrf,
        page,
    }
}

impl Browser {
    /// A portal page at `path` as this session sees it: its status and HTML.
    pub(crate) async fn page_at(&self, path: &str) -> (u16, String) {
        let (status, _, page) = http_request(
            Method::GET,
            &format!("{}{path}", self.base),
            &[("cookie", self.cookie.clone())],
            None,
        )
        .await;
        (status, page)
    }

    /// An API call from the page: the cookie, and the CSRF token when `with_csrf`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        with_csrf: bool,
    ) -> (u16, Value) {
        let mut headers = vec![("cookie", self.cookie.clone())];
        if with_csrf {
            headers.push(("x-csrf-token", self.csrf.clone()));
        }
        let (status, _, text) = http_request(
            method,
            &format!("{}{path}", self.base),
            &headers,
            body.map(|b| b.to_string()),
        )
        .await;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json)
    }

    /// Creates an endpoint of tenant t1 from the page (with its CSRF token).
    async fn create_t1_endpoint(&self) -> (u16, Value) {
        let path = "/v1/tenants/t1/endpoints";
        self.call(Method::POST, path, Some(new_endpoint()), true)
            .await
    }
}

/// A session as a browser gets one: a link minted at `path` as `token`, then opened.
async fn session(setup: &Setup, path: &str, token: &str) -> Browser {
    let (status, link) = mint(setup, path, token, json!({})).await;
    assert_eq!(status, 201, "{link}");
    open(setup, link["url"].as_str().unwrap()).await
}

/// A link to tenant t1's portal, minted by an admin with `body`.
async fn t1_link(setup: &Setup, body: Value) -> Value {
    let (status, link) = mint(setup, "/v1/tenants/t1/portal-sessions", ADMIN_TOKEN, body).await;
    assert_eq!(status, 201, "{link}");
    link
}

fn new_endpoint() -> Value {
    json!({"url": "https://example.com/hook", "filters": ["outbound.*"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opens_one_session_with_an_httponly_samesite_lax_cookie_and_never_again() {
    let setup = Setup::new("portal_link").endpoint("ep_a", "t1", "https://example.com/a", &["*"]);
    let w = Webhookd::start(&setup).await;
    let link = t1_link(&setup, json!({})).await;
    let url = link["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("/portal/login?token=wpl_"), "{url}");
    assert!(
        link["expires_at"].as_str().unwrap().ends_with('Z'),
        "{link}"
    );

    let login = format!("{}{url}", setup.api());
    let (status, headers, _) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"], "/portal/",
        "the token leaves the address bar"
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let cookie = headers["set-cookie"].to_str().unwrap();
    for flag in [
        "webhookd_portal=wps_",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http without public_url: {cookie}"
    );

    let (status, _, page) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 410, "a used link is refused: {page}");
    assert!(page.contains("already used"), "{page}");

    let session = cookie.split(';').next().unwrap().to_string();
    let (status, headers, page) = http_request(
        Method::GET,
        &format!("{}/portal/", setup.api()),
        &[("cookie", session)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("https://example.com/a") && page.contains("ep_a"),
        "{page}"
    );
    assert_eq!(headers["x-frame-options"], "DENY", "never in a frame");
    let token = url.split("token=").nth(1).unwrap();
    assert!(
        !w.log_text().contains(token),
        "the link's token is never logged"
    );
    let (status, _, page) =
        http_request(Method::GET, &format!("{}/portal/", setup.api()), &[], None).await;
    assert_eq!(status, 401, "no cookie, no portal: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_absolute_under_public_url_and_its_https_makes_the_cookie_secure() {
    let setup =
        Setup::new("portal_public").with_http("  public_url: \"https://hooks.example.com/\"\n");
    let _w = Webhookd::start(&setup).await;
    let link = t1_link(&setup, json!({})).await;
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://hooks.example.com/portal/login?token=wpl_"),
        "{url}"
    );
    let login = url.replacen("https://hooks.example.com", &setup.api(), 1);
    let (status, headers, _) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 303);
    assert!(headers["set-cookie"].to_str().unwrap().contains("; Secure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused() {
    let setup = Setup::new("portal_expired");
    let _w = Webhookd::start(&setup).await;
    let link = t1_link(&setup, json!({"ttl": "1s"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let login = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
    let (status, _, page) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 410, "{page}");
    for bad in ["0s", "8d", "soon"] {
        let (status, body) = mint(
            &setup,
            "/v1/tenants/t1/portal-sessions",
            ADMIN_TOKEN,
            json!({"ttl": bad}),
        )
        .await;
        assert_eq!(status, 422, "ttl {bad}: {body}");
    }
}

/// A portal link and its session act for the token that minted them: revoking that token
/// ends both, and a link ends no later than the token. Before, a revoked or expired token's
/// links still opened and its sessions could still change things for their whole TTL (up to
/// seven days), so revoking a leaked token did not lock its holder out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_token_that_minted_a_link_ends_the_link_and_its_session() {
    let setup = Setup::new("portal_revoke");
    let _w = Webhookd::start(&setup).await;
    let admin = Api::admin(&setup);
    let (status, made) = admin.post("/v1/tenants/t1/tokens", json!({})).await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap();
    let path = "/v1/tenants/t1/portal-sessions";
    let (_, first) = mint(&setup, path, token, json!({"ttl": "7d"})).await;
    let (_, second) = mint(&setup, path, token, json!({"ttl": "7d"})).await;
    let session = open(&setup, first["url"].as_str().unwrap()).await;
    let (status, _) = session
        .call(Method::GET, "/v1/tenants/t1/endpoints", None, false)
        .await;
    assert_eq!(status, 200);

    let (status, _) = admin
        .delete(&format!(
            "/v1/tenants/t1/tokens/{}",
            made["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 204);
    let (status, _) = session
        .call(Method::GET, "/v1/tenants/t1/endpoints", None, false)
        .await;
    assert_eq!(status, 401, "the session ended with its token");
    let (status, _) = session.create_t1_endpoint().await;
    assert_eq!(status, 401);
    assert_eq!(session.page_at("/portal/").await.0, 401);
    let login = format!("{}{}", setup.api(), second["url"].as_str().unwrap());
    let (status, _, page) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 410, "the unopened link ended too: {page}");

    // A link ends no later than the token that made it.
    let (_, brief) = admin
        .post("/v1/tenants/t1/tokens", json!({"ttl": "1s"}))
        .await;
    let (status, link) = mint(&setup, path, brief["token"].as_str().unwrap(), json!({})).await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["expires_at"], brief["expires_at"], "{link} {brief}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let login = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
    assert_eq!(http_request(Method::GET, &login, &[], None).await.0, 410);
}

/// An endpoint whose attempts fail is not shown as healthy while its circuit is still closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_below_the_breaker_threshold_is_not_shown_healthy() {
    let rx = Receiver::start(always(500)).await;
    let setup = Setup::new("portal_failing")
        .with("retry:\n  schedule: [1h]\n")
        .endpoint("ep_bad", "t1", &rx.url("/bad"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let session = open(
        &setup,
        t1_link(&setup, json!({})).await["url"].as_str().unwrap(),
    )
    .await;
    assert!(session.page.contains("healthy"), "{}", session.page);
    let env = [envelope("evt_fails", "outbound.sent", "t1", json!({}))];
    publish(&mut redis(), &setup.stream(), &env);
    assert_eq!(rx.wait_for(1, Duration::from_secs(20)).await.len(), 1);
    let shown = wait_until_async(Duration::from_secs(10), || async {
        session
            .page_at("/portal/")
            .await
            .1
            .contains("failing (retrying)")
    })
    .await;
    assert!(shown, "{}", session.page_at("/portal/").await.1);
}

/// Every page of the portal can sign out, not only the endpoints list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_the_sign_out_button() {
    let setup =
        Setup::new("portal_sign_out").endpoint("ep_a", "t1", "https://example.com/a", &["*"]);
    let _w = Webhookd::start(&setup).await;
    let session = open(
        &setup,
        t1_link(&setup, json!({})).await["url"].as_str().unwrap(),
    )
    .await;
    for path in [
        "/portal/",
        "/portal/dlq",
        "/portal/endpoints/ep_a",
        "/portal/endpoints/ep_a/verify",
    ] {
        let (status, page) = session.page_at(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(page.contains("id=\"logout\""), "{path} has no sign-out");
    }
}

/// A mangled link address is answered with the portal's page, not a framework's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mangled_link_gets_the_portal_page() {
    let setup = Setup::new("portal_mangled");
    let _w = Webhookd::start(&setup).await;
    for query in ["token=a&token=b", "", "token="] {
        let url = format!("{}/portal/login?{query}", setup.api());
        let (status, headers, page) = http_request(Method::GET, &url, &[], None).await;
        assert_eq!(status, 400, "{query}: {page}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{query}: {headers:?}"
        );
    }
}

/// A HEAD of a link (a link checker's, a chat preview's) does not use it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_leaves_a_link_usable() {
    let setup = Setup::new("portal_head");
    let _w = Webhookd::start(&setup).await;
    let link = t1_link(&setup, json!({})).await;
    let login = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
    let (status, headers, _) = http_request(Method::HEAD, &login, &[], None).await;
    assert_eq!(status, 204);
    assert!(headers.get("set-cookie").is_none());
    open(&setup, link["url"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_csrf_token_and_a_read_only_session_changes_and_reveals_nothing() {
    let setup = Setup::new("portal_csrf");
    let _w = Webhookd::start(&setup).await;
    let link = t1_link(&setup, json!({})).await;
    let b = open(&setup, link["url"].as_str().unwrap()).await;
    let path = "/v1/tenants/t1/endpoints";
    let (status, body) = b
        .call(Method::POST, path, Some(new_endpoint()), false)
        .await;
    assert_eq!(status, 403, "no CSRF token: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("CSRF"),
        "{body}"
    );
    let (status, created) = b.create_t1_endpoint().await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let secret = format!("{path}/{id}/secret");
    assert_eq!(b.call(Method::GET, &secret, None, false).await.0, 200);

    let link = t1_link(&setup, json!({"read_only": true})).await;
    let ro = open(&setup, link["url"].as_str().unwrap()).await;
    assert!(ro.page.contains("read-only"), "{}", ro.page);
    let (status, list) = ro.call(Method::GET, path, None, false).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        ro.call(Method::GET, &secret, None, false).await.0,
        403,
        "no secret revealed"
    );
    let (status, body) = ro.create_t1_endpoint().await;
    assert_eq!(status, 403, "read-only: {body}");
    let (status, _) = ro
        .call(Method::DELETE, &format!("{path}/{id}"), None, true)
        .await;
    assert_eq!(status, 403);
    let rotate = format!("{path}/{id}/secret/rotate");
    assert_eq!(ro.call(Method::POST, &rotate, None, true).await.0, 403);
    assert_eq!(
        Api::admin(&setup).get(path).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_session_reaches_nothing_of_another_tenant_nor_the_operator_view() {
    let setup = Setup::new("portal_scope").endpoint("ep_b", "t2", "https://example.com/b", &["*"]);
    let _w = Webhookd::start(&setup).await;
    let admin = Api::admin(&setup);
    let (status, tok) = admin.post("/v1/tenants/t1/tokens", json!({})).await;
    assert_eq!(status, 201, "{tok}");
    let tenant_token = tok["token"].as_str().unwrap();
    let (status, link) = mint(
        &setup,
        "/v1/tenants/t1/portal-sessions",
        tenant_token,
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "the tenant's own token mints its link: {link}");
    let (status, _) = mint(
        &setup,
        "/v1/tenants/t2/portal-sessions",
        tenant_token,
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "not another tenant's");
    let (status, _) = mint(&setup, "/v1/portal-sessions", tenant_token, json!({})).await;
    assert_eq!(status, 403, "nor the operator view's");

    let b = open(&setup, link["url"].as_str().unwrap()).await;
    assert!(!b.page.contains("ep_b"), "{}", b.page);
    let (status, page) = b.page_at("/portal/endpoints/ep_b").await;
    assert_eq!(status, 404, "another tenant's endpoint page: {page}");
    assert!(!page.contains("example.com/b"), "{page}");
    for path in [
        "/v1/tenants/t2/endpoints/ep_b",
        "/v1/tenants/t2/endpoints",
        "/v1/tenants/t2/dlq",
    ] {
        assert_eq!(
            b.call(Method::GET, path, None, false).await.0,
            404,
            "{path}"
        );
    }
    let patch = json!({"disabled": true});
    let (status, _) = b
        .call(
            Method::PATCH,
            "/v1/tenants/t2/endpoints/ep_b",
            Some(patch),
            true,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        b.call(Method::GET, "/v1/tenants/t1/tokens", None, false)
            .await
            .0,
        403,
        "admin only"
    );
    let (status, body) = b
        .call(Method::POST, "/v1/portal-sessions", Some(json!({})), true)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = b
        .call(
            Method::POST,
            "/v1/tenants/t1/portal-sessions",
            Some(json!({})),
            true,
        )
        .await;
    assert_eq!(status, 403, "a session mints no further link: {body}");

    let op = session(&setup, "/v1/portal-sessions", ADMIN_TOKEN).await;
    assert!(op.page.contains("Operator view"), "{}", op.page);
    let (status, _) = op.create_t1_endpoint().await;
    assert_eq!(status, 403, "the operator view changes nothing");
    assert_eq!(
        op.call(
            Method::GET,
            "/v1/tenants/t2/endpoints/ep_b/secret",
            None,
            false
        )
        .await
        .0,
        403
    );
}

/// A tenant with more endpoints than a page holds pages through them all; pages and assets
/// are sent gzipped to a browser that takes it, and the assets' URLs carry their version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_page_pages_through_every_endpoint_and_is_sent_compressed() {
    let mut setup = Setup::new("portal_pages_of");
    for i in 0..260 {
        setup = setup.endpoint(
            &format!("ep_{i:03}"),
            "many",
            &format!("https://example.com/{i}"),
            &["*"],
        );
    }
    let _w = Webhookd::start(&setup).await;
    let b = session(&setup, "/v1/tenants/many/portal-sessions", ADMIN_TOKEN).await;
    let rows = |page: &str| page.matches("<tr data-id=").count();
    assert_eq!(rows(&b.page), 250);
    assert!(b.page.contains("Endpoints 1–250 of 260."), "{}", b.page);
    assert!(!b.page.contains("First page"));
    let next = b
        .page
        .split("href=\"/portal/?after=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        .to_string();
    assert_eq!(next, "ep_249");
    let get = |path: String, gzip: bool| {
        let b = &b;
        async move {
            let mut headers = vec![("cookie", b.cookie.clone())];
            if gzip {
                headers.push(("accept-encoding", "gzip".to_string()));
            }
            http_request(Method::GET, &format!("{}{path}", b.base), &headers, None).await
        }
    };
    let (status, _, second) = get(format!("/portal/?after={next}"), false).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&second), 10, "{second}");
    assert!(second.contains("Endpoints 251–260 of 260.") && second.contains("ep_259"));
    assert!(second.contains("First page") && !second.contains("rel=\"next\""));

    let (_, plain_headers, plain) = get("/portal/".into(), false).await;
    assert!(plain_headers.get("content-encoding").is_none());
    let (status, headers, zipped) = get("/portal/".into(), true).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert!(
        zipped.len() * 5 < plain.len(),
        "{} bytes gzipped, {} plain",
        zipped.len(),
        plain.len()
    );
    let version = plain
        .split("/portal/assets/portal.js?v=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the script's URL carries its version");
    assert_eq!(version.len(), 12, "{version}");
    assert!(plain.contains(&format!("/portal/assets/portal.css?v={version}")));
    let (status, headers, _) = get(format!("/portal/assets/portal.js?v={version}"), true).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=86400"));
}

/// Minting links was bounded only by the rate limit times the longest ttl (30 million in 7
/// days from one tenant token): one token has at most 1,000 unused links, and using one
/// frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_has_at_most_a_thousand_unused_portal_links() {
    use sha2::Digest;
    let setup = Setup::new("portal_many");
    let _w = Webhookd::start(&setup).await;
    // 999 unused links of the admin token, as the index holds them (minting each through the
    // API would be a thousand requests).
    let minter: String = sha2::Sha256::digest(ADMIN_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("{}portal:links-of:{minter}", setup.prefix);
    let later = webhookd::support::clock::now_ms() + 3_600_000;
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(&key);
    for i in 0..999 {
        cmd.arg(later).arg(format!("filler{i}"));
    }
    let _: i64 = cmd.query(&mut redis()).unwrap();
    let link = t1_link(&setup, json!({})).await;
    let (status, refused) = mint(
        &setup,
        "/v1/tenants/t1/portal-sessions",
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000"),
        "{refused}"
    );
    let login = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
    let (status, _, _) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 303);
    t1_link(&setup, json!({})).await;
}

/// A session counts against the token that minted its link: each session had 8 request
/// bodies of its own, so one token's 60 sessions held 480 half-sent bodies of 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_sessions_share_its_request_bodies() {
    use tokio::io::AsyncWriteExt;
    let setup = Setup::new("portal_bodies").endpoint("ep_a", "t1", "https://example.com/a", &["*"]);
    let _w = Webhookd::start(&setup).await;
    let token = Api::admin(&setup).new_token("t1").await;
    let browser = session(&setup, "/v1/tenants/t1/portal-sessions", &token).await;
    let addr = setup.api().trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/tenants/t1/endpoints HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"url\": \"https://"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = browser.create_t1_endpoint().await;
    assert_eq!(status, 429, "{body}");
    drop(held);
}
