//! Issue 14 in a real browser: a tenant opens a portal link in headless Chromium and sees its
//! endpoints; the address bar no longer holds the token; signing out ends the session.

use fantoccini::Locator;
use serde_json::json;

use crate::api_common::*;
use crate::browser::Browser;
use crate::common::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A new endpoint of acct_42 taking every event at `url`, once it takes part in matching
/// (within a second, SPEC 6).
async fn endpoint_of_acct_42(api: &Api, url: &str) -> serde_json::Value {
    let (status, ep) = api
        .post(
            "/v1/tenants/acct_42/endpoints",
            json!({"url": url, "filters": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    ep
}

/// How many dead letters acct_42 has.
async fn dead_letters(api: &Api) -> usize {
    api.get("/v1/tenants/acct_42/dlq").await.1["data"]
        .as_array()
        .map_or(usize::MAX, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_opens_the_tenants_endpoints_in_a_browser_and_sign_out_ends_it() {
    let setup = Setup::new("portal_browser")
        .endpoint(
            "ep_one",
            "acct_42",
            "https://example.com/one",
            &["outbound.*"],
        )
        .endpoint("ep_other", "acct_7", "https://example.com/other", &["*"]);
    let _w = Webhookd::start(&setup).await;
    let b = Browser::open_portal(&setup, "acct_42").await;
    let table = b.text_of("table#endpoints").await;
    assert!(
        table.contains("https://example.com/one") && table.contains("healthy"),
        "{table}"
    );
    assert!(
        !table.contains("ep_other"),
        "another tenant's endpoint: {table}"
    );
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/portal/");
    assert_eq!(url.query(), None, "the token left the address bar: {url}");
    assert_eq!(b.text_of("h1").await, "Webhooks of acct_42");
    b.screenshot("endpoints").await;

    b.click(Locator::Id("logout")).await;
    let alert = b.text_of("main.narrow [role=alert]").await;
    assert!(alert.contains("not signed in"), "{alert}");
}

/// Adding an endpoint from the portal: the API's refusal is shown next to the field it
/// concerns, and a valid one appears in the list with its secret shown once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_added_in_the_portal_appears_and_errors_show_beside_their_field() {
    let setup = Setup::new("portal_add");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let b = Browser::open_portal(&setup, "acct_42").await;
    let form = b.element(Locator::Id("add-endpoint")).await;
    let url = form.find(Locator::Id("add-url")).await.unwrap();
    url.send_keys("ftp://example.com/hook").await.unwrap();
    let bounced = form
        .find(Locator::Css(
            "input[name=filters][value='outbound.bounced']",
        ))
        .await
        .unwrap();
    bounced.click().await.unwrap();
    let submit = form
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    submit.click().await.unwrap();
    let error = b.text_of("#add-url-error:not(:empty)").await;
    assert!(error.contains("https"), "shown beside the URL: {error}");
    assert_eq!(
        url.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );

    url.clear().await.unwrap();
    url.send_keys("https://example.com/hook").await.unwrap();
    submit.click().await.unwrap();
    let note = b.text_of("#add-done:not([hidden])").await;
    assert!(note.contains("whsec_"), "{note}");
    let row = b.text_of("#endpoints tbody tr").await;
    assert!(
        row.contains("https://example.com/hook") && row.contains("outbound.bounced"),
        "{row}"
    );
    let (_, list) = api.get("/v1/tenants/acct_42/endpoints").await;
    assert_eq!(
        list["data"][0]["filters"],
        json!(["outbound.bounced"]),
        "{list}"
    );
    let id = list["data"][0]["id"].as_str().unwrap();
    let delete = b
        .client
        .find(Locator::Css(
            "#endpoints tbody tr button[data-action=delete]",
        ))
        .await
        .expect("the new row has its actions");
    assert_eq!(
        delete.attr("aria-label").await.unwrap(),
        Some(format!("Delete {id}"))
    );
    b.screenshot("add-endpoint").await;
}

/// Disable, enable and delete from the endpoints list: delete asks first, and Cancel keeps
/// the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_disabled_enabled_and_deleted_after_a_confirmation() {
    let setup = Setup::new("portal_actions");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let (status, ep) = api
        .post(
            "/v1/tenants/acct_42/endpoints",
            json!({"url": "https://example.com/x", "filters": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tenants/acct_42/endpoints/{id}");
    let b = Browser::open_portal(&setup, "acct_42").await;
    let row = format!("#endpoints tr[data-id='{id}']");
    let click = |css: String| {
        let b = &b;
        async move {
            b.element(Locator::Css(&css)).await.click().await.unwrap();
        }
    };
    click(format!("{row} button[data-action=toggle]")).await;
    assert_eq!(
        b.text_of(&format!("{row} td.health .bad")).await,
        "disabled"
    );
    assert_eq!(api.get(&path).await.1["disabled"], true);
    click(format!("{row} button[data-action=toggle]")).await;
    assert_eq!(b.text_of(&format!("{row} td.health .ok")).await, "healthy");
    assert_eq!(api.get(&path).await.1["disabled"], false);

    click(format!("{row} button[data-action=delete]")).await;
    let ask = b.text_of(&format!("{row} .confirm-text")).await;
    assert!(ask.contains(&id), "{ask}");
    click(format!("{row} button[data-action=cancel-delete]")).await;
    assert_eq!(api.get(&path).await.0, 200, "Cancel keeps it");
    click(format!("{row} button[data-action=delete]")).await;
    click(format!("{row} button[data-action=confirm-delete]")).await;
    let gone = wait_until_async(WAIT, || async { api.get(&path).await.0 == 404 }).await;
    assert!(gone, "deleted after the confirmation");
    let row_gone = wait_until_async(WAIT, || async {
        b.client.find(Locator::Css(&row)).await.is_err()
    })
    .await;
    assert!(row_gone, "its row is gone");
}

/// An endpoint's page: reveal its secret, rotate it (the overlap explained), and send a test
/// event that arrives signed with the new secret and, during the overlap, the old one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_revealed_and_rotated_and_a_test_event_arrives_signed() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("portal_secret");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let ep = endpoint_of_acct_42(&api, &rx.url("/hook")).await;
    let id = ep["id"].as_str().unwrap();
    let first = ep["secret"].as_str().unwrap().to_string();
    let b = Browser::open_portal(&setup, "acct_42").await;
    b.click(Locator::Css(&format!("a[href='/portal/endpoints/{id}']")))
        .await;
    b.click(Locator::Id("reveal-secret")).await;
    assert_eq!(b.text_of("#secret:not([hidden])").await, first);
    let overlap = b.text_of("#secret-h + p + p").await;
    assert!(
        overlap.contains("24 hours"),
        "the overlap is explained: {overlap}"
    );
    b.click(Locator::Id("rotate-secret")).await;
    let status = b.text_of("#secret-status:not(:empty)").await;
    assert!(status.contains("Rotated"), "{status}");
    let second = b.text_of("#secret").await;
    assert!(second.starts_with("whsec_") && second != first, "{second}");
    b.screenshot("endpoint").await;

    b.click(Locator::Id("send-test")).await;
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    let answered = wait_until_async(WAIT, || async {
        b.text_of("#test-result").await.contains("HTTP")
    })
    .await;
    let result = b.text_of("#test-result").await;
    assert!(answered && result.contains("answered HTTP 200"), "{result}");
    assert_eq!(got.len(), 1, "the test event arrived");
    assert_eq!(got[0].json()["type"], "webhookd.test");
    assert!(verify(&got[0], &second), "signed with the new secret");
    assert!(
        verify(&got[0], &first),
        "and, during the overlap, the old one"
    );
}

/// A delivery's attempts appear on its endpoint's page while it is open, and the filter
/// shows only the failed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deliverys_attempts_appear_on_the_endpoint_page() {
    let rx = Receiver::start(first_then_ok(1, 503)).await;
    let setup = Setup::new("portal_attempts").with("retry:\n  schedule: [1s]\n  jitter: 0\n");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let ep = endpoint_of_acct_42(&api, &rx.url("/hook")).await;
    let id = ep["id"].as_str().unwrap();
    let b = Browser::open_portal(&setup, "acct_42").await;
    b.client
        .goto(&format!("{}/portal/endpoints/{id}", setup.api()))
        .await
        .unwrap();
    assert_eq!(
        b.text_of("#attempts tbody tr.empty").await,
        "No attempts yet."
    );
    let (status, _) = api.publish_event("evt_seen", "acct_42").await;
    assert_eq!(status, 202);
    // The first attempt answers 503, the retry 200: both rows appear without a reload.
    b.client
        .wait()
        .at_most(std::time::Duration::from_secs(20))
        .for_element(Locator::Css("#attempts tr.ok-row"))
        .await
        .expect("the successful retry appears");
    let all = b.text_of("#attempts tbody").await;
    assert!(
        all.contains("evt_seen") && all.contains("HTTP 503") && all.contains("HTTP 200"),
        "{all}"
    );
    b.screenshot("attempts").await;
    // The hour's bar in the 24 h plot counts both, once the page is loaded again.
    let counted = wait_until_async(WAIT, || async {
        b.client.refresh().await.unwrap();
        b.text_of("#stats-h + p").await == "1 succeeded, 1 failed."
    })
    .await;
    assert!(counted, "{}", b.text_of("#stats-h + p").await);
    // Both attempts' hour (or two, across an hour's turn) has its bar, titled with its figures.
    let plot = b
        .client
        .find(Locator::Id("stats-plot"))
        .await
        .unwrap()
        .html(true)
        .await
        .unwrap();
    assert!(
        plot.contains("1 succeeded, 1 failed, latency p50")
            || (plot.contains("1 succeeded, 0 failed, latency")
                && plot.contains("0 succeeded, 1 failed, latency")),
        "{plot}"
    );
    b.screenshot("stats").await;
    b.click(Locator::Css("#attempt-filter option[value=failed]"))
        .await;
    let failed = b.text_of("#attempts tbody").await;
    assert!(
        failed.contains("HTTP 503") && !failed.contains("HTTP 200"),
        "{failed}"
    );
}

/// A dead letter replayed from the portal is delivered; another is purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_from_the_portal_is_delivered() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        let status = if h.load(Ordering::SeqCst) { 200 } else { 500 };
        (status, vec![], std::time::Duration::ZERO)
    }))
    .await;
    let setup = Setup::new("portal_dlq").with("retry:\n  schedule: [100ms]\n  jitter: 0\n");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    endpoint_of_acct_42(&api, &rx.url("/hook")).await;
    for id in ["evt_dead_1", "evt_dead_2"] {
        assert_eq!(api.publish_event(id, "acct_42").await.0, 202);
    }
    let both = wait_until_async(WAIT, || async { dead_letters(&api).await == 2 }).await;
    assert!(both, "both died");
    healthy.store(true, Ordering::SeqCst);

    let b = Browser::open_portal(&setup, "acct_42").await;
    b.click(Locator::LinkText("Dead letters")).await;
    let table = b.text_of("#dlq tbody tr[data-id]").await;
    assert!(table.contains("HTTP 500"), "{table}");
    b.screenshot("dead-letters").await;
    b.click(Locator::Css("button[aria-label='Replay evt_dead_1']"))
        .await;
    // Two failed attempts before it died, then the replay's.
    let delivered = wait_until(std::time::Duration::from_secs(20), || {
        by_webhook_id(&rx.received()).get("evt_dead_1") == Some(&3)
    })
    .await;
    assert!(delivered, "the replayed letter is delivered");
    b.click(Locator::Css("button[aria-label='Purge evt_dead_2']"))
        .await;
    let purged = wait_until_async(WAIT, || async {
        b.text_of("#dlq-status").await.contains("Purged")
    })
    .await;
    assert!(purged, "{}", b.text_of("#dlq-status").await);
    let none = wait_until_async(WAIT, || async { dead_letters(&api).await == 0 }).await;
    assert!(none, "one replayed, one purged");
}
