//! An upgrade never loses data: the previous release (built from git by
//! `scripts/previous-release.sh`) registers endpoints and tokens, schedules a retry and
//! dead-letters a delivery; this build, started on the same Redis, finds every one working.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::api_common::*;
use crate::common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// The previous release's binary, built on first use (a few minutes) and kept under target/.
fn previous_release() -> String {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/previous-release.sh"
    ))
    .stderr(std::process::Stdio::inherit())
    .output()
    .expect("run scripts/previous-release.sh");
    assert!(
        out.status.success(),
        "cannot build the previous release (it needs the git history and cargo)"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_data_keeps_working_after_an_upgrade() {
    let previous = previous_release();
    let ok_rx = Receiver::start(always(200)).await;
    let retry_rx = Receiver::start(first_then_ok(1, 500)).await;
    let gone_rx = Receiver::start(first_then_ok(1, 410)).await;
    let setup = Setup::new("upgrade").with("retry:\n  schedule: [5s]\n  jitter: 0\n");
    let api = Api::admin(&setup);
    let tenant = "acct_up";
    let mut r = redis();

    // The previous release at work.
    let mut old = Webhookd::start_program(&previous, &setup, &[]).await;
    let ok_ep = api
        .create_endpoint(
            tenant,
            json!({"url": ok_rx.url("/ok"), "filters": ["outbound.delivered"], "secret": SECRET}),
        )
        .await;
    let retry_ep = api
        .create_endpoint(
            tenant,
            json!({"url": retry_rx.url("/retry"), "filters": ["outbound.bounced"]}),
        )
        .await;
    let gone_ep = api
        .create_endpoint(
            tenant,
            json!({"url": gone_rx.url("/gone"), "filters": ["outbound.complaint"]}),
        )
        .await;
    let token = api.new_token(tenant).await;
    // Registry changes reach the dispatcher within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_gone",
            "outbound.complaint",
            tenant,
            json!({}),
        )],
    );
    let dlq = format!("{}dlq", setup.prefix);
    assert!(
        wait_until(WAIT, || xlen(&dlq) == 1).await,
        "no dead letter; log:\n{}",
        old.log_text()
    );
    publish(
        &mut r,
        &setup.stream(),
        &[envelope("evt_retry", "outbound.bounced", tenant, json!({}))],
    );
    // An event the previous release delivered: its id is remembered across the upgrade.
    publish(
        &mut r,
        &setup.stream(),
        &[envelope(
            "evt_before",
            "outbound.delivered",
            tenant,
            json!({}),
        )],
    );
    assert_eq!(ok_rx.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(retry_rx.wait_for(1, WAIT).await.len(), 1);
    // Stopped before the retry is due (5 s): it waits in Redis for the new build.
    old.terminate(Duration::from_secs(15)).await;
    assert_eq!(retry_rx.count(), 1, "the retry ran before the upgrade");
    let due: u64 = redis::cmd("ZCARD")
        .arg(format!("{}{{retry}}:due", setup.prefix))
        .query(&mut r)
        .unwrap();
    assert_eq!(due, 1, "the previous release left one retry scheduled");
    let old_sealed = stored_secrets(&setup, ok_ep["id"].as_str().unwrap());

    // This build on the same Redis.
    let _new = Webhookd::start(&setup).await;

    // Tokens: the tenant's token still authenticates, is listed, and can be revoked.
    let as_tenant = api.as_token(&token);
    let (status, list) = as_tenant
        .get(&format!("/v1/tenants/{tenant}/endpoints"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    // Its records have no `signing`: they read as the HMAC endpoints they are.
    let schemes: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["signing"])
        .collect();
    assert!(schemes.iter().all(|s| *s == "hmac-sha256"), "{list}");
    let (status, tokens) = api.get(&format!("/v1/tenants/{tenant}/tokens")).await;
    assert_eq!(status, 200, "{tokens}");
    let listed = tokens["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{tokens}");

    // Secrets: the one the previous release stored still reads back and signs.
    let ok_path = format!(
        "/v1/tenants/{tenant}/endpoints/{}",
        ok_ep["id"].as_str().unwrap()
    );
    let (status, secret) = as_tenant.get(&format!("{ok_path}/secret")).await;
    assert_eq!((status, secret["secret"].as_str()), (200, Some(SECRET)));
    // A producer's retry of the event the previous release delivered is still a duplicate;
    // the next event is delivered, signed with the stored secret.
    publish(
        &mut r,
        &setup.stream(),
        &[
            envelope("evt_before", "outbound.delivered", tenant, json!({})),
            envelope("evt_after", "outbound.delivered", tenant, json!({})),
        ],
    );
    let got = ok_rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-id"), "evt_after");
    assert!(verify(&got[1], SECRET), "signed with the stored secret");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ok_rx.count(), 2, "the remembered id was delivered again");

    // The retry the previous release scheduled is made, signed with its endpoint's secret.
    let got = retry_rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "the scheduled retry was not made");
    assert_eq!(got[1].header("webhook-id"), "evt_retry");
    assert!(verify(&got[1], retry_ep["secret"].as_str().unwrap()));

    // The dead letter is listed and replays once its endpoint (disabled by the 410) is enabled.
    let (status, letters) = as_tenant.get(&format!("/v1/tenants/{tenant}/dlq")).await;
    assert_eq!(status, 200, "{letters}");
    let letters = letters["data"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_id"], "evt_gone");
    let gone_path = format!(
        "/v1/tenants/{tenant}/endpoints/{}",
        gone_ep["id"].as_str().unwrap()
    );
    let (status, _) = as_tenant
        .patch(&gone_path, json!({"disabled": false}))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, replayed) = as_tenant
        .post(
            &format!("/v1/tenants/{tenant}/dlq/replay"),
            json!({"ids": [letters[0]["id"]]}),
        )
        .await;
    assert_eq!(
        (status, replayed),
        (200, json!({"replayed": 1, "endpoint_deleted": 0}))
    );
    let got = gone_rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-id"), "evt_gone");
    assert!(verify(&got[1], gone_ep["secret"].as_str().unwrap()));

    // Secrets were sealed again in place, bound to their endpoint.
    let resealed = wait_until(WAIT, || {
        let now = stored_secrets(&setup, ok_ep["id"].as_str().unwrap());
        now != old_sealed && now.iter().all(|s| s.starts_with("v2:"))
    })
    .await;
    assert!(resealed, "before {old_sealed:?}");

    // And the token can be revoked, effective at once.
    let id = listed[0]["id"].as_str().unwrap();
    let (status, _) = api
        .delete(&format!("/v1/tenants/{tenant}/tokens/{id}"))
        .await;
    assert_eq!(status, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = as_tenant
            .get(&format!("/v1/tenants/{tenant}/endpoints"))
            .await;
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a revoked token still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
