//! Central gateway or ISP-level blocking? The evidence, criterion by
//! criterion (literature.md §3.1 signals, §3.4 rule of thumb).
//!
//! Each criterion says what was observed and which way it leans; none of
//! them is a conclusion on its own, and the tally at the end only counts
//! them. Measurements cannot attribute intent or actor.

use std::collections::{BTreeMap, BTreeSet};

use super::artifacts::ArtifactKind;
use super::summary::CompareReport;
use super::timestamps::epoch;

pub use super::criteria::{Attribution, Criterion, Leaning};

/// Sample items listed in one evidence sentence.
const EXAMPLES: usize = 3;
/// One hour, the §3.4 onset window.
const SAME_HOUR: i64 = 3600;

/// Assesses every criterion from the comparison.
pub fn assess(r: &CompareReport) -> Attribution {
    let criteria = vec![
        blocklist_consistency(r),
        mechanism_uniformity(r),
        identical_artifacts(r),
        resolver_independence(r),
        hop_location(r),
        onset_timing(r),
        throttle_rate(r),
    ];
    let mut tally = BTreeMap::new();
    for c in &criteria {
        *tally
            .entry(
                serde_json::to_value(c.leaning)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
            .or_insert(0) += 1;
    }
    let gateway = criteria
        .iter()
        .filter(|c| c.leaning == Leaning::Gateway)
        .count();
    let isp = criteria
        .iter()
        .filter(|c| c.leaning == Leaning::Isp)
        .count();
    let asns: BTreeSet<&str> = r
        .vantage_points
        .iter()
        .filter(|v| v.blocked_urls > 0)
        .map(|v| v.asn.as_str())
        .collect();
    let notes = vec![
        format!(
            "{gateway} of {} criteria are consistent with a central gateway and {isp} with ISP-level \
             blocking; the rule of thumb wants at least 3 gateway-side criteria, \
             with the same artifact on at least 3 ASNs (blocking was seen on {} distinct ASN(s) here).",
            criteria.len(),
            asns.len()
        ),
        "Not measured here: path dependence (a canary hosted in-country vs abroad) and remote \
         triggering from outside."
            .to_string(),
        "Confounders: upstream foreign filtering on transit paths, route changes, \
         TTL-copying injectors and CDN or server-side blocks can each mimic one of these signals."
            .to_string(),
        "Measurements show what was done to traffic, not who ordered it or why.".to_string(),
    ];
    Attribution {
        criteria,
        tally,
        notes,
    }
}

fn criterion(
    id: &'static str,
    title: &'static str,
    gateway_expectation: &'static str,
    isp_expectation: &'static str,
) -> Criterion {
    Criterion {
        id,
        title,
        gateway_expectation,
        isp_expectation,
        leaning: Leaning::NotMeasured,
        evidence: Vec::new(),
    }
}

fn blocklist_consistency(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "blocklist_consistency",
        "Blocklist consistency across vantage points",
        "the same URLs blocked everywhere (Jaccard near 1)",
        "different sets, partial compliance (low Jaccard)",
    );
    if r.vantage_points.len() < 2 {
        c.evidence
            .push("Only one vantage point: nothing to compare.".to_string());
        return c;
    }
    let mut values = Vec::new();
    for j in &r.jaccard {
        match j.jaccard {
            Some(x) => {
                values.push(x);
                c.evidence.push(format!(
                    "{} vs {}: Jaccard {:.2} ({} blocked at both, {} at {} only, {} at {} only; \
                     {} URLs measured at both).",
                    j.a,
                    j.b,
                    x,
                    j.blocked_both,
                    j.blocked_a - j.blocked_both,
                    j.a,
                    j.blocked_b - j.blocked_both,
                    j.b,
                    j.common_urls
                ));
            }
            None => c.evidence.push(format!(
                "{} vs {}: no URL measured at both was blocked at either ({} URLs in common).",
                j.a, j.b, j.common_urls
            )),
        }
    }
    let partial: Vec<&str> = r
        .urls
        .iter()
        .filter(|u| u.cells.len() >= 2 && u.blocked_at < u.cells.len())
        .map(|u| u.url.as_str())
        .collect();
    if !partial.is_empty() {
        c.evidence.push(format!(
            "{} URL(s) blocked at some but not all of the vantage points that measured them{}.",
            partial.len(),
            examples(&partial)
        ));
    }
    c.leaning = if values.is_empty() {
        Leaning::Inconclusive
    } else if values.iter().all(|&x| x >= 0.9) {
        Leaning::Gateway
    } else if values.iter().all(|&x| x < 0.5) {
        Leaning::Isp
    } else {
        Leaning::Mixed
    };
    c
}

fn mechanism_uniformity(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "mechanism_uniformity",
        "Mechanism uniformity",
        "one failure mode everywhere (the same RST, timeout or DNS answer)",
        "a mix: DNS sinkhole here, IP drop there, a blockpage elsewhere",
    );
    let mut dominant = Vec::new();
    for v in &r.vantage_points {
        let total: u64 = v.mechanisms.iter().map(|m| m.count).sum();
        if total == 0 {
            continue;
        }
        let mix: Vec<String> = v
            .mechanisms
            .iter()
            .map(|m| format!("{} {}/{}", m.name, m.count, total))
            .collect();
        c.evidence.push(format!("{}: {}.", v.label, mix.join(", ")));
        let top = &v.mechanisms[0];
        dominant.push((top.name.clone(), top.count as f64 / total as f64));
    }
    if dominant.is_empty() {
        c.evidence
            .push("No blocked or throttled measurement.".to_string());
        return c;
    }
    let names: BTreeSet<&str> = dominant.iter().map(|d| d.0.as_str()).collect();
    c.leaning = if dominant.len() < 2 {
        c.evidence
            .push("Blocking was seen at one vantage point only.".to_string());
        Leaning::Inconclusive
    } else if names.len() > 1 {
        Leaning::Isp
    } else if dominant.iter().all(|d| d.1 >= 0.8) {
        Leaning::Gateway
    } else {
        Leaning::Mixed
    };
    if dominant.len() >= 2 {
        c.evidence.push(format!(
            "Most frequent mechanism per vantage point: {}.",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    c
}

fn identical_artifacts(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "identical_artifacts",
        "Identical artifacts",
        "the same sinkhole IP, blockpage hash, certificate or reset behaviour across ASNs",
        "per-ISP artifacts (e.g. 36.37.242.94 vs 10.10.10.1 vs \"ERROR: Forbidden\")",
    );
    let blocking: Vec<&str> = r
        .vantage_points
        .iter()
        .filter(|v| v.blocked_urls > 0)
        .map(|v| v.label.as_str())
        .collect();
    let relevant: Vec<_> = r
        .artifacts
        .iter()
        .filter(|a| a.kind != ArtifactKind::InterferingHop)
        .collect();
    // Blockpages found by clustering, seen at several vantage points.
    for cl in r.page_clusters.iter().filter(|cl| cl.vantages.len() >= 2) {
        c.evidence.push(format!(
            "One page (sha256 {}…) served for {} unrelated sites at {} vantage points ({}): a shared blockpage found by clustering.",
            cl.page_sha256.chars().take(16).collect::<String>(),
            cl.sites,
            cl.vantages.len(),
            cl.vantages.join(", ")
        ));
    }
    if relevant.is_empty() {
        if c.evidence.is_empty() {
            c.evidence.push(
                "No artifact (sinkhole IP, blockpage, reset, certificate, fingerprint) was recorded."
                    .to_string(),
            );
        }
        return c;
    }
    let mut shared_all = false;
    let mut shared_any = false;
    let mut per_vantage: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in &relevant {
        let at: Vec<&str> = a.seen_at.iter().map(|s| s.vantage.as_str()).collect();
        let what = artifact_phrase(a.kind, &a.value, &a.details);
        if at.len() >= 2 {
            shared_any = true;
            shared_all |= blocking.len() >= 2 && blocking.iter().all(|b| at.contains(b));
            let urls: usize = a.seen_at.iter().map(|s| s.urls).max().unwrap_or(0);
            c.evidence.push(format!(
                "{what} seen at {} vantage points ({}), up to {urls} URL(s) each.",
                at.len(),
                at.join(", ")
            ));
        } else if let Some(v) = at.first() {
            per_vantage.entry(v).or_default().push(what);
        }
    }
    for (v, list) in &per_vantage {
        let n = list.len();
        let shown: Vec<&str> = list.iter().take(EXAMPLES).map(String::as_str).collect();
        c.evidence.push(format!(
            "Only at {v}: {}{}.",
            shown.join("; "),
            if n > EXAMPLES {
                format!(" (and {} more)", n - EXAMPLES)
            } else {
                String::new()
            }
        ));
    }
    c.leaning = if blocking.len() < 2 {
        Leaning::Inconclusive
    } else if shared_all {
        Leaning::Gateway
    } else if shared_any {
        Leaning::Mixed
    } else if per_vantage.len() >= 2 {
        Leaning::Isp
    } else {
        Leaning::Inconclusive
    };
    c
}

fn resolver_independence(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "resolver_independence",
        "Resolver independence",
        "blocking persists with public resolvers and DoH; injected answers to public resolvers",
        "blocking disappears when the ISP resolver is bypassed",
    );
    let (mut dns, mut system_only, mut public, mut injected, mut other, mut no_alt) =
        (0, 0, 0, 0, 0, 0);
    for v in &r.vantage_points {
        let t = &v.resolvers;
        if t.dns_anomalies == 0 && t.other_layers == 0 && t.injected == 0 {
            continue;
        }
        dns += t.dns_anomalies;
        system_only += t.system_only;
        public += t.also_public;
        injected += t.injected;
        other += t.other_layers;
        no_alt += t.no_alternative;
        c.evidence.push(format!(
            "{}: {} DNS-layer anomalies — {} with the system resolver only (other resolvers answered \
             like the control), {} also with public resolvers or DoH, {} without a usable alternative \
             resolver; {} with DNS injection evidence; {} blocked at TCP/IP, TLS or HTTP.",
            v.label,
            t.dns_anomalies,
            t.system_only,
            t.also_public,
            t.no_alternative,
            t.injected,
            t.other_layers
        ));
    }
    if dns == 0 && other == 0 && injected == 0 {
        c.evidence.push("No blocked measurement.".to_string());
        return c;
    }
    let on_path = public + injected > 0;
    c.leaning = if dns == 0 {
        c.evidence.push(
            "All blocking is past DNS, so it persists whatever the resolver; that alone does not \
             tell a gateway from an ISP middlebox."
                .to_string(),
        );
        Leaning::Inconclusive
    } else if on_path && system_only == 0 {
        Leaning::Gateway
    } else if system_only > 0 && !on_path {
        Leaning::Isp
    } else if on_path {
        Leaning::Mixed
    } else {
        let _ = no_alt;
        Leaning::Inconclusive
    };
    c
}

fn hop_location(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "hop_location",
        "Location of the interfering hop (x_trace)",
        "the same hop (address/AS) at the border or in the gateway operator's AS from every ISP",
        "a hop inside each access ISP, 1-3 hops from the user",
    );
    let hops: Vec<_> = r
        .artifacts
        .iter()
        .filter(|a| a.kind == ArtifactKind::InterferingHop)
        .collect();
    if hops.is_empty() {
        c.evidence.push(
            "No traced measurement (run with --trace-blocked to localise the hop).".to_string(),
        );
        return c;
    }
    let traced: BTreeSet<&str> = hops
        .iter()
        .flat_map(|a| a.seen_at.iter().map(|s| s.vantage.as_str()))
        .collect();
    let mut shared_all = false;
    let mut shared_any = false;
    for a in &hops {
        let at: Vec<&str> = a.seen_at.iter().map(|s| s.vantage.as_str()).collect();
        if at.len() >= 2 {
            shared_any = true;
            shared_all |= at.len() == traced.len();
        }
        c.evidence.push(format!(
            "Hop {}{} interfered for {} ({} URL(s)).",
            a.value,
            details_suffix(&a.details),
            at.join(", "),
            a.seen_at.iter().map(|s| s.urls).sum::<usize>()
        ));
    }
    c.leaning = if traced.len() < 2 {
        Leaning::Inconclusive
    } else if shared_all {
        Leaning::Gateway
    } else if shared_any {
        Leaning::Mixed
    } else {
        Leaning::Isp
    };
    c
}

fn onset_timing(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "onset_timing",
        "Timing of onset",
        "blocking starts within the same hour on every ASN",
        "onsets staggered over hours or days, some never",
    );
    let multi: Vec<_> = r.first_seen.iter().filter(|f| f.seen.len() >= 2).collect();
    if multi.is_empty() {
        c.evidence
            .push("No URL was blocked at two or more vantage points.".to_string());
        if !r.first_seen.is_empty() {
            c.leaning = Leaning::Inconclusive;
        }
        return c;
    }
    let (mut same_hour, mut later, mut censored) = (Vec::new(), Vec::new(), Vec::new());
    let mut widest_same_hour = 0;
    for f in &multi {
        let onsets: Vec<i64> = f
            .seen
            .iter()
            .filter(|s| s.onset_observed)
            .filter_map(|s| epoch(&s.first_blocked))
            .collect();
        if onsets.len() < 2 {
            censored.push(f.url.as_str());
            continue;
        }
        let spread =
            onsets.iter().max().copied().unwrap_or(0) - onsets.iter().min().copied().unwrap_or(0);
        if spread <= SAME_HOUR {
            same_hour.push(f.url.as_str());
            widest_same_hour = widest_same_hour.max(spread);
        } else {
            later.push((f.url.as_str(), spread));
        }
    }
    if !same_hour.is_empty() {
        c.evidence.push(format!(
            "{} URL(s) first seen blocked within the same hour (at most {} minutes apart) at every \
             vantage point where an accessible measurement came first{}.",
            same_hour.len(),
            widest_same_hour / 60,
            examples(&same_hour)
        ));
    }
    if !later.is_empty() {
        let max = later.iter().map(|l| l.1).max().unwrap_or(0);
        let urls: Vec<&str> = later.iter().map(|l| l.0).collect();
        c.evidence.push(format!(
            "{} URL(s) with onsets more than an hour apart (up to {}){}.",
            later.len(),
            human_span(max),
            examples(&urls)
        ));
    }
    if !censored.is_empty() {
        c.evidence.push(format!(
            "{} URL(s) were blocked from the first measurement at all but at most one vantage point, \
             so their onsets cannot be compared{}.",
            censored.len(),
            examples(&censored)
        ));
    }
    c.evidence.push(
        "An onset lies between the last accessible and the first blocked measurement; its precision \
         is the measurement cadence."
            .to_string(),
    );
    c.leaning = match (same_hour.is_empty(), later.is_empty()) {
        (true, true) => Leaning::Inconclusive,
        (false, true) => Leaning::Gateway,
        (true, false) => Leaning::Isp,
        (false, false) => Leaning::Mixed,
    };
    c
}

fn throttle_rate(r: &CompareReport) -> Criterion {
    let mut c = criterion(
        "throttle_rate",
        "Throttle parameters",
        "the same rate cap on every ISP",
        "different caps, or none",
    );
    let rates: Vec<(&str, f64)> = r
        .vantage_points
        .iter()
        .filter_map(|v| v.throttled_mean_bps.map(|b| (v.label.as_str(), b)))
        .collect();
    if rates.is_empty() {
        c.evidence.push("No throttled measurement.".to_string());
        return c;
    }
    for (l, b) in &rates {
        c.evidence.push(format!(
            "{l}: throttled transfers averaged {:.0} kbit/s.",
            b * 8.0 / 1000.0
        ));
    }
    let min = rates.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    let max = rates.iter().map(|r| r.1).fold(0.0, f64::max);
    c.leaning = if rates.len() < 2 {
        Leaning::Inconclusive
    } else if max <= min * 1.25 {
        Leaning::Gateway
    } else {
        Leaning::Isp
    };
    c
}

/// How an artifact reads in a sentence.
pub fn artifact_phrase(kind: ArtifactKind, value: &str, details: &[String]) -> String {
    format!("{} {value}{}", kind.describe(), details_suffix(details))
}

fn details_suffix(details: &[String]) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join("; "))
    }
}

fn examples(items: &[&str]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(EXAMPLES).copied().collect();
    format!(", e.g. {}", shown.join(", "))
}

fn human_span(secs: i64) -> String {
    if secs >= 86_400 {
        format!("{:.1} days", secs as f64 / 86_400.0)
    } else {
        format!("{:.1} hours", secs as f64 / 3600.0)
    }
}
