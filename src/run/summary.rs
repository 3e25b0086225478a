//! The end-of-run summary: counts per verdict status and the anomalous URLs,
//! printed for people (Khmer or English) and written as JSON
//! (`--json-summary FILE`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::strings::{self, Lang, Phrase};
use crate::model::{Measurement, VerdictStatus};

/// One anomalous URL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// The URL.
    pub input: String,
    /// `blocked` or `throttled`.
    pub status: String,
    /// The layer, when known.
    pub layer: Option<String>,
    /// The mechanism, when known.
    pub mechanism: Option<String>,
    /// `confirmed`, `likely`, `possible`.
    pub confidence: Option<String>,
}

/// Tallies of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// When the run started (UTC, `YYYY-MM-DD hh:mm:ss`).
    pub test_start_time: String,
    /// Seconds the run took.
    pub runtime_seconds: f64,
    /// The results file.
    pub output: PathBuf,
    /// URLs selected for this run (after filters, dedup and resume).
    pub total: u64,
    /// Measurements written by this run.
    pub measured: u64,
    /// Of those, cut short by Ctrl-C or the per-URL deadline.
    pub interrupted: u64,
    /// URLs skipped because `--resume` found them finished.
    pub resumed_skipped: u64,
    /// Per verdict status (`unclassified` when no verdict was made).
    pub verdicts: BTreeMap<String, u64>,
    /// The blocked and throttled URLs.
    pub anomalies: Vec<Anomaly>,
    /// True when the run stopped early.
    pub aborted: bool,
    /// Measurements per interference kind recorded beside the status
    /// (e.g. `dns.diverted`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub interference: BTreeMap<String, u64>,
    /// Probe-side pages served for two or more unrelated sites in this run
    /// (blockpages found by clustering), with every site. The first site
    /// of a cluster was written before the cluster was known: this list is
    /// where it is named.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub page_clusters: Vec<crate::analysis::cluster::ClusterInfo>,
}

impl Summary {
    /// Counts one finished measurement; returns true when it is anomalous.
    pub fn add(&mut self, m: &Measurement) -> bool {
        self.measured += 1;
        if m.test_keys.x_interrupted.is_some() {
            self.interrupted += 1;
            return false;
        }
        let v = m.test_keys.x_verdict.as_ref();
        for k in v.iter().flat_map(|v| v.interference.iter()) {
            *self.interference.entry(k.clone()).or_default() += 1;
        }
        let key = v.map_or("unclassified", |v| v.status.as_str());
        *self.verdicts.entry(key.to_string()).or_default() += 1;
        match v {
            Some(v) if matches!(v.status, VerdictStatus::Blocked | VerdictStatus::Throttled) => {
                self.anomalies.push(Anomaly {
                    input: m.input.clone().unwrap_or_default(),
                    status: v.status.as_str().to_string(),
                    layer: v.layer.clone(),
                    mechanism: v.mechanism.clone(),
                    confidence: v.confidence.clone(),
                });
                true
            }
            _ => false,
        }
    }

    /// The human summary.
    pub fn render(&self, lang: Lang) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", strings::phrase(lang, Phrase::Heading));
        let _ = writeln!(
            s,
            "  {}: {}/{}",
            strings::phrase(lang, Phrase::Measured),
            self.measured,
            self.total
        );
        let _ = writeln!(
            s,
            "  {}: {}",
            strings::phrase(lang, Phrase::Elapsed),
            humantime::format_duration(std::time::Duration::from_secs(
                self.runtime_seconds.round() as u64
            ))
        );
        let order = [
            Some(VerdictStatus::Accessible),
            Some(VerdictStatus::Blocked),
            Some(VerdictStatus::Throttled),
            Some(VerdictStatus::Down),
            Some(VerdictStatus::Inconclusive),
            None,
        ];
        for st in order {
            let key = st.map_or("unclassified", VerdictStatus::as_str);
            if let Some(n) = self.verdicts.get(key) {
                let _ = writeln!(s, "  {}: {n}", strings::status_name(lang, st));
            }
        }
        if self.interrupted > 0 {
            let _ = writeln!(
                s,
                "  {}: {}",
                strings::phrase(lang, Phrase::Interrupted),
                self.interrupted
            );
        }
        if self.anomalies.is_empty() {
            let _ = writeln!(s, "{}", strings::phrase(lang, Phrase::NoAnomalies));
        } else {
            let _ = writeln!(s, "{}:", strings::phrase(lang, Phrase::Anomalies));
            for a in &self.anomalies {
                let st = if a.status == "throttled" {
                    Some(VerdictStatus::Throttled)
                } else {
                    Some(VerdictStatus::Blocked)
                };
                let how = a.mechanism.as_deref().or(a.layer.as_deref()).unwrap_or("?");
                let conf = a
                    .confidence
                    .as_deref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  {} — {} ({how}{conf})",
                    a.input,
                    strings::status_name(lang, st)
                );
                if let Some(mech) = &a.mechanism {
                    let _ = writeln!(s, "      → {}", super::plainwords::describe(mech, lang));
                }
            }
        }
        for (k, n) in &self.interference {
            let _ = writeln!(s, "  {k}: {n}");
        }
        for c in &self.page_clusters {
            let _ = writeln!(
                s,
                "  blockpage {} ({} sites): {}",
                c.page_sha256.chars().take(16).collect::<String>(),
                c.sites,
                c.hosts.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "{}: {}",
            strings::phrase(lang, Phrase::ResultsIn),
            self.output.display()
        );
        let _ = writeln!(s, "{}", super::plainwords::next_steps(lang, &self.output));
        if self.aborted {
            let _ = writeln!(s, "{}", strings::phrase(lang, Phrase::ResumeHint));
        }
        s
    }

    /// Writes the JSON summary.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;

    fn m(input: &str, status: Option<VerdictStatus>) -> Measurement {
        let mut m = Measurement {
            input: Some(input.to_string()),
            ..Default::default()
        };
        m.test_keys.x_verdict = status.map(|status| Verdict {
            status,
            mechanism: Some("dns.nxdomain".into()),
            ..Default::default()
        });
        m
    }

    #[test]
    fn counts_and_anomalies() {
        let mut s = Summary {
            total: 3,
            ..Default::default()
        };
        assert!(!s.add(&m("https://a.example/", Some(VerdictStatus::Accessible))));
        assert!(s.add(&m("https://b.example/", Some(VerdictStatus::Blocked))));
        assert!(!s.add(&m("https://c.example/", None)));
        assert_eq!(s.verdicts["accessible"], 1);
        assert_eq!(s.verdicts["blocked"], 1);
        assert_eq!(s.verdicts["unclassified"], 1);
        assert_eq!(s.anomalies.len(), 1);
        let en = s.render(Lang::En);
        assert!(
            en.contains("https://b.example/ — blocked (dns.nxdomain)"),
            "{en}"
        );
        let km = s.render(Lang::Km);
        assert!(km.contains("ត្រូវបានបិទ"), "{km}");
    }

    #[test]
    fn counts_diverted_names_and_lists_clusters() {
        let mut s = Summary::default();
        let mut d = m("https://d.example/", Some(VerdictStatus::Accessible));
        if let Some(v) = d.test_keys.x_verdict.as_mut() {
            v.interference = vec!["dns.diverted".into()];
        }
        assert!(!s.add(&d));
        assert!(!s.add(&m("https://e.example/", Some(VerdictStatus::Accessible))));
        assert_eq!(s.interference.get("dns.diverted"), Some(&1));
        s.page_clusters = vec![crate::analysis::cluster::ClusterInfo {
            page_sha256: "ab".repeat(32),
            sites: 2,
            hosts: vec!["a.example".into(), "b.example".into()],
            vantages: Vec::new(),
        }];
        let en = s.render(Lang::En);
        assert!(en.contains("  dns.diverted: 1\n"), "{en}");
        assert!(
            en.contains("blockpage abababababababab (2 sites): a.example, b.example"),
            "{en}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["page_clusters"][0]["sites"], 2);
    }
}
