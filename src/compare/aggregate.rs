//! Streaming aggregation of measurements into per-vantage, per-URL and
//! per-artifact tallies. Nothing here keeps a measurement: each one is
//! folded into counters and capped samples, so memory grows with the number
//! of distinct URLs and vantage points, not with the number of lines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::artifacts::{self, ArtifactKind, LookupJudgement};
use crate::analysis::cluster;
use crate::model::{Blocking, Measurement, VerdictStatus};

/// Evidence sentences kept per URL and vantage point.
pub const MAX_EVIDENCE: usize = 8;
/// Characters kept of one evidence sentence.
pub const MAX_SENTENCE_CHARS: usize = 400;
/// Distinct artifacts kept overall; more are counted in `artifacts_dropped`.
pub const MAX_ARTIFACTS: usize = 10_000;
/// Sample URLs kept per artifact and vantage point.
pub const MAX_SAMPLE_URLS: usize = 5;
/// Distinct mechanisms kept per vantage point (the rest count as `other`).
const MAX_MECHANISMS: usize = 64;
/// Characters kept of a URL, a label or a mechanism read from a file.
const MAX_KEY_CHARS: usize = 2048;

/// How measurements are grouped into vantage points.
#[derive(Clone, Debug)]
pub enum Grouping {
    /// By `probe_asn` and `probe_cc` (labelled with `probe_network_name`
    /// when a measurement gives it).
    Network,
    /// One label per input file, in file order.
    Labels(Vec<String>),
}

/// The verdict of one measurement, from `x_verdict` or, for files without
/// it (OONI's own), from the classic `blocking`/`accessible` keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The status.
    pub status: VerdictStatus,
    /// `dns`, `tcp_ip`, `tls`, `http`, `throttling`.
    pub layer: Option<String>,
    /// The mechanism (`ooni:<blocking>` when taken from OONI's key).
    pub mechanism: Option<String>,
    /// `block`, `disconnect`, `degrade`.
    pub article6: Option<String>,
    /// `confirmed`, `likely`, `possible`.
    pub confidence: Option<String>,
}

impl Outcome {
    /// Reads the outcome of a measurement.
    pub fn of(m: &Measurement) -> Outcome {
        if let Some(v) = &m.test_keys.x_verdict {
            return Outcome {
                status: v.status,
                layer: v.layer.clone(),
                mechanism: v.mechanism.as_deref().map(cap),
                article6: v.nig_article6.clone(),
                confidence: v.confidence.clone(),
            };
        }
        let tk = &m.test_keys;
        let (status, layer) = match tk.blocking {
            Blocking::Undecided => (VerdictStatus::Inconclusive, None),
            Blocking::No if tk.accessible == Some(false) => (VerdictStatus::Down, None),
            Blocking::No => (VerdictStatus::Accessible, None),
            b => (VerdictStatus::Blocked, b.as_str()),
        };
        Outcome {
            status,
            layer: layer.map(|l| if l.starts_with("http") { "http" } else { l }.to_string()),
            mechanism: layer.map(|l| format!("ooni:{l}")),
            article6: None,
            confidence: None,
        }
    }

    /// Blocked or throttled.
    pub fn is_anomalous(&self) -> bool {
        matches!(
            self.status,
            VerdictStatus::Blocked | VerdictStatus::Throttled
        )
    }
}

/// Measurements per verdict status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// `accessible`.
    pub accessible: u64,
    /// `blocked`.
    pub blocked: u64,
    /// `throttled`.
    pub throttled: u64,
    /// `down`.
    pub down: u64,
    /// `inconclusive`.
    pub inconclusive: u64,
}

impl StatusCounts {
    /// Counts one more of `s`.
    pub fn add(&mut self, s: VerdictStatus) {
        *self.slot(s) += 1;
    }

    /// The count of `s`.
    pub fn get(&self, s: VerdictStatus) -> u64 {
        match s {
            VerdictStatus::Accessible => self.accessible,
            VerdictStatus::Blocked => self.blocked,
            VerdictStatus::Throttled => self.throttled,
            VerdictStatus::Down => self.down,
            VerdictStatus::Inconclusive => self.inconclusive,
        }
    }

    /// Sum over all statuses.
    pub fn total(&self) -> u64 {
        self.accessible + self.blocked + self.throttled + self.down + self.inconclusive
    }

    fn slot(&mut self, s: VerdictStatus) -> &mut u64 {
        match s {
            VerdictStatus::Accessible => &mut self.accessible,
            VerdictStatus::Blocked => &mut self.blocked,
            VerdictStatus::Throttled => &mut self.throttled,
            VerdictStatus::Down => &mut self.down,
            VerdictStatus::Inconclusive => &mut self.inconclusive,
        }
    }
}

/// Every status, in display order.
pub const STATUSES: [VerdictStatus; 5] = [
    VerdictStatus::Blocked,
    VerdictStatus::Throttled,
    VerdictStatus::Accessible,
    VerdictStatus::Down,
    VerdictStatus::Inconclusive,
];

/// How DNS-layer interference at one vantage point behaved across
/// resolvers (literature §3.1 "resolver independence").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResolverTally {
    /// Anomalous measurements whose layer is DNS.
    pub dns_anomalies: u64,
    /// ... where the system resolver was tampered with and every other
    /// resolver tried answered cleanly.
    pub system_only: u64,
    /// ... where at least one non-system resolver (public UDP/TCP, DoH)
    /// also gave a tampered answer.
    pub also_public: u64,
    /// ... where no non-system resolver was tried (or none could be judged).
    pub no_alternative: u64,
    /// Anomalous measurements with DNS injection evidence (racing replies,
    /// answers from an address that runs no resolver).
    pub injected: u64,
    /// Anomalous measurements at another layer (TCP/IP, TLS, HTTP), which
    /// do not depend on the resolver.
    pub other_layers: u64,
}

/// Transfer rates of throttled measurements at one vantage point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RateTally {
    /// Throttled measurements with a rate.
    pub n: u64,
    /// Sum of rates (bytes/s), for the mean.
    pub sum_bps: f64,
    /// Slowest.
    pub min_bps: f64,
    /// Fastest.
    pub max_bps: f64,
}

/// One vantage point's tallies.
#[derive(Clone, Debug, Default)]
pub struct Vantage {
    /// The label shown (`AS38623 KH Metfone`, or the user's label).
    pub label: String,
    /// `probe_asn` of its first measurement.
    pub asn: String,
    /// `probe_cc` of its first measurement.
    pub cc: String,
    /// `probe_network_name`, first one seen.
    pub network: Option<String>,
    /// Other ASNs seen under the same label (`--label` groups by file).
    pub other_asns: BTreeSet<String>,
    /// Measurements.
    pub measurements: u64,
    /// Per status.
    pub status: StatusCounts,
    /// Anomalous measurements per mechanism.
    pub mechanisms: BTreeMap<String, u64>,
    /// Anomalous measurements per article-6 power.
    pub article6: BTreeMap<String, u64>,
    /// Earliest `measurement_start_time`.
    pub first_time: Option<String>,
    /// Latest `measurement_start_time`.
    pub last_time: Option<String>,
    /// Resolver behaviour of DNS-layer anomalies.
    pub resolvers: ResolverTally,
    /// Throttling rates.
    pub rates: RateTally,
    /// Measurements per interference kind recorded beside the status
    /// (`x_verdict.interference`, e.g. `dns.diverted`), whatever the status.
    pub interference: BTreeMap<String, u64>,
}

/// One URL at one vantage point.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// Measurements.
    pub measurements: u64,
    /// Per status.
    pub status: StatusCounts,
    /// The latest measurement's time, status and mechanism.
    pub latest: Option<(String, VerdictStatus, Option<String>)>,
    /// Earliest measurement of this URL here.
    pub first_measured: Option<String>,
    /// Earliest anomalous measurement.
    pub first_anomalous: Option<String>,
    /// Earliest accessible measurement (an onset is observed only when it
    /// precedes `first_anomalous`).
    pub first_accessible: Option<String>,
    /// Anomalous measurements per mechanism.
    pub mechanisms: BTreeMap<String, u64>,
    /// Article-6 powers seen.
    pub article6: BTreeSet<String>,
    /// Confidence of the latest anomalous verdict.
    pub confidence: Option<String>,
    /// Evidence of the latest anomalous verdict (capped).
    pub evidence: Vec<String>,
    evidence_time: String,
}

/// One URL across vantage points.
#[derive(Clone, Debug, Default)]
pub struct UrlAgg {
    /// The URL.
    pub url: String,
    /// `annotations.category_code`, first one seen.
    pub category: Option<String>,
    /// Per vantage index.
    pub cells: BTreeMap<usize, Cell>,
}

/// One artifact at one vantage point.
#[derive(Clone, Debug, Default)]
pub struct ArtifactSeen {
    /// Anomalous measurements showing it.
    pub measurements: u64,
    /// Distinct URLs showing it (by URL index).
    pub urls: BTreeSet<usize>,
    /// Earliest time it was seen.
    pub first_seen: Option<String>,
}

/// One artifact across vantage points.
#[derive(Clone, Debug)]
pub struct ArtifactAgg {
    /// Its kind.
    pub kind: ArtifactKind,
    /// The compared value.
    pub value: String,
    /// Details seen with it (titles, resolvers, hop indexes), capped.
    pub details: BTreeSet<String>,
    /// Per vantage index.
    pub seen: BTreeMap<usize, ArtifactSeen>,
}

/// Everything folded so far.
#[derive(Debug)]
pub struct Aggregate {
    grouping: Grouping,
    vantage_ids: HashMap<String, usize>,
    url_ids: HashMap<String, usize>,
    artifact_ids: HashMap<(ArtifactKind, String), usize>,
    /// Vantage points, in order of first appearance.
    pub vantages: Vec<Vantage>,
    /// URLs, in order of first appearance.
    pub urls: Vec<UrlAgg>,
    /// Artifacts, in order of first appearance.
    pub artifacts: Vec<ArtifactAgg>,
    /// Artifacts not kept because of [`MAX_ARTIFACTS`].
    pub artifacts_dropped: u64,
    /// Measurements per status, overall.
    pub status: StatusCounts,
    /// Measurements per category and status.
    pub categories: BTreeMap<String, StatusCounts>,
    /// Anomalous measurements per mechanism, overall.
    pub mechanisms: BTreeMap<String, u64>,
    /// Anomalous measurements per article-6 power, overall.
    pub article6: BTreeMap<String, u64>,
    /// Measurements folded.
    pub measurements: u64,
    /// Probe-side pages that differ from their control, across all vantage
    /// points: pages shared by unrelated sites are blockpages.
    pub clusters: cluster::Registry,
}

impl Aggregate {
    /// An empty aggregate.
    pub fn new(grouping: Grouping) -> Aggregate {
        Aggregate {
            grouping,
            vantage_ids: HashMap::new(),
            url_ids: HashMap::new(),
            artifact_ids: HashMap::new(),
            vantages: Vec::new(),
            urls: Vec::new(),
            artifacts: Vec::new(),
            artifacts_dropped: 0,
            status: StatusCounts::default(),
            categories: BTreeMap::new(),
            mechanisms: BTreeMap::new(),
            article6: BTreeMap::new(),
            measurements: 0,
            clusters: cluster::Registry::new(),
        }
    }

    /// Folds in one measurement read from input file `file_index`.
    pub fn add(&mut self, file_index: usize, m: &Measurement) {
        self.measurements += 1;
        let outcome = Outcome::of(m);
        let time = valid_time(&m.measurement_start_time).map(str::to_string);
        let v = self.vantage_for(file_index, m);
        let u = self.url_for(m);
        let anomalous = outcome.is_anomalous();

        self.status.add(outcome.status);
        let category = m
            .annotations
            .get("category_code")
            .map(|c| cap(c))
            .unwrap_or_else(|| "(none)".to_string());
        self.categories
            .entry(category)
            .or_default()
            .add(outcome.status);
        if anomalous {
            let mech = outcome
                .mechanism
                .clone()
                .unwrap_or_else(|| "(unspecified)".to_string());
            bump_capped(&mut self.mechanisms, mech, MAX_MECHANISMS * 4);
            if let Some(a) = article6_name(outcome.article6.as_deref()) {
                *self.article6.entry(a.to_string()).or_default() += 1;
            }
        }

        if let Some((host, page, control)) = cluster::page_key_of(m) {
            let label = self.vantages[v].label.clone();
            self.clusters.add(&page, &host, &control, &label);
        }
        self.fold_vantage(v, m, &outcome, time.as_deref());
        self.fold_cell(u, v, m, &outcome, time.as_deref());
        if anomalous {
            let found =
                artifacts::extract(m, outcome.layer.as_deref(), outcome.mechanism.as_deref());
            for a in found {
                self.fold_artifact(a, v, u, time.as_deref());
            }
        }
    }

    fn vantage_for(&mut self, file_index: usize, m: &Measurement) -> usize {
        let network = m
            .probe_network_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(cap);
        let key = match &self.grouping {
            Grouping::Labels(labels) => labels
                .get(file_index)
                .cloned()
                .unwrap_or_else(|| format!("file {}", file_index + 1)),
            // One vantage point per network: the ASN and country, not the
            // name (OONI's older measurements have none, and a network's
            // name changes over the years); the name is shown when known.
            Grouping::Network => format!("{} {}", cap(&m.probe_asn), cap(&m.probe_cc)),
        };
        let by_network = matches!(self.grouping, Grouping::Network);
        if let Some(&i) = self.vantage_ids.get(&key) {
            let vp = &mut self.vantages[i];
            if vp.asn != m.probe_asn && vp.other_asns.len() < 16 {
                vp.other_asns.insert(cap(&m.probe_asn));
            }
            if vp.network.is_none() {
                if let (true, Some(n)) = (by_network, &network) {
                    vp.label = format!("{key} {n}");
                }
                vp.network = network;
            }
            return i;
        }
        let label = match (by_network, &network) {
            (true, Some(n)) => format!("{key} {n}"),
            _ => key.clone(),
        };
        let i = self.vantages.len();
        self.vantages.push(Vantage {
            label,
            asn: cap(&m.probe_asn),
            cc: cap(&m.probe_cc),
            network,
            ..Vantage::default()
        });
        self.vantage_ids.insert(key, i);
        i
    }

    fn url_for(&mut self, m: &Measurement) -> usize {
        let url = m
            .input
            .as_deref()
            .map(cap)
            .unwrap_or_else(|| "(no input)".to_string());
        if let Some(&i) = self.url_ids.get(&url) {
            return i;
        }
        let i = self.urls.len();
        self.urls.push(UrlAgg {
            url: url.clone(),
            category: m.annotations.get("category_code").map(|c| cap(c)),
            cells: BTreeMap::new(),
        });
        self.url_ids.insert(url, i);
        i
    }

    fn fold_vantage(&mut self, v: usize, m: &Measurement, o: &Outcome, time: Option<&str>) {
        let vp = &mut self.vantages[v];
        vp.measurements += 1;
        vp.status.add(o.status);
        if let Some(t) = time {
            set_min(&mut vp.first_time, t);
            set_max(&mut vp.last_time, t);
        }
        if let Some(v) = &m.test_keys.x_verdict {
            for k in &v.interference {
                bump_capped(&mut vp.interference, cap(k), MAX_MECHANISMS);
            }
        }
        if !o.is_anomalous() {
            return;
        }
        let mech = o
            .mechanism
            .clone()
            .unwrap_or_else(|| "(unspecified)".to_string());
        bump_capped(&mut vp.mechanisms, mech, MAX_MECHANISMS);
        if let Some(a) = article6_name(o.article6.as_deref()) {
            *vp.article6.entry(a.to_string()).or_default() += 1;
        }
        let is_dns = o.layer.as_deref() == Some("dns")
            || o.mechanism
                .as_deref()
                .is_some_and(|x| x.starts_with("dns.") || x == "ooni:dns");
        if is_dns {
            vp.resolvers.dns_anomalies += 1;
            tally_resolvers(&mut vp.resolvers, m);
        } else if o.status == VerdictStatus::Blocked {
            vp.resolvers.other_layers += 1;
        }
        if m.test_keys
            .x_injection
            .iter()
            .any(|e| e.kind.starts_with("dns."))
        {
            vp.resolvers.injected += 1;
        }
        if o.status == VerdictStatus::Throttled {
            if let Some(r) = m.test_keys.requests.first() {
                let bps = r.x_transfer.rate_bps;
                if bps > 0.0 && bps.is_finite() {
                    let t = &mut vp.rates;
                    t.min_bps = if t.n == 0 { bps } else { t.min_bps.min(bps) };
                    t.max_bps = t.max_bps.max(bps);
                    t.sum_bps += bps;
                    t.n += 1;
                }
            }
        }
    }

    fn fold_cell(&mut self, u: usize, v: usize, m: &Measurement, o: &Outcome, time: Option<&str>) {
        let cell = self.urls[u].cells.entry(v).or_default();
        cell.measurements += 1;
        cell.status.add(o.status);
        let t = time.unwrap_or("");
        let newer = cell
            .latest
            .as_ref()
            .is_none_or(|(lt, _, _)| t >= lt.as_str());
        if newer {
            cell.latest = Some((t.to_string(), o.status, o.mechanism.clone()));
        }
        if let Some(t) = time {
            set_min(&mut cell.first_measured, t);
            if o.status == VerdictStatus::Accessible {
                set_min(&mut cell.first_accessible, t);
            }
        }
        if !o.is_anomalous() {
            return;
        }
        if let Some(t) = time {
            set_min(&mut cell.first_anomalous, t);
        }
        let mech = o
            .mechanism
            .clone()
            .unwrap_or_else(|| "(unspecified)".to_string());
        bump_capped(&mut cell.mechanisms, mech, 8);
        if let Some(a) = article6_name(o.article6.as_deref()) {
            cell.article6.insert(a.to_string());
        }
        if cell.evidence.is_empty() || t >= cell.evidence_time.as_str() {
            cell.evidence_time = t.to_string();
            cell.confidence = o.confidence.as_deref().map(cap);
            cell.evidence = m
                .test_keys
                .x_verdict
                .as_ref()
                .map(|v| {
                    v.evidence
                        .iter()
                        .take(MAX_EVIDENCE)
                        .map(|s| truncate(s, MAX_SENTENCE_CHARS))
                        .collect()
                })
                .unwrap_or_default();
        }
    }

    fn fold_artifact(&mut self, a: artifacts::Artifact, v: usize, u: usize, time: Option<&str>) {
        let key = (a.kind, truncate(&a.value, 256));
        let i = match self.artifact_ids.get(&key) {
            Some(&i) => i,
            None if self.artifacts.len() >= MAX_ARTIFACTS => {
                self.artifacts_dropped += 1;
                return;
            }
            None => {
                let i = self.artifacts.len();
                self.artifacts.push(ArtifactAgg {
                    kind: a.kind,
                    value: key.1.clone(),
                    details: BTreeSet::new(),
                    seen: BTreeMap::new(),
                });
                self.artifact_ids.insert(key, i);
                i
            }
        };
        let agg = &mut self.artifacts[i];
        if let Some(d) = a.detail {
            if agg.details.len() < 4 {
                agg.details.insert(truncate(&d, 200));
            }
        }
        let seen = agg.seen.entry(v).or_default();
        seen.measurements += 1;
        seen.urls.insert(u);
        if let Some(t) = time {
            set_min(&mut seen.first_seen, t);
        }
    }
}

fn tally_resolvers(t: &mut ResolverTally, m: &Measurement) {
    // One judgement per resolver and name: its A and AAAA queries together
    // (an empty AAAA beside a good A is normal, not tampering).
    let mut lookups: BTreeMap<(bool, &str, String), Vec<&probes::records::DnsQuery>> =
        BTreeMap::new();
    for q in &m.test_keys.queries {
        let key = (
            artifacts::is_system_resolver(q),
            q.resolver_address.as_str(),
            q.hostname.trim_end_matches('.').to_ascii_lowercase(),
        );
        lookups.entry(key).or_default().push(q);
    }
    let mut system_tampered = false;
    let mut alt_tampered = false;
    let mut alt_clean = false;
    for ((system, _, host), qs) in &lookups {
        let j = artifacts::judge_name(qs, artifacts::control_addrs_for(m, host));
        if *system {
            system_tampered |= j == LookupJudgement::Tampered;
        } else {
            alt_tampered |= j == LookupJudgement::Tampered;
            alt_clean |= j == LookupJudgement::Clean;
        }
    }
    if alt_tampered {
        t.also_public += 1;
    } else if alt_clean && system_tampered {
        t.system_only += 1;
    } else {
        t.no_alternative += 1;
    }
}

/// The three powers of article 6 as we name them; anything else is `None`.
pub fn article6_name(s: Option<&str>) -> Option<&'static str> {
    match s? {
        "block" => Some("block"),
        "disconnect" => Some("disconnect"),
        "degrade" => Some("degrade"),
        _ => None,
    }
}

/// `YYYY-MM-DD hh:mm:ss`, or `None` (such times compare as strings).
pub fn valid_time(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    shape.then_some(s)
}

fn set_min(slot: &mut Option<String>, t: &str) {
    if slot.as_deref().is_none_or(|s| t < s) {
        *slot = Some(t.to_string());
    }
}

fn set_max(slot: &mut Option<String>, t: &str) {
    if slot.as_deref().is_none_or(|s| t > s) {
        *slot = Some(t.to_string());
    }
}

fn bump_capped(map: &mut BTreeMap<String, u64>, key: String, cap: usize) {
    if map.len() >= cap && !map.contains_key(&key) {
        *map.entry("(other)".to_string()).or_default() += 1;
    } else {
        *map.entry(key).or_default() += 1;
    }
}

fn cap(s: &str) -> String {
    truncate(s, MAX_KEY_CHARS)
}

/// At most `n` characters of `s`, with `…` when cut.
pub fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}
