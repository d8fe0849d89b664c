//! A small SVG chart: the cumulative distribution of latency samples, one line per
//! series. Hand-written to avoid a plotting stack with font dependencies.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A CDF plot of `series` (label, samples in ms) with a log-scaled x axis.
pub fn cdf(title: &str, x_label: &str, series: &[(String, Vec<f64>)]) -> String {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(0.01);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| LEFT + (v.max(lo).log10() - l0) / (l1 - l0) * (W - LEFT - RIGHT);
    let y = |f: f64| TOP + (1.0 - f) * (H - TOP - BOTTOM);

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and axes.
    let mut decade = l0;
    while decade <= l1 {
        let v = 10f64.powf(decade);
        let px = x(v);
        let _ = write!(
            s,
            r##"<line x1="{px}" y1="{TOP}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            crate::stats::ms(v)
        );
        decade += 1.0;
    }
    for f in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
        let py = y(f);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            if f == 0.99 {
                "0.99".to_string()
            } else {
                format!("{f}")
            }
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">fraction of deliveries</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 20.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    // One step line per series.
    for (i, (label, samples)) in series.iter().enumerate() {
        let mut v: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let color = COLORS[i % COLORS.len()];
        let n = v.len() as f64;
        let step = (v.len() / 400).max(1);
        let mut points = format!("{:.1},{:.1}", x(v[0]), y(0.0));
        for (k, val) in v.iter().enumerate().step_by(step) {
            let _ = write!(points, " {:.1},{:.1}", x(*val), y((k + 1) as f64 / n));
        }
        let _ = write!(points, " {:.1},{:.1}", x(v[v.len() - 1]), y(1.0));
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>"#
        );
        let ly = TOP + 14.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            LEFT + 12.0,
            ly - 10.0,
            LEFT + 30.0,
            ly,
            escape(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
