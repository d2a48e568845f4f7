//! Trimming the input stream never removes an entry some group still needs.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_every_pending_and_unread_entry() {
    let stream = format!("{}events", unique_prefix("trim"));
    let mut r = redis();
    // Old entries (explicit ids far in the past), so only the "still needed" rule holds them.
    for i in 1..=10 {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg(format!("{i}-0"))
            .arg("event")
            .arg("{}")
            .query(&mut r)
            .unwrap();
    }
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g1")
        .arg("0")
        .query(&mut r)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g2")
        .arg("0")
        .query(&mut r)
        .unwrap();
    // g1 reads 1..6 and acknowledges 1..3; g2 reads 1..8 and acknowledges all of them.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("c")
        .arg("COUNT")
        .arg(6)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query(&mut r)
        .unwrap();
    let _: u64 = redis::cmd("XACK")
        .arg(&stream)
        .arg("g1")
        .arg("1-0")
        .arg("2-0")
        .arg("3-0")
        .query(&mut r)
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g2")
        .arg("c")
        .arg("COUNT")
        .arg(8)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query(&mut r)
        .unwrap();
    let ids: Vec<String> = (1..=8).map(|i| format!("{i}-0")).collect();
    let _: u64 = redis::cmd("XACK")
        .arg(&stream)
        .arg("g2")
        .arg(&ids)
        .query(&mut r)
        .unwrap();

    let conn = webhookd::db::conn::connect(&redis_url(), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let removed = webhookd::ops::trim_once(&conn, &stream).await.unwrap();
    assert_eq!(removed, 3, "only what every group acknowledged goes");
    let left: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query(&mut r)
        .unwrap();
    let left: Vec<&str> = left.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(left, ["4-0", "5-0", "6-0", "7-0", "8-0", "9-0", "10-0"]);
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut r).unwrap();
}
