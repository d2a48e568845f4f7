//! The figures of a measurement: a table for people, one JSON line for aggregating runs.

use serde_json::json;

use crate::browser::PageLoad;
use crate::fetch::Weight;

/// The page and its two assets, weighed with the plain client.
pub struct Sizes {
    pub html: Weight,
    pub css: Weight,
    pub js: Weight,
}

pub struct Summary {
    pub endpoints: usize,
    /// First visits: a new link in a fresh profile.
    pub cold: Vec<PageLoad>,
    /// The same page opened again in the same browser (assets from its cache).
    pub warm: Vec<PageLoad>,
    pub sizes: Sizes,
    /// Plain GETs of `/portal/`, request sent to the body's last byte.
    pub server_ms: Vec<f64>,
    /// `/proc/loadavg`'s first figure when the measurement began (the machine is shared).
    pub loadavg_1m_at_start: Option<f64>,
}

/// The median (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The medians over `loads` of each timing, in the table's column order.
fn medians(loads: &[PageLoad]) -> [f64; 7] {
    let m = |f: fn(&PageLoad) -> f64| median(loads.iter().map(f));
    [
        m(|l| l.fp_ms),
        m(|l| l.fcp_ms),
        m(|l| l.dcl_ms),
        m(|l| l.load_ms),
        m(|l| l.server_ms),
        m(|l| l.download_ms),
        m(|l| l.redirect_ms),
    ]
}

fn row(label: &str, v: [f64; 7]) {
    println!(
        "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        v[0], v[1], v[2], v[3], v[4], v[5], v[6]
    );
}

fn timings(l: &PageLoad) -> [f64; 7] {
    [
        l.fp_ms,
        l.fcp_ms,
        l.dcl_ms,
        l.load_ms,
        l.server_ms,
        l.download_ms,
        l.redirect_ms,
    ]
}

impl Summary {
    pub fn print_table(&self) {
        println!(
            "\nendpoints page, tenant with {} endpoints (1-minute load average at the start: {})\n",
            self.endpoints,
            self.loadavg_1m_at_start
                .map_or_else(|| "?".to_string(), |l| l.to_string())
        );
        println!("| load | first paint ms | FCP ms | DOMContentLoaded ms | load ms | server (responseStart - requestStart) ms | HTML download ms | redirect ms |");
        println!("|---|---|---|---|---|---|---|---|");
        for (i, l) in self.cold.iter().enumerate() {
            row(&format!("cold {}", i + 1), timings(l));
        }
        row("**cold, median**", medians(&self.cold));
        for (i, l) in self.warm.iter().enumerate() {
            row(&format!("warm {}", i + 1), timings(l));
        }
        row("**warm, median**", medians(&self.warm));

        let first = self.cold.first();
        println!(
            "\nrows in table#endpoints: {} (first and last: {:?}); elements in the document: {}; after the table: {:?}",
            first.map_or(0, |l| l.rows),
            first.map(|l| l.shown.clone()).unwrap_or_default(),
            first.map_or(0, |l| l.nodes),
            first.map(|l| l.note.clone()).unwrap_or_default()
        );
        if let Some(l) = first {
            println!(
                "browser, cold: HTML transfer {} B (encoded {}, decoded {}); portal.css {:?}, portal.js {:?} (transfer, encoded, decoded)",
                l.html_transfer, l.html_encoded, l.html_decoded, l.css, l.js
            );
        }
        if let Some(l) = self.warm.first() {
            println!(
                "browser, warm: HTML transfer {} B; portal.css {:?}, portal.js {:?}",
                l.html_transfer, l.css, l.js
            );
        }

        println!("\n| resource | bytes | served to a browser (Accept-Encoding: gzip, deflate, br) | gzip -6 |");
        println!("|---|---|---|---|");
        let s = &self.sizes;
        for (name, w) in [
            ("/portal/ (HTML)", &s.html),
            ("portal.css", &s.css),
            ("portal.js", &s.js),
        ] {
            println!(
                "| {name} | {} | {} ({}) | {} |",
                w.bytes,
                w.served_bytes,
                w.served_encoding.as_deref().unwrap_or("not compressed"),
                w.gzip_bytes
            );
        }
        println!(
            "| **total** | {} | {} | {} |",
            s.html.bytes + s.css.bytes + s.js.bytes,
            s.html.served_bytes + s.css.served_bytes + s.js.served_bytes,
            s.html.gzip_bytes + s.css.gzip_bytes + s.js.gzip_bytes
        );

        let mut sorted = self.server_ms.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "\nserver: {} plain GETs of /portal/ (keep-alive, to the body's last byte): median {:.2} ms, min {:.2}, max {:.2}",
            sorted.len(),
            median(sorted.iter().copied()),
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN)
        );
    }

    /// Every figure on one line.
    pub fn json(&self) -> String {
        let names = [
            "fp_ms",
            "fcp_ms",
            "dcl_ms",
            "load_ms",
            "server_ms",
            "download_ms",
            "redirect_ms",
        ];
        let named = |v: [f64; 7]| {
            names
                .iter()
                .zip(v)
                .map(|(k, x)| ((*k).to_string(), json!((x * 100.0).round() / 100.0)))
                .collect::<serde_json::Map<_, _>>()
        };
        let s = &self.sizes;
        json!({
            "endpoints": self.endpoints,
            "cold_median": named(medians(&self.cold)),
            "warm_median": named(medians(&self.warm)),
            "cold": self.cold,
            "warm": self.warm,
            "sizes": {"html": s.html, "css": s.css, "js": s.js},
            "server_get_ms_median": median(self.server_ms.iter().copied()),
            "server_get_ms": self.server_ms.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "loadavg_1m_at_start": self.loadavg_1m_at_start,
        })
        .to_string()
    }
}
