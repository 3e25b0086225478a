//! The end-of-run summary: counts per verdict status and the anomalous URLs,
//! printed for people (Khmer or English) and written as JSON
//! (`--json-summary FILE`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::preflight::{Network, Preflight};
use super::strings::{self, Lang, NetWords, Phrase};
use crate::analysis::lossy;
use crate::control::backpressure::ControlHealth;
use crate::model::{Measurement, VerdictStatus};

/// The network and the control, as the run saw them.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkHealth {
    /// The preflight's verdict: `up`, `no_control` or `dead`.
    pub state: Network,
    /// What each preflight check found.
    pub preflight: Preflight,
    /// Each control over the run: answers, 429s, 503s, other failures.
    pub controls: Vec<ControlHealth>,
}

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
    /// Network steps that can be repeated after a silence (DNS queries over
    /// UDP and system lookups), over every URL.
    pub retriable_steps: u64,
    /// Of those, the ones that needed more than one try.
    pub retried_steps: u64,
    /// `retried_steps / retriable_steps`: an estimate of how lossy the line
    /// was (null without such steps). Above
    /// [`crate::analysis::lossy::LOSSY_LINE_SHARE`] verdicts are less certain.
    pub line_loss_estimate: Option<f64>,
    /// True when `line_loss_estimate` is above the lossy-line share.
    pub lossy_line: bool,
    /// Measurements without a control answer (the control failed or
    /// pushed back past the deadline; `--control none` not counted).
    pub control_failures: u64,
    /// Measurements without control data for any reason (including
    /// `--control none`).
    pub without_control: u64,
    /// The network and control health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkHealth>,
    /// `probe_asn` of the run (`AS0` when unknown).
    pub probe_asn: String,
    /// `probe_cc` of the run (`ZZ` when unknown).
    pub probe_cc: String,
    /// `probe_network_name`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_network_name: Option<String>,
    /// The probe's clock against the reference time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<super::clock::ClockSummary>,
    /// Stretches of network-wide interception (captive portal, walled
    /// garden, dead connection) during the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_interception: Vec<super::netwatch::Episode>,
    /// Reference checks of the network made during the run (after bursts
    /// of failures and periodically; the one before the run aside).
    pub network_checks: u64,
}

impl Summary {
    /// Counts one finished measurement; returns true when it is anomalous.
    pub fn add(&mut self, m: &Measurement) -> bool {
        self.measured += 1;
        let (steps, retried) = lossy::retried_steps(m);
        self.retriable_steps += u64::from(steps);
        self.retried_steps += u64::from(retried);
        self.line_loss_estimate = (self.retriable_steps > 0)
            .then(|| self.retried_steps as f64 / self.retriable_steps as f64);
        self.lossy_line = self
            .line_loss_estimate
            .is_some_and(|l| l > lossy::LOSSY_LINE_SHARE);
        if m.test_keys.x_interrupted.is_some() {
            self.interrupted += 1;
            return false;
        }
        if let Some(f) = &m.test_keys.control_failure {
            self.without_control += 1;
            if f != "control_disabled" {
                self.control_failures += 1;
            }
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
        if let Some(share) = self.line_loss_estimate {
            let _ = writeln!(
                s,
                "  {}: {}/{} ({:.0} %)",
                strings::phrase(lang, Phrase::Retried),
                self.retried_steps,
                self.retriable_steps,
                share * 100.0
            );
        }
        if self.lossy_line {
            let _ = writeln!(s, "{}", strings::phrase(lang, Phrase::LossyLine));
        }
        self.render_network(lang, &mut s);
        if self.anomalies.is_empty() {
            match self.mostly_inconclusive() {
                Some(why) => {
                    let _ = writeln!(
                        s,
                        "{}: {}.",
                        strings::net_words(lang, NetWords::MostlyInconclusive),
                        strings::net_words(lang, why)
                    );
                }
                None => {
                    let _ = writeln!(s, "{}", strings::phrase(lang, Phrase::NoAnomalies));
                }
            }
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
        if let Some(w) = self.clock.as_ref().and_then(|c| c.warning(lang)) {
            let _ = writeln!(s, "{w}");
        }
        for e in &self.network_interception {
            let _ = writeln!(
                s,
                "{}",
                strings::network_wide_summary(
                    lang,
                    e.since_hhmm(),
                    e.until.as_deref().and_then(|u| u.get(11..16)),
                    e.portal.as_deref(),
                    e.marked
                )
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

    /// When more than half of the judged URLs are inconclusive (or not
    /// classified), why: the control, or the sites themselves.
    pub fn mostly_inconclusive(&self) -> Option<NetWords> {
        let judged: u64 = self.verdicts.values().sum();
        let unsure = self.verdicts.get("inconclusive").copied().unwrap_or(0)
            + self.verdicts.get("unclassified").copied().unwrap_or(0);
        if judged == 0 || unsure * 2 <= judged {
            return None;
        }
        let no_control = self
            .network
            .as_ref()
            .is_some_and(|n| n.state == Network::NoControl);
        Some(if no_control || self.without_control * 2 > judged {
            NetWords::BecauseControl
        } else {
            NetWords::BecauseUnreachable
        })
    }

    /// The control lines of the human summary.
    fn render_network(&self, lang: Lang, s: &mut String) {
        if self.probe_asn.is_empty()
            || self.probe_asn == crate::geo::UNKNOWN_ASN
            || self.probe_cc == crate::geo::UNKNOWN_CC
        {
            let _ = writeln!(
                s,
                "  {}",
                strings::net_words(lang, NetWords::UnknownNetwork)
            );
        } else {
            let name = self
                .probe_network_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}: {}{name}, {}",
                strings::net_words(lang, NetWords::Network),
                self.probe_asn,
                self.probe_cc
            );
        }
        if self
            .network
            .as_ref()
            .is_some_and(|n| n.state == Network::NoControl)
        {
            let _ = writeln!(s, "  {}", strings::net_words(lang, NetWords::NoControl));
        }
        if self.control_failures > 0 {
            let _ = writeln!(
                s,
                "  {}: {}",
                strings::net_words(lang, NetWords::ControlFailures),
                self.control_failures
            );
        }
        let push_backs: u64 = self
            .network
            .iter()
            .flat_map(|n| &n.controls)
            .map(|c| c.http_429 + c.http_503)
            .sum();
        if push_backs > 0 {
            let _ = writeln!(
                s,
                "  {}: {push_backs}",
                strings::net_words(lang, NetWords::ControlPushBacks)
            );
        }
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
        assert!(s.line_loss_estimate.is_none());
    }

    #[test]
    fn the_line_loss_estimate_and_its_warning() {
        let q = |n: u32| probes::records::DnsQuery {
            engine: "udp".into(),
            x_attempts: n,
            ..Default::default()
        };
        let mut s = Summary::default();
        let mut a = m("https://a.example/", Some(VerdictStatus::Accessible));
        a.test_keys.queries = vec![q(1), q(1), q(1), q(1), q(1)];
        s.add(&a);
        assert_eq!(s.line_loss_estimate, Some(0.0));
        assert!(!s.lossy_line);
        assert!(!s.render(Lang::En).contains("lost many packets"));
        let mut b = m("https://b.example/", Some(VerdictStatus::Accessible));
        b.test_keys.queries = vec![q(2), q(3), q(1), q(1), q(1)];
        s.add(&b);
        assert_eq!((s.retried_steps, s.retriable_steps), (2, 10));
        assert!(s.lossy_line, "20 % of steps retried");
        let en = s.render(Lang::En);
        assert!(
            en.contains("Network steps repeated after a silence: 2/10 (20 %)"),
            "{en}"
        );
        assert!(en.contains("lost many packets"), "{en}");
        assert!(s.render(Lang::Km).contains("មិនសូវប្រាកដ"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["line_loss_estimate"], 0.2);
        assert_eq!(json["lossy_line"], true);
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

    #[test]
    fn mostly_inconclusive_never_says_no_anomalies() {
        let mut s = Summary {
            total: 3,
            ..Default::default()
        };
        for u in ["https://a.example/", "https://b.example/"] {
            let mut x = m(u, Some(VerdictStatus::Inconclusive));
            x.test_keys.control_failure = Some("control unreachable".into());
            s.add(&x);
        }
        s.add(&m("https://c.example/", Some(VerdictStatus::Accessible)));
        assert_eq!(s.control_failures, 2);
        assert_eq!(s.mostly_inconclusive(), Some(NetWords::BecauseControl));
        for lang in [Lang::En, Lang::Km] {
            let text = s.render(lang);
            assert!(
                !text.contains(strings::phrase(lang, Phrase::NoAnomalies)),
                "{text}"
            );
            assert!(
                text.contains(strings::net_words(lang, NetWords::MostlyInconclusive)),
                "{text}"
            );
        }
        // Inconclusive because the sites were down, with a working control.
        let mut s = Summary::default();
        s.add(&m("https://a.example/", Some(VerdictStatus::Inconclusive)));
        assert_eq!(s.mostly_inconclusive(), Some(NetWords::BecauseUnreachable));
        s.add(&m("https://b.example/", Some(VerdictStatus::Accessible)));
        assert_eq!(s.mostly_inconclusive(), None);
        assert!(s.render(Lang::En).contains("No anomalies found."));
    }
}
