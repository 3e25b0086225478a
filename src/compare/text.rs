//! The comparison as text tables for a terminal. Everything read from
//! measurements is stripped of control and bidi-override characters first
//! (a hostile title must not drive the terminal).

use std::fmt::Write as _;

use super::aggregate::truncate;
use super::attribution::artifact_phrase;
use super::summary::{CellRow, CompareReport};

/// Widest cell of a table column.
const CELL_CHARS: usize = 48;
/// Widest URL column.
const URL_CHARS: usize = 60;

/// Renders the whole comparison.
pub fn render(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gatewatch compare: {} vantage point(s), {} measurement(s) from {} file(s), {} line(s) skipped",
        r.vantage_points.len(),
        r.inputs.measurements,
        r.inputs.files.len(),
        r.inputs.skipped_lines
    );

    section(&mut out, "Vantage points");
    let mut t = Table::new(&[
        "vantage point",
        "ASN",
        "CC",
        "network",
        "measurements",
        "URLs",
        "blocked URLs",
        "first",
        "last",
    ]);
    for v in &r.vantage_points {
        t.row(vec![
            v.label.clone(),
            v.asn.clone(),
            v.cc.clone(),
            v.network.clone().unwrap_or_default(),
            v.measurements.to_string(),
            v.urls.to_string(),
            v.blocked_urls.to_string(),
            v.first_time.clone().unwrap_or_default(),
            v.last_time.clone().unwrap_or_default(),
        ]);
    }
    t.render(&mut out);

    section(
        &mut out,
        &format!(
            "Verdicts per URL ({} of {} URLs blocked or throttled somewhere; latest verdict, blocked/measured)",
            r.urls.len(),
            r.urls_measured
        ),
    );
    let mut head = vec!["URL".to_string()];
    head.extend(r.vantage_points.iter().map(|v| v.label.clone()));
    let mut t = Table::with_header(head);
    for u in &r.urls {
        let mut row = vec![truncate(&u.url, URL_CHARS)];
        for v in &r.vantage_points {
            row.push(
                u.cells
                    .iter()
                    .find(|c| c.vantage == v.label)
                    .map(cell_text)
                    .unwrap_or_else(|| "-".to_string()),
            );
        }
        t.row(row);
    }
    t.render(&mut out);

    section(
        &mut out,
        "Mechanisms per vantage point (blocked or throttled measurements)",
    );
    for v in &r.vantage_points {
        let total: u64 = v.mechanisms.iter().map(|m| m.count).sum();
        let mix: Vec<String> = v
            .mechanisms
            .iter()
            .map(|m| format!("{} {} ({:.0}%)", m.name, m.count, pct(m.count, total)))
            .collect();
        let a6: Vec<String> = v.article6.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            out,
            "  {}: {}{}",
            clean(&v.label),
            if mix.is_empty() {
                "none".to_string()
            } else {
                clean(&mix.join(", "))
            },
            if a6.is_empty() {
                String::new()
            } else {
                format!("; article 6: {}", a6.join(", "))
            }
        );
    }

    section(
        &mut out,
        "Blockpages found by clustering (one page for unrelated sites)",
    );
    if r.page_clusters.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &r.page_clusters {
        let _ = writeln!(
            out,
            "  page sha256 {}: {} sites ({}){}",
            clean(&c.page_sha256.chars().take(16).collect::<String>()),
            c.sites,
            clean(&c.hosts.join(", ")),
            if c.vantages.is_empty() {
                String::new()
            } else {
                format!("; seen at {}", clean(&c.vantages.join(", ")))
            }
        );
    }
    let diverted: Vec<String> = r
        .vantage_points
        .iter()
        .filter(|v| !v.interference.is_empty())
        .map(|v| {
            let k: Vec<String> = v
                .interference
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("{}: {}", v.label, k.join(", "))
        })
        .collect();
    if !diverted.is_empty() {
        section(
            &mut out,
            "Interference beside the status (e.g. dns.diverted: the name led to a middlebox that passed the site through)",
        );
        for d in diverted {
            let _ = writeln!(out, "  {}", clean(&d));
        }
    }

    section(&mut out, "Artifacts (shared across vantage points first)");
    if r.artifacts.is_empty() {
        let _ = writeln!(out, "  none recorded");
    }
    let mut t = Table::new(&["artifact", "seen at (URLs, first seen)"]).wide();
    for a in &r.artifacts {
        let at: Vec<String> = a
            .seen_at
            .iter()
            .map(|s| {
                format!(
                    "{} ({}, {})",
                    s.vantage,
                    s.urls,
                    s.first_seen.as_deref().unwrap_or("?")
                )
            })
            .collect();
        t.row(vec![
            artifact_phrase(a.kind, &a.value, &a.details),
            at.join("; "),
        ]);
    }
    t.render(&mut out);
    if r.artifacts_dropped > 0 {
        let _ = writeln!(
            out,
            "  ({} further distinct artifacts not kept)",
            r.artifacts_dropped
        );
    }

    section(
        &mut out,
        "Blocked-set similarity (Jaccard over URLs measured at both)",
    );
    let mut t = Table::new(&[
        "A",
        "B",
        "common URLs",
        "blocked A",
        "blocked B",
        "both",
        "Jaccard",
    ]);
    for j in &r.jaccard {
        t.row(vec![
            j.a.clone(),
            j.b.clone(),
            j.common_urls.to_string(),
            j.blocked_a.to_string(),
            j.blocked_b.to_string(),
            j.blocked_both.to_string(),
            j.jaccard
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "n/a".to_string()),
        ]);
    }
    if r.jaccard.is_empty() {
        let _ = writeln!(out, "  one vantage point: nothing to compare");
    } else {
        t.render(&mut out);
    }

    section(
        &mut out,
        "First seen blocked (* = blocked from the first measurement there)",
    );
    let mut head = vec!["URL".to_string()];
    head.extend(r.vantage_points.iter().map(|v| v.label.clone()));
    head.push("spread".to_string());
    let mut t = Table::with_header(head);
    for f in &r.first_seen {
        let mut row = vec![truncate(&f.url, URL_CHARS)];
        for v in &r.vantage_points {
            row.push(
                f.seen
                    .iter()
                    .find(|s| s.vantage == v.label)
                    .map(|s| {
                        format!(
                            "{}{}",
                            s.first_blocked,
                            if s.onset_observed { "" } else { "*" }
                        )
                    })
                    .unwrap_or_else(|| "-".to_string()),
            );
        }
        row.push(f.spread_seconds.map(span).unwrap_or_default());
        t.row(row);
    }
    t.render(&mut out);

    section(
        &mut out,
        "Attribution: central gateway or ISP-level? Evidence per criterion",
    );
    for (i, c) in r.attribution.criteria.iter().enumerate() {
        let _ = writeln!(out, "{}. {} — {}", i + 1, c.title, c.leaning.describe());
        let _ = writeln!(out, "   gateway would show: {}", c.gateway_expectation);
        let _ = writeln!(out, "   ISP-level would show: {}", c.isp_expectation);
        for e in &c.evidence {
            let _ = writeln!(out, "   - {}", clean(e));
        }
    }
    let _ = writeln!(out);
    for n in &r.attribution.notes {
        let _ = writeln!(out, "{}", clean(n));
    }
    out
}

fn cell_text(c: &CellRow) -> String {
    let mut s = c.latest_status.as_str().to_string();
    if let Some(m) = &c.latest_mechanism {
        s.push(' ');
        s.push_str(m);
    } else if c.blocked > 0 {
        if let Some(m) = c.mechanisms.first() {
            s.push_str(&format!(" (was {})", m.name));
        }
    }
    s.push_str(&format!(" {}/{}", c.blocked, c.measurements));
    s
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n== {title}");
}

fn pct(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

fn span(secs: i64) -> String {
    if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86_400 {
        format!("{:.1}h", secs as f64 / 3600.0)
    } else {
        format!("{:.1}d", secs as f64 / 86_400.0)
    }
}

/// Replaces control and bidi-override characters with `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    max: usize,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table::with_header(header.iter().map(|h| h.to_string()).collect())
    }

    fn with_header(header: Vec<String>) -> Table {
        Table {
            header,
            rows: Vec::new(),
            max: CELL_CHARS,
        }
    }

    fn wide(mut self) -> Table {
        self.max = 120;
        self
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| truncate(&clean(&c), self.max))
                .collect(),
        );
    }

    fn render(&self, out: &mut String) {
        let header: Vec<String> = self
            .header
            .iter()
            .map(|h| truncate(&clean(h), self.max))
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::from(" ");
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(c.chars().count());
                s.push(' ');
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.extend(std::iter::repeat_n(' ', pad + 1));
                }
            }
            let _ = writeln!(out, "{}", s.trim_end());
        };
        line(&header, out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, out);
        for r in &self.rows {
            line(r, out);
        }
    }
}
