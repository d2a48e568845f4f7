//! Signing (SPEC 4): every delivery verifies with an independent Standard Webhooks
//! implementation, and a rotated secret signs beside the old one during the overlap.

use std::time::Duration;

use serde_json::json;

use crate::api_common::*;
use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_with_an_independent_standard_webhooks_library() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("sign").endpoint("ep1", "acct_42", &rx.url("/hook"), &["*"]);
    let _w = Webhookd::start(&setup).await;
    let mut r = redis();
    let data = json!({"uid": "msg-1", "to": "x@example.com", "bounce_type": "hard", "n": [1, 2.5, null], "s": "é\"\\"});
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_01J",
            "outbound.bounced",
            "acct_42",
            data.clone(),
        )],
    );
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert!(
        verify(req, SECRET),
        "signature must verify with standardwebhooks"
    );
    assert_eq!(req.header("webhook-id"), "evt_01J");
    assert_eq!(req.header("content-type"), "application/json");
    assert!(req.header("user-agent").starts_with("webhookd/"));
    assert!(req.header("webhook-signature").starts_with("v1,"));
    // webhookd sets it from the URL's authority (the client used to format it): host and port.
    let authority = rx.url("").trim_start_matches("http://").to_string();
    assert_eq!(req.header("host"), authority);
    let ts: i64 = req.header("webhook-timestamp").parse().unwrap();
    assert!((ts - webhookd::support::clock::now_secs()).abs() < 60);
    assert_eq!(
        req.json(),
        json!({"id": "evt_01J", "service": "outbound", "type": "outbound.bounced",
               "created_at": 1704825600, "data": data})
    );
    assert!(
        !String::from_utf8_lossy(&req.body).contains("tenant"),
        "tenant is not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_with_both_old_and_new_secrets() {
    let rx = Receiver::start(always(200)).await;
    let (_setup, _w, api) = admin_api(Setup::new("api_rotate")).await;
    let ep = api
        .create_endpoint(
            "acct_a",
            json!({"url": rx.url("/r"), "filters": ["*"], "secret": SECRET}),
        )
        .await;
    let path = ep_path("acct_a", &ep["id"]);
    let (status, rotated) = api.post(&format!("{path}/secret/rotate"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != SECRET);
    let (_, current) = api.get(&format!("{path}/secret")).await;
    assert_eq!(current["secret"], new.as_str());

    tokio::time::sleep(Duration::from_secs(1)).await;
    api.post("/v1/events", event("evt_rot", "outbound.sent", "acct_a"))
        .await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let sig = got[0].header("webhook-signature");
    assert_eq!(
        sig.split(' ').count(),
        2,
        "two signatures during the overlap: {sig}"
    );
    assert!(verify(&got[0], &new), "verifies with the new secret");
    assert!(verify(&got[0], SECRET), "verifies with the old secret");

    // A supplied secret must be valid; an empty body generates one; the body is optional.
    assert_error(
        &api.post(
            &format!("{path}/secret/rotate"),
            json!({"secret": "whsec_x"}),
        )
        .await,
        422,
        "invalid",
    );
    assert_error(
        &api.post(&format!("{path}/secret/rotate"), json!({"sekret": "x"}))
            .await,
        422,
        "invalid",
    );
    let (status, again) = api
        .raw(Method::POST, &format!("{path}/secret/rotate"), None)
        .await;
    assert_eq!(status, 200, "{again}");
    let (status, given) = api
        .post(&format!("{path}/secret/rotate"), json!({"secret": SECRET}))
        .await;
    assert_eq!((status, given), (200, json!({"secret": SECRET})));
}
