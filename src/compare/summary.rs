//! The comparison as data: what `compare --json` prints and what the text
//! tables and the HTML report are drawn from.

use std::collections::BTreeMap;

use serde::Serialize;

use super::aggregate::{Aggregate, ResolverTally, StatusCounts};
use super::artifacts::ArtifactKind;
use super::criteria::Attribution;
use super::timestamps::epoch;
use crate::model::VerdictStatus;
use crate::results::ReadStats;

/// Sample URLs listed per artifact and vantage point.
const SAMPLE_URLS: usize = 3;

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// What was read.
    pub inputs: Inputs,
    /// One row per vantage point, in order of first appearance.
    pub vantage_points: Vec<VantageRow>,
    /// Distinct URLs measured.
    pub urls_measured: usize,
    /// URLs blocked or throttled at one vantage point at least, with their
    /// verdicts at every vantage point (most vantage points first).
    pub urls: Vec<UrlRow>,
    /// Artifacts, those seen at several vantage points first.
    pub artifacts: Vec<ArtifactRow>,
    /// Distinct artifacts not kept (memory cap).
    pub artifacts_dropped: u64,
    /// Pairwise Jaccard similarity of the blocked sets.
    pub jaccard: Vec<JaccardRow>,
    /// When each vantage point first saw each URL blocked.
    pub first_seen: Vec<FirstSeenRow>,
    /// Probe-side pages served for two or more unrelated sites (blockpages
    /// found by clustering), across vantage points.
    pub page_clusters: Vec<crate::analysis::cluster::ClusterInfo>,
    /// Criterion-by-criterion evidence for a central gateway vs ISP-level
    /// blocking.
    pub attribution: Attribution,
}

/// What was read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Inputs {
    /// The files, as given.
    pub files: Vec<String>,
    /// Lines read.
    pub lines: u64,
    /// Measurements used.
    pub measurements: u64,
    /// Lines skipped with a warning.
    pub skipped_lines: u64,
    /// Inputs of which more than half of the records were skipped.
    pub failed_inputs: u64,
}

impl Inputs {
    /// From the reader's counts.
    pub fn new(files: Vec<String>, stats: ReadStats) -> Inputs {
        Inputs {
            files,
            lines: stats.lines,
            measurements: stats.measurements,
            skipped_lines: stats.skipped,
            failed_inputs: stats.failed_inputs,
        }
    }
}

/// One vantage point.
#[derive(Clone, Debug, Serialize)]
pub struct VantageRow {
    /// Its label.
    pub label: String,
    /// `probe_asn`.
    pub asn: String,
    /// `probe_cc`.
    pub cc: String,
    /// `probe_network_name`.
    pub network: Option<String>,
    /// Other ASNs found under the same label.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_asns: Vec<String>,
    /// Measurements.
    pub measurements: u64,
    /// Distinct URLs measured.
    pub urls: usize,
    /// Distinct URLs blocked or throttled at least once.
    pub blocked_urls: usize,
    /// Measurements per status.
    pub status: StatusCounts,
    /// Blocked/throttled measurements per mechanism, most frequent first.
    pub mechanisms: Vec<Count>,
    /// Blocked/throttled measurements per article-6 power.
    pub article6: BTreeMap<String, u64>,
    /// Earliest measurement.
    pub first_time: Option<String>,
    /// Latest measurement.
    pub last_time: Option<String>,
    /// How DNS-layer interference behaved across resolvers.
    pub resolvers: ResolverTally,
    /// Mean transfer rate of throttled measurements (bytes/s).
    pub throttled_mean_bps: Option<f64>,
    /// Measurements per interference kind beside the status (e.g.
    /// `dns.diverted`: the name led to a middlebox passing the site
    /// through).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub interference: BTreeMap<String, u64>,
}

/// A name and a count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The name.
    pub name: String,
    /// The count.
    pub count: u64,
}

/// One URL across vantage points.
#[derive(Clone, Debug, Serialize)]
pub struct UrlRow {
    /// The URL.
    pub url: String,
    /// Its category code.
    pub category: Option<String>,
    /// Vantage points where it was blocked or throttled.
    pub blocked_at: usize,
    /// One cell per vantage point that measured it.
    pub cells: Vec<CellRow>,
}

/// One URL at one vantage point.
#[derive(Clone, Debug, Serialize)]
pub struct CellRow {
    /// The vantage point's label.
    pub vantage: String,
    /// Measurements.
    pub measurements: u64,
    /// Blocked or throttled measurements.
    pub blocked: u64,
    /// The latest verdict's status.
    pub latest_status: VerdictStatus,
    /// The latest verdict's mechanism.
    pub latest_mechanism: Option<String>,
    /// Mechanisms of the blocked measurements.
    pub mechanisms: Vec<Count>,
    /// Article-6 powers.
    pub article6: Vec<String>,
    /// The latest blocked verdict's confidence.
    pub confidence: Option<String>,
    /// The latest blocked verdict's evidence sentences (capped).
    pub evidence: Vec<String>,
}

/// One artifact.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactRow {
    /// Its kind.
    pub kind: ArtifactKind,
    /// The compared value.
    pub value: String,
    /// Details seen with it (titles, resolvers, hop indexes).
    pub details: Vec<String>,
    /// Where it was seen.
    pub seen_at: Vec<ArtifactAt>,
}

/// One artifact at one vantage point.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactAt {
    /// The vantage point's label.
    pub vantage: String,
    /// Measurements showing it.
    pub measurements: u64,
    /// Distinct URLs showing it.
    pub urls: usize,
    /// A few of those URLs.
    pub sample_urls: Vec<String>,
    /// Earliest time.
    pub first_seen: Option<String>,
}

/// The Jaccard similarity of two vantage points' blocked sets, over the
/// URLs both measured.
#[derive(Clone, Debug, Serialize)]
pub struct JaccardRow {
    /// First vantage point.
    pub a: String,
    /// Second vantage point.
    pub b: String,
    /// URLs measured at both.
    pub common_urls: usize,
    /// Of those, blocked at `a`.
    pub blocked_a: usize,
    /// Of those, blocked at `b`.
    pub blocked_b: usize,
    /// Of those, blocked at both.
    pub blocked_both: usize,
    /// |A∩B| / |A∪B|; null when neither blocked any common URL.
    pub jaccard: Option<f64>,
}

/// When each vantage point first saw a URL blocked.
#[derive(Clone, Debug, Serialize)]
pub struct FirstSeenRow {
    /// The URL.
    pub url: String,
    /// Per vantage point that saw it blocked.
    pub seen: Vec<FirstSeenAt>,
    /// Seconds between the earliest and the latest first-seen time (two or
    /// more vantage points).
    pub spread_seconds: Option<i64>,
}

/// One vantage point's first sighting.
#[derive(Clone, Debug, Serialize)]
pub struct FirstSeenAt {
    /// The vantage point's label.
    pub vantage: String,
    /// Earliest blocked measurement.
    pub first_blocked: String,
    /// True when an accessible measurement came before it here, so the
    /// onset lies between the two; false when blocked from the first
    /// measurement (the onset was not observed).
    pub onset_observed: bool,
}

/// Builds the report from an aggregate (attribution left empty: the caller,
/// [`super::Aggregate::report`], assesses it from the built report).
pub fn build(agg: &Aggregate, inputs: Inputs) -> CompareReport {
    let labels: Vec<String> = agg.vantages.iter().map(|v| v.label.clone()).collect();
    let nv = agg.vantages.len();

    let mut measured = vec![0usize; nv];
    let mut blocked = vec![0usize; nv];
    for u in &agg.urls {
        for (&v, c) in &u.cells {
            measured[v] += 1;
            if anomalous(c) > 0 {
                blocked[v] += 1;
            }
        }
    }
    let vantage_points = agg
        .vantages
        .iter()
        .enumerate()
        .map(|(i, v)| VantageRow {
            label: v.label.clone(),
            asn: v.asn.clone(),
            cc: v.cc.clone(),
            network: v.network.clone(),
            other_asns: v.other_asns.iter().cloned().collect(),
            measurements: v.measurements,
            urls: measured[i],
            blocked_urls: blocked[i],
            status: v.status,
            mechanisms: sorted_counts(&v.mechanisms),
            article6: v.article6.clone(),
            first_time: v.first_time.clone(),
            last_time: v.last_time.clone(),
            resolvers: v.resolvers,
            throttled_mean_bps: (v.rates.n > 0).then(|| v.rates.sum_bps / v.rates.n as f64),
            interference: v.interference.clone(),
        })
        .collect();

    let mut urls: Vec<UrlRow> = agg
        .urls
        .iter()
        .filter(|u| u.cells.values().any(|c| anomalous(c) > 0))
        .map(|u| UrlRow {
            url: u.url.clone(),
            category: u.category.clone(),
            blocked_at: u.cells.values().filter(|c| anomalous(c) > 0).count(),
            cells: u
                .cells
                .iter()
                .map(|(&v, c)| CellRow {
                    vantage: labels[v].clone(),
                    measurements: c.measurements,
                    blocked: anomalous(c),
                    latest_status: c
                        .latest
                        .as_ref()
                        .map(|l| l.1)
                        .unwrap_or(VerdictStatus::Inconclusive),
                    latest_mechanism: c.latest.as_ref().and_then(|l| l.2.clone()),
                    mechanisms: sorted_counts(&c.mechanisms),
                    article6: c.article6.iter().cloned().collect(),
                    confidence: c.confidence.clone(),
                    evidence: c.evidence.clone(),
                })
                .collect(),
        })
        .collect();
    urls.sort_by(|a, b| b.blocked_at.cmp(&a.blocked_at).then(a.url.cmp(&b.url)));

    let mut artifacts: Vec<ArtifactRow> = agg
        .artifacts
        .iter()
        .map(|a| ArtifactRow {
            kind: a.kind,
            value: a.value.clone(),
            details: a.details.iter().cloned().collect(),
            seen_at: a
                .seen
                .iter()
                .map(|(&v, s)| ArtifactAt {
                    vantage: labels[v].clone(),
                    measurements: s.measurements,
                    urls: s.urls.len(),
                    sample_urls: s
                        .urls
                        .iter()
                        .take(SAMPLE_URLS)
                        .map(|&u| agg.urls[u].url.clone())
                        .collect(),
                    first_seen: s.first_seen.clone(),
                })
                .collect(),
        })
        .collect();
    artifacts.sort_by(|a, b| {
        b.seen_at
            .len()
            .cmp(&a.seen_at.len())
            .then(a.kind.cmp(&b.kind))
            .then(a.value.cmp(&b.value))
    });

    let jaccard = jaccard_rows(agg, &labels);
    let first_seen = first_seen_rows(agg, &labels);
    CompareReport {
        inputs,
        vantage_points,
        urls_measured: agg.urls.len(),
        urls,
        artifacts,
        artifacts_dropped: agg.artifacts_dropped,
        jaccard,
        first_seen,
        page_clusters: agg.clusters.clusters(),
        attribution: Attribution::default(),
    }
}

fn anomalous(c: &super::aggregate::Cell) -> u64 {
    c.status.blocked + c.status.throttled
}

fn sorted_counts(m: &BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .iter()
        .map(|(k, &n)| Count {
            name: k.clone(),
            count: n,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    v
}

fn jaccard_rows(agg: &Aggregate, labels: &[String]) -> Vec<JaccardRow> {
    let nv = labels.len();
    let mut rows = Vec::new();
    for a in 0..nv {
        for b in a + 1..nv {
            let (mut common, mut ba, mut bb, mut both) = (0, 0, 0, 0);
            for u in &agg.urls {
                let (Some(ca), Some(cb)) = (u.cells.get(&a), u.cells.get(&b)) else {
                    continue;
                };
                common += 1;
                let (xa, xb) = (anomalous(ca) > 0, anomalous(cb) > 0);
                ba += usize::from(xa);
                bb += usize::from(xb);
                both += usize::from(xa && xb);
            }
            let union = ba + bb - both;
            rows.push(JaccardRow {
                a: labels[a].clone(),
                b: labels[b].clone(),
                common_urls: common,
                blocked_a: ba,
                blocked_b: bb,
                blocked_both: both,
                jaccard: (union > 0).then(|| both as f64 / union as f64),
            });
        }
    }
    rows
}

fn first_seen_rows(agg: &Aggregate, labels: &[String]) -> Vec<FirstSeenRow> {
    let mut rows: Vec<FirstSeenRow> = agg
        .urls
        .iter()
        .filter_map(|u| {
            let seen: Vec<FirstSeenAt> = u
                .cells
                .iter()
                .filter_map(|(&v, c)| {
                    let first = c.first_anomalous.clone()?;
                    let onset_observed = c
                        .first_accessible
                        .as_deref()
                        .is_some_and(|a| a < first.as_str());
                    Some(FirstSeenAt {
                        vantage: labels[v].clone(),
                        first_blocked: first,
                        onset_observed,
                    })
                })
                .collect();
            if seen.is_empty() {
                return None;
            }
            let secs: Vec<i64> = seen
                .iter()
                .filter_map(|s| epoch(&s.first_blocked))
                .collect();
            let spread_seconds = (secs.len() >= 2).then(|| {
                secs.iter().max().copied().unwrap_or(0) - secs.iter().min().copied().unwrap_or(0)
            });
            Some(FirstSeenRow {
                url: u.url.clone(),
                seen,
                spread_seconds,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.seen.len().cmp(&a.seen.len()).then(a.url.cmp(&b.url)));
    rows
}
