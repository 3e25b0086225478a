//! Inline SVG bar charts: horizontal bars with the label above each bar,
//! drawn in a fixed viewBox that scales to the page width (readable on a
//! phone). Labels are escaped by the caller's [`super::escape::escape`].

use std::fmt::Write as _;

use super::escape::escape;

/// One segment of a bar.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Its value.
    pub value: u64,
    /// Fill colour (a CSS colour we choose, never input).
    pub color: &'static str,
    /// Tooltip name (`blocked`, ...).
    pub name: String,
}

/// One bar: a label and stacked segments.
#[derive(Clone, Debug)]
pub struct Bar {
    /// Shown above the bar.
    pub label: String,
    /// Stacked left to right.
    pub segments: Vec<Segment>,
}

const WIDTH: u32 = 400;
const ROW: u32 = 38;
const BAR_H: u32 = 14;
const VALUE_W: u32 = 56;

/// The largest bar total (at least 1).
pub fn largest(bars: &[Bar]) -> u64 {
    bars.iter()
        .map(|b| b.segments.iter().map(|s| s.value).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// Renders bars scaled to the largest total, with an accessible title.
pub fn bar_chart(title: &str, bars: &[Bar]) -> String {
    bar_chart_scaled(title, bars, largest(bars))
}

/// Renders bars with `max` as the full width, so several charts can share
/// one scale (a bar of 3 is as long in each).
pub fn bar_chart_scaled(title: &str, bars: &[Bar], max: u64) -> String {
    let max = max.max(largest(bars));
    let height = (bars.len() as u32).max(1) * ROW + 4;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    let span = (WIDTH - VALUE_W) as f64;
    for (i, b) in bars.iter().enumerate() {
        let y = i as u32 * ROW;
        let total: u64 = b.segments.iter().map(|s| s.value).sum();
        let _ = write!(
            s,
            r#"<text x="0" y="{}" class="lbl">{}</text>"#,
            y + 14,
            escape(&clip(&b.label, 60))
        );
        let mut x = 0.0;
        for seg in &b.segments {
            if seg.value == 0 {
                continue;
            }
            let w = (seg.value as f64 / max as f64 * span).max(1.0);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{}" width="{w:.1}" height="{BAR_H}" fill="{}"><title>{}: {}</title></rect>"#,
                y + 19,
                seg.color,
                escape(&seg.name),
                seg.value
            );
            x += w;
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="val">{total}</text>"#,
            x + 4.0,
            y + 31
        );
    }
    s.push_str("</svg>");
    s
}

fn clip(s: &str, n: usize) -> String {
    super::super::compare::aggregate::truncate(s, n)
}
