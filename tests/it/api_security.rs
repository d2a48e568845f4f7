//! Security promises of the management API: the SSRF guard at registration (SPEC 5), and
//! tokens and secrets that never show in logs or in Redis in clear (SPEC 6).

use std::time::Duration;

use crate::api_common::*;
use crate::common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_internal_target_is_refused_at_registration() {
    // No allowed_cidrs at all: the loopback allowance of the default test setup is not added.
    let setup = Setup::new("api_ssrf").with("delivery:\n  allow_http: true\n");
    let w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let targets = [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/hook",
        "http://10.0.0.1/hook",
        "http://10.255.255.254/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.255/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://100.127.255.254/hook",
        "http://[fc00::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://[ff02::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::]/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "https://localhost/hook",
        "http://localhost:8080/hook",
        // Numeric host spellings the resolver turns into 127.0.0.1.
        "http://2130706433/hook",
        "http://0x7f000001/hook",
    ];
    for url in targets {
        let got = api
            .post(
                "/v1/tenants/acct_a/endpoints",
                json!({"url": url, "filters": ["*"]}),
            )
            .await;
        assert_error(&got, 422, "invalid");
        let msg = got.1["error"]["message"].as_str().unwrap();
        assert!(msg.contains("not allowed"), "{url}: {msg}");
    }
    let (status, list) = api.get("/v1/tenants/acct_a/endpoints").await;
    assert_eq!(
        (status, list),
        (200, json!({"data": [], "next_cursor": null}))
    );

    // Changing a URL to an internal one is refused the same way.
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": "http://203.0.113.10/hook", "filters": ["*"]}),
        )
        .await;
    let path = format!(
        "/v1/tenants/acct_a/endpoints/{}",
        ep["id"].as_str().unwrap()
    );
    for url in [
        "http://127.0.0.1/x",
        "http://localhost/x",
        "http://[::ffff:10.0.0.1]/x",
    ] {
        assert_error(&api.patch(&path, json!({"url": url})).await, 422, "invalid");
    }
    let (_, still) = api.get(&path).await;
    assert_eq!(still["url"], "http://203.0.113.10/hook");
    assert!(!w.log_text().contains("panicked"));
}

/// Every value stored under `prefix`, whatever the key's type.
pub(crate) fn dump_redis(prefix: &str) -> Vec<(String, String)> {
    let mut r = redis();
    let mut out = Vec::new();
    let mut cursor = 0u64;
    let mut scanned = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut r)
            .unwrap();
        scanned.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(!scanned.is_empty());
    for key in scanned {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut r).unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query(&mut r).unwrap()],
            "hash" => {
                // Binary fields too (the duplicate check's fingerprints): read as bytes.
                let m: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&key).query(&mut r).unwrap();
                m.iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect()
            }
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut r)
                .unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut r).unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut r)
                .unwrap(),
            "stream" => {
                let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query(&mut r)
                    .unwrap();
                entries
                    .into_iter()
                    .flat_map(|(id, fields)| std::iter::once(id).chain(fields))
                    .collect()
            }
            other => panic!("unexpected key type {other} for {key}"),
        };
        out.extend(values.into_iter().map(|v| (key.clone(), v)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_secrets_never_appear_in_logs_or_in_redis_in_clear() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("api_secrets");
    let w = Webhookd::start(&setup).await;
    let admin = Api::admin(&setup);
    let token = admin.new_token("acct_a").await;
    let tenant = admin.as_token(&token);
    let generated = tenant
        .create_endpoint("acct_a", json!({"url": rx.url("/g"), "filters": ["*"]}))
        .await;
    let supplied = tenant
        .create_endpoint(
            "acct_a",
            json!({"url": rx.url("/s"), "filters": ["*"], "secret": SECRET}),
        )
        .await;
    let path = format!(
        "/v1/tenants/acct_a/endpoints/{}",
        supplied["id"].as_str().unwrap()
    );
    let (_, rotated) = tenant
        .post(&format!("{path}/secret/rotate"), json!({}))
        .await;
    // Failed requests carrying secrets must not log them either.
    let bad = tenant
        .post(
            "/v1/tenants/acct_a/endpoints",
            json!({"url": "nope", "filters": ["*"], "secret": SECRET}),
        )
        .await;
    assert_eq!(bad.0, 422);
    let refused = admin
        .as_token("whk_not-a-real-token-but-secretish")
        .get("/v1/event-types")
        .await;
    assert_eq!(refused.0, 401, "an unknown token is refused");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = tenant
        .post("/v1/events", event("evt_s1", "outbound.sent", "acct_a"))
        .await;
    assert_eq!(status, 202);
    // Deliveries happened, so their log lines are part of what is scanned below.
    assert!(rx.wait_for(2, Duration::from_secs(20)).await.len() >= 2);
    let (status, _) = tenant.post(&format!("{path}/test"), json!({})).await;
    assert_eq!(status, 200);

    let secrets: Vec<String> = [
        generated["secret"].clone(),
        supplied["secret"].clone(),
        rotated["secret"].clone(),
        Value::from(token.clone()),
    ]
    .iter()
    .map(|v| v.as_str().unwrap().to_string())
    .collect();
    // The base64 key part alone must not show either.
    let needles: Vec<String> = secrets
        .iter()
        .flat_map(|s| {
            let bare = s
                .trim_start_matches("whsec_")
                .trim_start_matches("whk_")
                .to_string();
            [s.clone(), bare]
        })
        .chain([
            "whk_not-a-real-token-but-secretish".to_string(),
            ADMIN_TOKEN.to_string(),
        ])
        .collect();

    let log = w.log_text();
    assert!(!log.is_empty(), "webhookd logs something");
    for n in &needles {
        assert!(!log.contains(n.as_str()), "the log shows a secret or token");
    }
    let values = dump_redis(&setup.prefix);
    assert!(
        values.iter().any(|(k, _)| k.ends_with("tokens")),
        "the token digest is stored"
    );
    for (key, value) in &values {
        for n in &needles {
            assert!(
                !value.contains(n.as_str()) && !key.contains(n.as_str()),
                "{key} holds a secret or token in clear"
            );
        }
    }
}

/// Anyone who could reach the API port, with no token, stopped every delivery: idle
/// connections were kept for ever (20,000 of them took every file descriptor, so no attempt
/// could open one), and so was one sending its request head a byte a second. Both are closed
/// once the head has taken 10 s (`app::listener`); a healthy one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dripping_connections_to_the_api_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = Setup::new("api_idle");
    let _w = Webhookd::start(&setup).await;
    let addr = setup.api().trim_start_matches("http://").to_string();
    let opened = std::time::Instant::now();
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut drip = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A kept-alive connection that answered a request, then went quiet.
    let mut used = tokio::net::TcpStream::connect(&addr).await.unwrap();
    used.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = used.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let dripping = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if drip.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // Each read ends when the server closes the connection (EOF, or a reset).
    let closed = |mut s: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    };
    let (idle_closed, used_closed) = tokio::join!(closed(idle), closed(used));
    let took = opened.elapsed();
    assert!(idle_closed && used_closed, "connections kept for 30 s");
    assert!(took < Duration::from_secs(20), "closed after {took:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(30), dripping)
            .await
            .is_ok(),
        "a head sent a byte each 0.5 s was still read after 30 s"
    );
    // A request that comes promptly is still answered.
    let (status, _) = http(
        hyper::Method::GET,
        &format!("{}/healthz", setup.api()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
}

/// A tenant token could pin the replica's memory: each request body is held until complete,
/// and 600 half-sent 1 MiB bodies (under the rate limit) held 660 MB with no end. Now a body
/// declared too large is refused before it is sent, one token sends at most 8 at once, and a
/// body that stops arriving is given up after 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_hold_request_bodies_without_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (setup, _w, admin) = admin_api(Setup::new("api_bodies")).await;
    let token = admin.new_token("acct_b").await;
    let addr = setup.api().trim_start_matches("http://").to_string();
    let head = |length: usize| {
        format!(
            "POST /v1/tenants/acct_b/endpoints HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    let answer = |mut s: tokio::net::TcpStream, within: Duration| async move {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            _ => String::new(),
        }
    };
    // Over http.max_body_bytes (1 MiB): 413 without sending a byte of it.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head(5 << 20).as_bytes()).await.unwrap();
    let got = answer(s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    // Eight bodies half sent and held; a ninth is refused (429) at once.
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(head(1000).as_bytes()).await.unwrap();
        s.write_all(b"{\"url\": \"https://example.com/")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head(1000).as_bytes()).await.unwrap();
    let got = answer(s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 429"), "{got}");
    // The held ones are given up (400) 20 s after they began, not kept.
    for s in held {
        let got = answer(s, Duration::from_secs(40)).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        assert!(got.contains("did not arrive within 20 s"), "{got}");
    }
    assert!(started.elapsed() < Duration::from_secs(35));
    // And the token is usable again.
    let (status, _) = admin
        .as_token(&token)
        .post(
            "/v1/tenants/acct_b/endpoints",
            serde_json::json!({"url": "https://example.com/hook", "filters": ["*"]}),
        )
        .await;
    assert_eq!(status, 201);
}

/// A client that sent requests and then stopped reading the answers held its connection for
/// ever (one of the listener's 1,024, with nothing to close it): a write that has waited
/// 10 s for the client to read now ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answers_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = Setup::new("api_slowread");
    let _w = Webhookd::start(&setup).await;
    let (status, doc) = http(
        hyper::Method::GET,
        &format!("{}/v1/openapi.json", setup.api()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    const ASKED: usize = 400;
    let all = ASKED * doc.len();
    let addr: std::net::SocketAddr = setup.api().trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(
        "GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n"
            .repeat(ASKED)
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    // What was already buffered still comes; the rest never does once the server gave up.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection was still open 45 s on"),
        }
    }
    assert!(
        got < all / 2,
        "{got} of {all} bytes came: the server kept writing to a client that did not read"
    );
}

/// With `http.metrics_listen`, the health probes answer there too (the Helm chart probes that
/// port): on the API's port they queue behind whoever holds its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_answer_on_the_metrics_listener() {
    let port = free_port();
    let setup = Setup::new("api_health_port");
    let addr = format!("127.0.0.1:{port}");
    let _w = Webhookd::start_with_env(&setup, &[("WEBHOOKD_HTTP__METRICS_LISTEN", &addr)]).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = http(
            hyper::Method::GET,
            &format!("http://127.0.0.1:{port}{path}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
