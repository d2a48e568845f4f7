//! The machine's own ceiling for the run (`--wrk-ceiling`): `wrk` POSTing a delivery-sized
//! body to the same receiver, right after the measured load, so a run reports deliveries/s as
//! a share of what this receiver takes from a plain load generator on this machine now.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// `wrk`'s requests per second: one thread, `connections` connections, for `duration`.
pub(crate) fn wrk_rps(receiver: SocketAddr, connections: u32, duration: Duration) -> Result<f64> {
    let script = std::env::temp_dir().join(format!(
        "webhookd-bench-wrk-{}-{:08x}.lua",
        std::process::id(),
        rand::random::<u32>()
    ));
    // A body of a delivery's size and shape (the receiver reads it like one).
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id":"wrk","service":"outbound","type":"outbound.delivered","created_at":1,"data":{"sent_at_ns":0,"uid":"msg-0","to":"rcpt0@example.com"}}'
"#,
    )
    .context("writing wrk's script")?;
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{receiver}/ceiling"))
        .output();
    let _ = std::fs::remove_file(&script);
    let out = out.context("running wrk (Debian: apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    requests_per_sec(&text).with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

fn requests_per_sec(wrk_output: &str) -> Option<f64> {
    wrk_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_output_is_read() {
        let out = "Running 5s test\n  1 threads and 64 connections\nRequests/sec: 101065.32\nTransfer/sec: 9.6MB\n";
        assert_eq!(super::requests_per_sec(out), Some(101065.32));
        assert_eq!(super::requests_per_sec("nothing"), None);
    }
}
