//! The operator view (an admin's portal session): what needs attention across tenants. Tenants
//! by delivery volume and failure rate over 24 hours with their dead letters and open circuits,
//! the open circuits themselves, and the slowest endpoints of the last two hours. Read-only.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use super::page::esc;
use crate::api::state::ApiState;
use crate::deliver::breaker::State as Circuit;
use crate::deliver::overview::{self, SlowEndpoint, TenantVolume};
use crate::support::clock::now_ms;

/// Rows a table shows at most; past them the page says how many were left out.
const ROWS: usize = 100;
const SLOWEST: usize = 10;

/// One tenant's line.
#[derive(Default)]
struct TenantRow {
    endpoints: usize,
    volume: TenantVolume,
    dead_letters: u64,
    open_circuits: usize,
}

/// The view's sections; a figure Redis cannot give now is said to be missing, not zero.
pub(super) async fn view(state: &ApiState) -> String {
    let inner = &state.inner;
    let live = inner.dispatcher.live().snapshot();
    let breaker = inner.dispatcher.breaker();
    let now = now_ms();
    let mut rows: BTreeMap<String, TenantRow> = BTreeMap::new();
    let mut endpoints: Vec<(&str, &str)> = Vec::new();
    for ep in live.endpoints() {
        rows.entry(ep.tenant.to_string()).or_default().endpoints += 1;
        endpoints.push((&ep.tenant, &ep.id));
    }
    let mut open: Vec<(String, String, String, &'static str)> = Vec::new();
    for (id, _) in breaker.not_closed() {
        let Some(ep) = live.endpoint(&id) else {
            continue;
        };
        let state = match breaker.state(&id) {
            Circuit::HalfOpen => "probing",
            _ => "open",
        };
        rows.entry(ep.tenant.to_string()).or_default().open_circuits += 1;
        open.push((
            ep.tenant.to_string(),
            id.to_string(),
            ep.url.to_string(),
            state,
        ));
    }
    open.sort();
    let (volumes, depths, slowest) = tokio::join!(
        overview::tenants(&inner.conn, &inner.keys, now),
        inner.dlq.depths(&endpoints),
        overview::slowest(&inner.conn, &inner.keys, now, SLOWEST),
    );
    let mut missing = Vec::new();
    match volumes {
        Ok(v) => merge_volumes(&mut rows, v),
        Err(e) => missing.push(("delivery volumes", e)),
    }
    match depths {
        Ok(d) => {
            for ((tenant, _), n) in endpoints.iter().zip(d) {
                rows.entry(tenant.to_string()).or_default().dead_letters += n;
            }
        }
        Err(e) => missing.push(("dead-letter counts", e)),
    }
    let mut s = String::new();
    for (what, e) in &missing {
        tracing::warn!(error = %e, "the operator view could not read its {what}");
        let _ = write!(
            s,
            "<p role=\"alert\">The {what} cannot be read right now.</p>"
        );
    }
    let _ = write!(
        s,
        "<p id=\"totals\">{} tenants, {} endpoints, {} open circuits.</p>",
        rows.len(),
        live.len(),
        open.len()
    );
    tenants_table(&mut s, rows);
    circuits_table(&mut s, &open);
    match slowest {
        Ok(slow) => slowest_table(&mut s, &slow, |id| {
            live.endpoint(id)
                .map(|e| (e.tenant.to_string(), e.url.to_string()))
        }),
        Err(e) => {
            tracing::warn!(error = %e, "the operator view could not read the slowest endpoints");
            s.push_str("<p role=\"alert\">The slowest endpoints cannot be read right now.</p>");
        }
    }
    s
}

fn merge_volumes(rows: &mut BTreeMap<String, TenantRow>, volumes: HashMap<String, TenantVolume>) {
    for (tenant, v) in volumes {
        rows.entry(tenant).or_default().volume = v;
    }
}

/// Busiest first; equal volumes by failure rate, worst first.
fn tenants_table(s: &mut String, rows: BTreeMap<String, TenantRow>) {
    let mut rows: Vec<(String, TenantRow)> = rows.into_iter().collect();
    rows.sort_by(|(a, x), (b, y)| {
        let total = |r: &TenantRow| r.volume.succeeded + r.volume.failed;
        total(y)
            .cmp(&total(x))
            .then(rate(&y.volume).total_cmp(&rate(&x.volume)))
            .then(a.cmp(b))
    });
    s.push_str(
        "<section aria-labelledby=\"tenants-h\"><h2 id=\"tenants-h\">Tenants by delivery volume</h2>\
         <table id=\"tenants\"><caption>Attempts over the last 24 hours, busiest first</caption>\
         <thead><tr><th scope=\"col\">Tenant</th><th scope=\"col\">Endpoints</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Failed</th><th scope=\"col\">Failure rate</th>\
         <th scope=\"col\">Dead letters</th><th scope=\"col\">Open circuits</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        s.push_str("<tr class=\"empty\"><td colspan=\"7\">No tenants yet.</td></tr>");
    }
    for (tenant, r) in rows.iter().take(ROWS) {
        let total = r.volume.succeeded + r.volume.failed;
        let failure = if total == 0 {
            "—".to_string()
        } else {
            format!("{:.1} %", rate(&r.volume) * 100.0)
        };
        let class = if rate(&r.volume) >= 0.1 {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{t}</th><td>{e}</td><td>{total}</td><td>{f}</td><td{class}>{failure}</td>\
             <td>{d}</td><td>{o}</td></tr>",
            t = esc(tenant),
            e = r.endpoints,
            f = r.volume.failed,
            d = r.dead_letters,
            o = r.open_circuits,
        );
    }
    s.push_str("</tbody></table>");
    if rows.len() > ROWS {
        let _ = write!(
            s,
            "<p>The {ROWS} busiest of {} tenants are shown.</p>",
            rows.len()
        );
    }
    s.push_str("</section>");
}

fn rate(v: &TenantVolume) -> f64 {
    let total = v.succeeded + v.failed;
    if total == 0 {
        0.0
    } else {
        v.failed as f64 / total as f64
    }
}

fn circuits_table(s: &mut String, open: &[(String, String, String, &str)]) {
    s.push_str("<section aria-labelledby=\"circuits-h\"><h2 id=\"circuits-h\">Open circuits</h2>");
    if open.is_empty() {
        s.push_str("<p>Every endpoint's circuit is closed.</p></section>");
        return;
    }
    s.push_str(
        "<table id=\"open-circuits\"><thead><tr><th scope=\"col\">Tenant</th><th scope=\"col\">Endpoint</th>\
         <th scope=\"col\">URL</th><th scope=\"col\">Circuit</th></tr></thead><tbody>",
    );
    for (tenant, id, url, state) in open.iter().take(ROWS) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"bad\">{state}</td></tr>",
            esc(tenant),
            esc(id),
            esc(url)
        );
    }
    s.push_str("</tbody></table>");
    if open.len() > ROWS {
        let _ = write!(s, "<p>{ROWS} of {} are shown.</p>", open.len());
    }
    s.push_str("</section>");
}

fn slowest_table(
    s: &mut String,
    slow: &[SlowEndpoint],
    about: impl Fn(&str) -> Option<(String, String)>,
) {
    s.push_str(
        "<section aria-labelledby=\"slowest-h\"><h2 id=\"slowest-h\">Slowest endpoints</h2>",
    );
    if slow.is_empty() {
        s.push_str("<p>No attempts in the last two hours.</p></section>");
        return;
    }
    s.push_str(
        "<table id=\"slowest\"><caption>Mean time per attempt over the last two hours</caption>\
         <thead><tr><th scope=\"col\">Endpoint</th><th scope=\"col\">Tenant</th><th scope=\"col\">URL</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Mean latency</th></tr></thead><tbody>",
    );
    for e in slow {
        let (tenant, url) = about(&e.endpoint_id).unwrap_or(("(deleted)".into(), String::new()));
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} ms</td></tr>",
            esc(&e.endpoint_id),
            esc(&tenant),
            esc(&url),
            e.attempts,
            e.mean_ms
        );
    }
    s.push_str("</tbody></table></section>");
}
