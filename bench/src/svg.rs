//! Hand-written SVG charts (no font metrics needed: text is left to the viewer).

use std::fmt::Write;

const W: f64 = 860.0;
const LEFT: f64 = 300.0;
const RIGHT: f64 = 40.0;
const ROW: f64 = 26.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 56.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn header(out: &mut String, h: f64, title: &str, subtitle: &str) {
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{x}" y="22" font-size="15" font-weight="bold">{t}</text>
<text x="{x}" y="40" fill="#555">{s}</text>"##,
        x = 12,
        t = esc(title),
        s = esc(subtitle),
    );
}

/// Format a value with a unit, compactly.
pub(crate) fn fmt_val(v: f64, unit: &str) -> String {
    match unit {
        "ns" if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        "ns" if v >= 1e3 => format!("{:.1} µs", v / 1e3),
        "ns" => format!("{v:.0} ns"),
        _ if v >= 100.0 => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// One bar of [`hbars_log`]: label, median, min, max, colour.
pub(crate) struct Bar {
    /// Row label.
    pub(crate) label: String,
    /// Bar length.
    pub(crate) median: f64,
    /// Whisker start.
    pub(crate) min: f64,
    /// Whisker end.
    pub(crate) max: f64,
    /// Fill colour.
    pub(crate) color: &'static str,
}

/// Horizontal bars on a log10 axis, with min–max whiskers.
pub(crate) fn hbars_log(title: &str, subtitle: &str, unit: &str, bars: &[Bar]) -> String {
    let h = TOP + ROW * bars.len() as f64 + BOTTOM;
    let mut out = String::new();
    header(&mut out, h, title, subtitle);
    let lo = bars
        .iter()
        .map(|b| b.min.min(b.median))
        .fold(f64::INFINITY, f64::min)
        .max(1e-9);
    let hi = bars
        .iter()
        .map(|b| b.max.max(b.median))
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let (lo_e, hi_e) = (lo.log10().floor(), hi.log10().ceil());
    let plot_w = W - LEFT - RIGHT - 80.0;
    let x = |v: f64| LEFT + (v.max(10f64.powf(lo_e)).log10() - lo_e) / (hi_e - lo_e) * plot_w;
    let bottom = TOP + ROW * bars.len() as f64;
    let mut e = lo_e;
    while e <= hi_e {
        let v = 10f64.powf(e);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{ty}" text-anchor="middle" fill="#555">{l}</text>"##,
            x = x(v),
            ty = bottom + 16.0,
            l = esc(&fmt_val(v, unit)),
        );
        e += 1.0;
    }
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let _ = writeln!(
            out,
            r##"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>
<rect x="{LEFT}" y="{by}" width="{bw}" height="{bh}" fill="{c}"/>
<line x1="{x1}" y1="{wy}" x2="{x2}" y2="{wy}" stroke="#222"/><line x1="{x1}" y1="{wy0}" x2="{x1}" y2="{wy1}" stroke="#222"/><line x1="{x2}" y1="{wy0}" x2="{x2}" y2="{wy1}" stroke="#222"/>
<text x="{vx}" y="{ty}">{v}</text>"##,
            lx = LEFT - 8.0,
            ty = y + ROW * 0.62,
            label = esc(&b.label),
            by = y + 4.0,
            bw = (x(b.median) - LEFT).max(1.0),
            bh = ROW - 8.0,
            c = b.color,
            x1 = x(b.min),
            x2 = x(b.max),
            wy = y + ROW / 2.0,
            wy0 = y + ROW / 2.0 - 4.0,
            wy1 = y + ROW / 2.0 + 4.0,
            vx = x(b.max.max(b.median)) + 6.0,
            v = esc(&fmt_val(b.median, unit)),
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{y}" fill="#555">bars: median; whiskers: min–max over the runs; log scale</text>
</svg>"##,
        y = h - 12.0
    );
    out
}

/// One stacked bar of [`hbars_stacked`]: label and (segment name, value, colour).
pub(crate) struct Stack {
    /// Row label.
    pub(crate) label: String,
    /// Segments, left to right.
    pub(crate) parts: Vec<(&'static str, f64, &'static str)>,
}

/// Horizontal stacked bars on a linear axis, with an optional target line.
pub(crate) fn hbars_stacked(title: &str, subtitle: &str, unit: &str, rows: &[Stack], target: Option<f64>) -> String {
    let h = TOP + ROW * rows.len() as f64 + BOTTOM + 30.0;
    let mut out = String::new();
    header(&mut out, h, title, subtitle);
    let total = |r: &Stack| r.parts.iter().map(|p| p.1).sum::<f64>();
    let hi = rows.iter().map(total).fold(target.unwrap_or(0.0), f64::max).max(1.0) * 1.08;
    let plot_w = W - LEFT - RIGHT - 60.0;
    let x = |v: f64| LEFT + v / hi * plot_w;
    let bottom = TOP + ROW * rows.len() as f64;
    let step = nice_step(hi);
    let mut v = 0.0;
    while v <= hi {
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{ty}" text-anchor="middle" fill="#555">{v}</text>"##,
            x = x(v),
            ty = bottom + 16.0,
        );
        v += step;
    }
    let mut legend: Vec<(&str, &str)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let _ = writeln!(
            out,
            r##"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>"##,
            lx = LEFT - 8.0,
            ty = y + ROW * 0.62,
            label = esc(&r.label)
        );
        let mut at = 0.0;
        for (name, val, color) in &r.parts {
            let _ = writeln!(
                out,
                r##"<rect x="{x}" y="{by}" width="{w}" height="{bh}" fill="{color}"/>"##,
                x = x(at),
                by = y + 4.0,
                w = (x(at + val) - x(at)).max(0.0),
                bh = ROW - 8.0,
            );
            at += val;
            if !legend.iter().any(|l| l.0 == *name) {
                legend.push((name, color));
            }
        }
        let _ = writeln!(
            out,
            r##"<text x="{vx}" y="{ty}">{v}</text>"##,
            vx = x(at) + 6.0,
            ty = y + ROW * 0.62,
            v = esc(&fmt_val(at, unit)),
        );
    }
    if let Some(t) = target {
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{y1}" stroke="#c00" stroke-dasharray="5,3"/><text x="{tx}" y="{ty}" fill="#c00">target ≤ {t} {unit}</text>"##,
            x = x(t),
            y0 = TOP,
            y1 = bottom + 22.0,
            tx = x(t) + 4.0,
            ty = bottom + 32.0,
        );
    }
    let mut lx = LEFT;
    for (name, color) in legend {
        let _ = writeln!(
            out,
            r##"<rect x="{lx}" y="{y}" width="12" height="12" fill="{color}"/><text x="{tx}" y="{ty}">{n}</text>"##,
            y = h - 24.0,
            tx = lx + 16.0,
            ty = h - 14.0,
            n = esc(name)
        );
        lx += 30.0 + 7.0 * name.len() as f64;
    }
    out.push_str("</svg>\n");
    out
}

fn nice_step(hi: f64) -> f64 {
    let raw = hi / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A line series of [`lines_logx`].
pub(crate) struct Series {
    /// Legend name.
    pub(crate) name: String,
    /// Colour.
    pub(crate) color: &'static str,
    /// Points (x > 0).
    pub(crate) points: Vec<(f64, f64)>,
}

/// Lines over a log10 x axis and a linear y axis, with an optional target line.
pub(crate) fn lines_logx(
    title: &str,
    subtitle: &str,
    x_label: &str,
    unit: &str,
    series: &[Series],
    target: Option<f64>,
) -> String {
    let h = 420.0;
    let mut out = String::new();
    header(&mut out, h, title, subtitle);
    let (left, right, top, bottom) = (80.0, W - 180.0, TOP + 10.0, h - 60.0);
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let x_hi = xs.iter().copied().fold(1.0, f64::max).log10().ceil().max(1.0);
    let y_hi = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(target.unwrap_or(0.0), f64::max)
        .max(1e-3)
        * 1.1;
    let x = |v: f64| left + v.max(1.0).log10() / x_hi * (right - left);
    let y = |v: f64| bottom - v / y_hi * (bottom - top);
    let mut e = 0.0;
    while e <= x_hi {
        let v = 10f64.powf(e);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{ty}" text-anchor="middle" fill="#555">{v}</text>"##,
            x = x(v),
            ty = bottom + 16.0,
        );
        e += 1.0;
    }
    let step = nice_step(y_hi);
    let mut v = 0.0;
    while v <= y_hi {
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{yy}" x2="{right}" y2="{yy}" stroke="#eee"/><text x="{tx}" y="{ty}" text-anchor="end" fill="#555">{v} {unit}</text>"##,
            yy = y(v),
            tx = left - 6.0,
            ty = y(v) + 4.0,
        );
        v += step;
    }
    if let Some(t) = target {
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{yy}" x2="{right}" y2="{yy}" stroke="#c00" stroke-dasharray="5,3"/><text x="{tx}" y="{ty}" fill="#c00">target ≤ {t} {unit}</text>"##,
            yy = y(t),
            tx = left + 6.0,
            ty = y(t) - 5.0,
        );
    }
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/>"##,
            p = pts.join(" "),
            c = s.color
        );
        for p in &s.points {
            let _ = writeln!(
                out,
                r##"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{c}"/><text x="{tx}" y="{ty}" font-size="10" fill="{c}">{v:.1}</text>"##,
                cx = x(p.0),
                cy = y(p.1),
                c = s.color,
                tx = x(p.0) + 5.0,
                ty = y(p.1) - 5.0,
                v = p.1
            );
        }
        let ly = top + 40.0 + 20.0 * i as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{lx}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{tx}" y="{ty}">{n}</text>"##,
            lx = right + 10.0,
            lx2 = right + 30.0,
            c = s.color,
            tx = right + 36.0,
            ty = ly + 4.0,
            n = esc(&s.name)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{cx}" y="{ty}" text-anchor="middle" fill="#333">{xl}</text>
</svg>"##,
        cx = (left + right) / 2.0,
        ty = h - 20.0,
        xl = esc(x_label)
    );
    out
}
