//! SPEC 6a, the operator view: an admin's portal session shows tenants by delivery volume and
//! failure rate with their dead letters, and the slowest endpoints, from real deliveries to
//! real receivers.

use std::time::Duration;

use serde_json::json;

use crate::api_common::*;
use crate::common::*;
use crate::portal_sessions::{mint, open};

/// The text of each row of the table with this id: its cells, tags taken out.
fn rows(page: &str, id: &str) -> Vec<Vec<String>> {
    let Some(table) = page
        .split(&format!("<table id=\"{id}\">"))
        .nth(1)
        .and_then(|t| t.split("</table>").next())
    else {
        return Vec::new();
    };
    let body = table.split("<tbody>").nth(1).unwrap_or("");
    body.split("</tr>")
        .filter(|row| row.contains("<td"))
        .map(|row| {
            row.split("</td>")
                .flat_map(|c| c.split("</th>"))
                .map(text)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect()
}

/// An HTML fragment's text: its tags taken out.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_view_ranks_tenants_by_volume_and_shows_failures_dead_letters_and_the_slowest()
{
    let fast = Receiver::start(always(200)).await;
    let failing = Receiver::start(always(500)).await;
    let slow = Receiver::start(std::sync::Arc::new(|_, _| {
        (200, vec![], Duration::from_millis(400))
    }))
    .await;
    let setup = Setup::new("portal_operator")
        .endpoint("ep_fast", "busy", &fast.url("/"), &["*"])
        .endpoint("ep_failing", "failing", &failing.url("/"), &["*"])
        .endpoint("ep_slow", "slowpoke", &slow.url("/"), &["*"])
        .with("retry:\n  schedule: [100ms]\n  jitter: 0\n");
    let _w = Webhookd::start(&setup).await;
    let api = Api::admin(&setup);
    for i in 0..6 {
        assert_eq!(api.publish_event(&format!("evt_b{i}"), "busy").await.0, 202);
    }
    for i in 0..2 {
        assert_eq!(
            api.publish_event(&format!("evt_f{i}"), "failing").await.0,
            202
        );
    }
    assert_eq!(api.publish_event("evt_s0", "slowpoke").await.0, 202);
    let dead = wait_until_async(Duration::from_secs(20), || async {
        api.get("/v1/tenants/failing/dlq").await.1["data"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    })
    .await;
    assert!(dead, "both of `failing`'s events died after two attempts");

    let (status, link) = mint(&setup, "/v1/portal-sessions", ADMIN_TOKEN, json!({})).await;
    assert_eq!(status, 201, "{link}");
    let op = open(&setup, link["url"].as_str().unwrap()).await;
    // Attempts are counted by the attempt log's writer, a moment after they happen.
    let last = std::sync::Mutex::new(op.page.clone());
    let counted = wait_until_async(Duration::from_secs(20), || async {
        let (_, text) = op.page_at("/portal/").await;
        let t = rows(&text, "tenants");
        *last.lock().unwrap() = text;
        t.len() == 3 && t[0][2] == "6" && t[1][2] == "4" && t[2][2] == "1"
    })
    .await;
    let page = last.into_inner().unwrap();
    let tenants = rows(&page, "tenants");
    assert!(counted, "{tenants:?}\n{page}");
    // Tenant, endpoints, attempts, failed, failure rate, dead letters, open circuits.
    assert_eq!(tenants[0][..6], ["busy", "1", "6", "0", "0.0 %", "0"]);
    assert_eq!(tenants[1][..6], ["failing", "1", "4", "4", "100.0 %", "2"]);
    assert_eq!(tenants[2][..6], ["slowpoke", "1", "1", "0", "0.0 %", "0"]);
    let slowest = rows(&page, "slowest");
    assert_eq!(slowest[0][0], "ep_slow", "{slowest:?}");
    let mean: u64 = slowest[0][4].trim_end_matches(" ms").parse().unwrap();
    assert!(mean >= 400, "{slowest:?}");
    // Endpoint, tenant, URL, attempts (from each endpoint's hourly stats), mean.
    let attempts = |id: &str| slowest.iter().find(|r| r[0] == id).map(|r| r[3].clone());
    assert_eq!(
        [
            attempts("ep_fast"),
            attempts("ep_failing"),
            attempts("ep_slow")
        ],
        [Some("6".into()), Some("4".into()), Some("1".into())],
        "{slowest:?}"
    );
    assert!(page.contains("3 tenants, 3 endpoints"), "{page}");

    let b = crate::browser::Browser::open_link(&setup, "/v1/portal-sessions", json!({})).await;
    let shown = b.text_of("table#tenants").await;
    assert!(
        shown.contains("failing") && shown.contains("100.0 %"),
        "{shown}"
    );
    b.screenshot("operator").await;
}

/// Hours an earlier build wrote (its hourly stats with a `success` count, the latency set, and
/// a set of attempts per endpoint this build no longer writes nor reads) give the same view:
/// the attempts come from the endpoints' own hours, and new attempts add to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slowest_endpoints_of_hours_an_earlier_build_wrote_keep_their_attempts() {
    let slow = Receiver::start(std::sync::Arc::new(|_, _| {
        (200, vec![], Duration::from_millis(300))
    }))
    .await;
    let fast = Receiver::start(always(200)).await;
    let setup = Setup::new("portal_operator_old")
        .endpoint("ep_a", "acme", &slow.url("/a"), &["*"])
        .endpoint("ep_b", "acme", &fast.url("/b"), &["*"]);
    let hour = hour_start(webhookd::support::clock::now_ms()) / 1000;
    let p = &setup.prefix;
    let mut r = redis();
    let _: () = redis::pipe()
        .hset_multiple(
            format!("{p}stats:ep_a:{hour}"),
            &[
                ("success", "3"),
                ("failure", "1"),
                ("ms:120", "3"),
                ("ms:144", "1"),
            ],
        )
        .hset_multiple(
            format!("{p}stats:ep_b:{hour}"),
            &[("success", "2"), ("ms:10", "2")],
        )
        .zadd(format!("{p}overview:latency:{hour}"), "ep_a", 500)
        .zadd(format!("{p}overview:latency:{hour}"), "ep_b", 20)
        // What the earlier build's set said, wrong on purpose: this build must not read it.
        .zadd(format!("{p}overview:attempts:{hour}"), "ep_a", 50)
        .hset(format!("{p}overview:tenants:{hour}"), "ok:acme", 5)
        .hset(format!("{p}overview:tenants:{hour}"), "failed:acme", 1)
        .query(&mut r)
        .unwrap();
    let _w = Webhookd::start(&setup).await;
    let (status, link) = mint(&setup, "/v1/portal-sessions", ADMIN_TOKEN, json!({})).await;
    assert_eq!(status, 201, "{link}");
    let op = open(&setup, link["url"].as_str().unwrap()).await;
    let slowest = rows(&op.page, "slowest");
    // Endpoint, tenant, URL, attempts, mean: ep_a 500 ms over 4 attempts, ep_b 20 over 2.
    let shown: Vec<[&str; 3]> = slowest
        .iter()
        .map(|r| [r[0].as_str(), r[3].as_str(), r[4].as_str()])
        .collect();
    assert_eq!(
        shown,
        [["ep_a", "4", "125 ms"], ["ep_b", "2", "10 ms"]],
        "{slowest:?}"
    );

    // One more attempt each: ep_a's ~300 ms is added to its 500, not written over it.
    let api = Api::admin(&setup);
    assert_eq!(api.publish_event("evt_more", "acme").await.0, 202);
    let last = std::sync::Mutex::new(Vec::new());
    let counted = wait_until_async(Duration::from_secs(20), || async {
        let (_, text) = op.page_at("/portal/").await;
        let rows = rows(&text, "slowest");
        let attempts: Vec<[&str; 2]> = rows
            .iter()
            .map(|r| [r[0].as_str(), r[3].as_str()])
            .collect();
        let done = attempts == [["ep_a", "5"], ["ep_b", "3"]];
        *last.lock().unwrap() = rows;
        done
    })
    .await;
    let slowest = last.into_inner().unwrap();
    assert!(counted, "{slowest:?}");
    let mean = |id: &str| -> u64 {
        let row = slowest.iter().find(|r| r[0] == id).expect("listed");
        row[4].trim_end_matches(" ms").parse().unwrap()
    };
    // (500 + 300..600) / 5 (written over, it would be 60..120) and (20 + a few) / 3.
    assert!((160..=220).contains(&mean("ep_a")), "{slowest:?}");
    assert!((7..=40).contains(&mean("ep_b")), "{slowest:?}");
}
