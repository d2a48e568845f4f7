//! Issue 14 in a real browser, continued: editing an endpoint, a test event of a chosen type,
//! what a read-only session shows and refuses, and the pages by keyboard and at a phone's
//! width.

use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::json;

use crate::api_common::*;
use crate::browser::Browser;
use crate::common::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// An endpoint's page is open in `b` once its edit form is there.
async fn open_endpoint_page(b: &Browser, setup: &Setup, id: &str) {
    b.client
        .goto(&format!("{}/portal/endpoints/{id}", setup.api()))
        .await
        .unwrap();
}

/// Editing from the endpoint's page: a bad pattern is refused beside the filters; then a new
/// URL, filters and rate limit are saved, and a test event of a type the new filters match
/// arrives, signed, with that type's made-up data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_edited_and_a_test_event_of_a_chosen_type_arrives_signed() {
    let rx = Receiver::start(always(200)).await;
    let setup = Setup::new("portal_edit");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let (status, ep) = api
        .post(
            "/v1/tenants/acct_42/endpoints",
            json!({"url": "https://example.com/old", "filters": ["outbound.delivered"]}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().unwrap();
    let secret = ep["secret"].as_str().unwrap();
    let b = Browser::open_portal(&setup, "acct_42").await;
    open_endpoint_page(&b, &setup, id).await;
    let form = b.element(Locator::Id("edit-endpoint")).await;
    let url = form.find(Locator::Id("edit-url")).await.unwrap();
    assert_eq!(
        url.prop("value").await.unwrap().as_deref(),
        Some("https://example.com/old")
    );
    let patterns = form.find(Locator::Id("edit-patterns")).await.unwrap();
    patterns.send_keys("outbound.bounce").await.unwrap();
    let save = form
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    save.click().await.unwrap();
    let error = b.text_of("#edit-filters-error:not(:empty)").await;
    assert!(
        error.contains("did you mean `outbound.bounced`"),
        "shown beside the filters: {error}"
    );

    patterns.clear().await.unwrap();
    patterns.send_keys("inbound.*").await.unwrap();
    for ty in ["outbound.delivered", "outbound.bounced"] {
        form.find(Locator::Css(&format!("input[name=filters][value='{ty}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    url.clear().await.unwrap();
    url.send_keys(&rx.url("/new")).await.unwrap();
    let rate = form.find(Locator::Id("edit-rate_limit")).await.unwrap();
    rate.send_keys("5").await.unwrap();
    save.click().await.unwrap();
    let done = b.text_of("#edit-done:not([hidden])").await;
    assert!(done.starts_with("Saved"), "{done}");
    let (_, now) = api
        .get(&format!("/v1/tenants/acct_42/endpoints/{id}"))
        .await;
    assert_eq!(now["url"], rx.url("/new"), "{now}");
    assert_eq!(now["filters"], json!(["outbound.bounced", "inbound.*"]));
    assert_eq!(now["rate_limit"], 5);
    assert_eq!(b.text_of("h1 code").await, rx.url("/new"));
    // An ordering key: refused beside its field when it is no path, saved when it is.
    let ordering = form.find(Locator::Id("edit-ordering_key")).await.unwrap();
    ordering.send_keys("data..uid").await.unwrap();
    save.click().await.unwrap();
    let error = b.text_of("#edit-ordering_key-error:not(:empty)").await;
    assert!(error.contains("ordering_key"), "{error}");
    ordering.clear().await.unwrap();
    ordering.send_keys("data.uid").await.unwrap();
    save.click().await.unwrap();
    let saved = wait_until_async(WAIT, || async {
        b.text_of("#summary").await.contains("ordered by data.uid")
    })
    .await;
    assert!(saved, "{}", b.text_of("#summary").await);
    let (_, now) = api
        .get(&format!("/v1/tenants/acct_42/endpoints/{id}"))
        .await;
    assert_eq!(now["ordering_key"], "data.uid", "{now}");
    b.screenshot("edit-endpoint").await;
    b.click(Locator::LinkText("How to verify signatures")).await;
    assert!(b.text_of("#python-h").await.contains("Python"));
    b.screenshot("verify").await;
    b.client.back().await.unwrap();

    // The test form offers the types the saved filters match (after a reload, from the server).
    b.client.refresh().await.unwrap();
    let options = b.text_of("#test-type").await;
    assert!(
        options.contains("outbound.bounced")
            && options.contains("inbound.received")
            && !options.contains("outbound.delivered"),
        "{options}"
    );
    b.click(Locator::Css("#test-type option[value='outbound.bounced']"))
        .await;
    b.click(Locator::Id("send-test")).await;
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the test event arrived");
    let body = got[0].json();
    assert_eq!(body["type"], "outbound.bounced", "{body}");
    assert_eq!(body["service"], "outbound");
    assert_eq!(body["data"]["bounce_type"], "hard");
    assert_eq!(body["data"]["test"], true);
    assert!(verify(&got[0], secret), "signed with the endpoint's secret");
    let answered = wait_until_async(WAIT, || async {
        b.text_of("#test-result").await.contains("HTTP 200")
    })
    .await;
    let result = b.text_of("#test-result").await;
    assert!(answered && result.contains("outbound.bounced"), "{result}");
}

/// A read-only session shows the endpoints and their attempts but offers no change, reveals
/// no secret and sends no test; and the API refuses the page's own calls that would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_session_can_change_nothing_in_the_browser() {
    let setup = Setup::new("portal_read_only");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    let (status, ep) = api
        .post(
            "/v1/tenants/acct_42/endpoints",
            json!({"url": "https://example.com/ro", "filters": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().unwrap();
    let b = Browser::open_link(
        &setup,
        "/v1/tenants/acct_42/portal-sessions",
        json!({"read_only": true}),
    )
    .await;
    assert_eq!(b.text_of("h1").await, "Webhooks of acct_42 read-only");
    let table = b.text_of("table#endpoints").await;
    assert!(table.contains("https://example.com/ro"), "{table}");
    let none = |css: &'static str| {
        let b = &b;
        async move {
            assert!(
                b.client.find(Locator::Css(css)).await.is_err(),
                "a read-only page has no `{css}`"
            );
        }
    };
    none("#add-endpoint").await;
    none("button[data-action]").await;
    b.screenshot("read-only").await;

    open_endpoint_page(&b, &setup, id).await;
    let secret = b.text_of("#secret-h + p").await;
    assert!(secret.contains("read-only"), "{secret}");
    b.text_of("#attempts").await;
    none("#reveal-secret").await;
    none("#rotate-secret").await;
    none("#test-form").await;
    none("#edit-endpoint").await;

    // What the page's script would send, with its CSRF token: refused.
    let path = format!("/v1/tenants/acct_42/endpoints/{id}");
    for (method, what) in [
        ("PATCH", path.clone()),
        ("GET", format!("{path}/secret")),
        ("POST", format!("{path}/test")),
        ("POST", format!("{path}/secret/rotate")),
    ] {
        let status = b
            .client
            .execute_async(
                "const [m, p, done] = arguments; \
                 window.webhookdPortal.api(m, p, m === 'PATCH' ? {disabled: true} : undefined)\
                 .then((r) => done(r.status));",
                vec![json!(method), json!(what)],
            )
            .await
            .unwrap();
        assert_eq!(status, 403, "{method} {what}");
    }
    let (_, now) = api.get(&path).await;
    assert_eq!(now["disabled"], false, "{now}");
}

/// Every control is labelled; an endpoint is added with the keyboard alone; a delete asks
/// first and takes the focus; and at a phone's width nothing needs sideways scrolling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_works_by_keyboard_and_at_a_phones_width() {
    let setup = Setup::new("portal_keyboard");
    let _w = Webhookd::start(&setup).await;
    let b = Browser::open_portal(&setup, "acct_42").await;
    b.text_of("#add-endpoint").await;
    let unlabelled = b
        .client
        .execute(
            "return [...document.querySelectorAll('input, select, button')]\
             .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length)\
               && !e.getAttribute('aria-label') && !e.textContent.trim())\
             .map((e) => e.outerHTML);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "every control has a name");

    // Tab from the top of the page to the URL field, type, tick "every event", submit.
    let active_id = || async {
        b.client
            .active_element()
            .await
            .unwrap()
            .attr("id")
            .await
            .unwrap()
            .unwrap_or_default()
    };
    let body = b.client.find(Locator::Css("body")).await.unwrap();
    let tab = |n: usize| {
        let body = &body;
        let b = &b;
        async move {
            for _ in 0..n {
                let el = b.client.active_element().await.unwrap_or(body.clone());
                el.send_keys(&Key::Tab.to_string()).await.unwrap();
            }
        }
    };
    let mut tabs = 0;
    while active_id().await != "add-url" {
        tab(1).await;
        tabs += 1;
        assert!(tabs < 40, "the URL field is reachable by Tab");
    }
    let active = b.client.active_element().await.unwrap();
    active.send_keys("https://example.com/keys").await.unwrap();
    tab(2).await; // the description, then the first event type: every event
    let every = b.client.active_element().await.unwrap();
    assert_eq!(every.attr("value").await.unwrap().as_deref(), Some("*"));
    every.send_keys(" ").await.unwrap();
    while b
        .client
        .active_element()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        != "Add endpoint"
    {
        tab(1).await;
        tabs += 1;
        assert!(tabs < 80, "the submit button is reachable by Tab");
    }
    let submit = b.client.active_element().await.unwrap();
    submit.send_keys(&Key::Enter.to_string()).await.unwrap();
    let note = b.text_of("#add-done:not([hidden])").await;
    assert!(note.contains("whsec_"), "added by keyboard: {note}");
    let row = b.text_of("#endpoints tbody tr").await;
    assert!(row.contains("https://example.com/keys"), "{row}");

    // Its delete asks first, and the question's button has the focus.
    let delete = b
        .client
        .find(Locator::Css("#endpoints button[data-action=delete]"))
        .await
        .unwrap();
    delete.send_keys(&Key::Enter.to_string()).await.unwrap();
    let focused = b.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("data-action").await.unwrap().as_deref(),
        Some("confirm-delete")
    );
    focused.send_keys(&Key::Escape.to_string()).await.unwrap();
    let back = b.client.active_element().await.unwrap();
    assert_eq!(
        back.attr("data-action").await.unwrap().as_deref(),
        Some("delete"),
        "Escape cancels and gives the focus back to Delete"
    );

    let id = b
        .client
        .find(Locator::Css("#endpoints tbody tr"))
        .await
        .unwrap()
        .attr("data-id")
        .await
        .unwrap()
        .unwrap();
    b.client.set_window_size(390, 844).await.unwrap();
    assert_fits(&b, "the endpoints page").await;
    b.screenshot("phone").await;
    open_endpoint_page(&b, &setup, &id).await;
    b.text_of("#stats-plot").await;
    assert_fits(&b, "an endpoint's page").await;
    b.click(Locator::LinkText("How to verify signatures")).await;
    b.text_of("#go-h").await;
    assert_fits(&b, "the verification page").await;
    b.client.back().await.unwrap();
    b.click(Locator::LinkText("All endpoints")).await;
    b.click(Locator::LinkText("Dead letters")).await;
    b.text_of("#dlq").await;
    assert_fits(&b, "the dead letters page").await;
}

/// The page needs no sideways scrolling; else names what is too wide.
async fn assert_fits(b: &Browser, what: &str) {
    let overflow = b
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    let wide = b
        .client
        .execute(
            "return [...document.querySelectorAll('body *')]\
             .filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).display !== 'inline')\
             .map((e) => `${e.tagName}#${e.id}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(0),
        "{what} needs no sideways scrolling at 390 px: {wide}"
    );
}
