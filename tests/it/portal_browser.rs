//! Issue 14 in a real browser: a tenant opens a portal link in headless Chromium and sees its
//! endpoints; the address bar no longer holds the token; signing out ends the session.

use fantoccini::Locator;
use serde_json::json;

use crate::api_common::*;
use crate::browser::Browser;
use crate::common::*;

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
    let (status, link) = Api::admin(&setup)
        .post("/v1/tenants/acct_42/portal-sessions", json!({}))
        .await;
    assert_eq!(status, 201, "{link}");
    let b = Browser::start().await;
    b.client
        .goto(&format!("{}{}", setup.api(), link["url"].as_str().unwrap()))
        .await
        .unwrap();
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

    b.client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alert = b.text_of("[role=alert]").await;
    assert!(alert.contains("not signed in"), "{alert}");
}
