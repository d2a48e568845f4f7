//! An endpoint's last 24 hours as an inline SVG drawn on the server: a bar per hour, its
//! successes and failures stacked, each bar titled with its figures for pointers and screen
//! readers, and a table of the same figures beside it for those who prefer one.

use std::fmt::Write;

use super::page::esc;
use crate::deliver::stats::Hour;
use crate::support::clock::rfc3339;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 160;
const BAR: u32 = WIDTH / 24;

/// The plot and its table.
pub(super) fn last_day(hours: &[Hour]) -> String {
    let most = hours
        .iter()
        .map(|h| h.success + h.failure)
        .max()
        .unwrap_or(0)
        .max(1);
    let (ok, failed): (u64, u64) = hours
        .iter()
        .fold((0, 0), |(s, f), h| (s + h.success, f + h.failure));
    let mut s = format!(
        "<section aria-labelledby=\"stats-h\"><h2 id=\"stats-h\">Last 24 hours</h2>\
         <p>{ok} succeeded, {failed} failed.</p>\
         <svg id=\"stats-plot\" role=\"img\" aria-labelledby=\"stats-h\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         preserveAspectRatio=\"none\" width=\"100%\" height=\"{HEIGHT}\">"
    );
    for (i, h) in hours.iter().enumerate() {
        let x = i as u32 * BAR;
        let height = |n: u64| (n * u64::from(HEIGHT - 10) / most) as u32;
        let (hs, hf) = (height(h.success), height(h.failure));
        let latency = match (h.p50_ms, h.p99_ms) {
            (Some(p50), Some(p99)) => format!(", latency p50 {p50} ms, p99 {p99} ms"),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<g class=\"hour\"><title>{start}: {ok} succeeded, {failed} failed{latency}</title>\
             <rect class=\"ok-bar\" x=\"{x}\" y=\"{ys}\" width=\"{w}\" height=\"{hs}\"></rect>\
             <rect class=\"failed-bar\" x=\"{x}\" y=\"{yf}\" width=\"{w}\" height=\"{hf}\"></rect></g>",
            start = esc(&rfc3339(h.start_ms)),
            ok = h.success,
            failed = h.failure,
            ys = HEIGHT - hs,
            yf = HEIGHT - hs - hf,
            w = BAR - 2,
        );
    }
    s.push_str(
        "</svg><details><summary>The figures</summary><table id=\"stats\"><thead><tr>\
         <th scope=\"col\">Hour</th><th scope=\"col\">Succeeded</th><th scope=\"col\">Failed</th>\
         <th scope=\"col\">p50</th><th scope=\"col\">p99</th></tr></thead><tbody>",
    );
    let ms = |v: Option<u64>| v.map_or("–".to_string(), |v| format!("{v} ms"));
    for h in hours {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(h.start_ms)),
            h.success,
            h.failure,
            ms(h.p50_ms),
            ms(h.p99_ms)
        );
    }
    s.push_str("</tbody></table></details></section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(i: i64, success: u64, failure: u64) -> Hour {
        Hour {
            start_ms: i * 3_600_000,
            success,
            failure,
            p50_ms: (success + failure > 0).then_some(12),
            p99_ms: (success + failure > 0).then_some(80),
        }
    }

    #[test]
    fn bars_are_stacked_to_the_busiest_hour_and_titled_with_their_figures() {
        let mut hours: Vec<Hour> = (0..24).map(|i| hour(i, 0, 0)).collect();
        hours[23] = hour(23, 3, 1);
        hours[10] = hour(10, 2, 0);
        let svg = last_day(&hours);
        assert_eq!(svg.matches("<g class=\"hour\">").count(), 24);
        assert!(svg.contains("5 succeeded, 1 failed."), "{svg}");
        assert!(svg.contains("3 succeeded, 1 failed, latency p50 12 ms, p99 80 ms"));
        // The busiest hour (4 attempts) fills the plot's 150 px: 3 succeeded → 112 px.
        assert!(svg.contains("height=\"112\""), "{svg}");
    }
}
