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
