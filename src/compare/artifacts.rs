//! Blocking artifacts: the observable traces a censor leaves, extracted
//! from one measurement so they can be matched across vantage points
//! (literature §3.1 "identical artifacts").
//!
//! Only measurements whose outcome is anomalous (blocked or throttled) are
//! mined, so an ordinary answer of an accessible site never shows up as an
//! artifact.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::Measurement;

/// What kind of trace an artifact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A DNS answer that is a bogon or absent from the control's answers.
    SinkholeIp,
    /// The SHA-256 of a response body judged to be a blockpage.
    Blockpage,
    /// A connection torn down at a given stage (`tls_handshake:connection_reset`).
    Reset,
    /// The interfering hop's address from `x_trace`.
    InterferingHop,
    /// The leaf certificate of an intercepted TLS connection.
    Certificate,
    /// A blocking fingerprint that matched (from the verdict).
    Fingerprint,
}

impl ArtifactKind {
    /// A short human name.
    pub fn describe(self) -> &'static str {
        match self {
            ArtifactKind::SinkholeIp => "sinkhole IP",
            ArtifactKind::Blockpage => "blockpage sha256",
            ArtifactKind::Reset => "reset behaviour",
            ArtifactKind::InterferingHop => "interfering hop",
            ArtifactKind::Certificate => "certificate sha256",
            ArtifactKind::Fingerprint => "fingerprint",
        }
    }
}

/// One artifact seen in one measurement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Artifact {
    /// Its kind.
    pub kind: ArtifactKind,
    /// The value compared across vantage points (an IP, a hash, a stage).
    pub value: String,
    /// Extra context shown next to it (a title, a resolver, a hop index).
    pub detail: Option<String>,
}

/// The artifacts in an anomalous measurement, deduplicated.
/// `layer` and `mechanism` come from the verdict and choose what to look
/// at: DNS answers only for DNS-layer interference (a CDN answering
/// differently is no sinkhole), bodies only for HTTP-layer interference.
pub fn extract(m: &Measurement, layer: Option<&str>, mechanism: Option<&str>) -> Vec<Artifact> {
    let mut out = BTreeSet::new();
    let mech = mechanism.unwrap_or("");
    if layer == Some("dns") || mech.starts_with("dns.") || mech == "ooni:dns" {
        sinkholes(m, &mut out);
    }
    if mech.starts_with("http.") || mech.starts_with("ooni:http-diff") {
        blockpages(m, &mut out);
    }
    resets(m, &mut out);
    if mech == "tls.mitm" {
        certificates(m, &mut out);
    }
    if let Some(trace) = &m.test_keys.x_trace {
        out.extend(interfering_hops(trace));
    }
    if let Some(v) = &m.test_keys.x_verdict {
        for f in &v.fingerprints {
            out.insert(Artifact {
                kind: ArtifactKind::Fingerprint,
                value: f.clone(),
                detail: None,
            });
        }
    }
    out.into_iter().collect()
}

/// What a DNS lookup's result says about tampering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupJudgement {
    /// A failure while the control resolved the name, no answer the control
    /// also got, or (without a control) a bogon answer.
    Tampered,
    /// At least one answer the control also got.
    Clean,
    /// Cannot tell (no control, public answers, or an empty AAAA answer,
    /// which is normal: most sites have no IPv6 address).
    Unknown,
}

/// Judges one query against the control's addresses (`control` is `None`
/// when the control did not resolve the name). An empty AAAA answer
/// (`dns_no_answer`) says nothing; a failure without a control to compare
/// with says nothing either.
pub fn judge_lookup(q: &probes::records::DnsQuery, control: Option<&[String]>) -> LookupJudgement {
    let control = control.filter(|c| !c.is_empty());
    if let Some(f) = &q.failure {
        let empty_aaaa = q.query_type == "AAAA" && *f == probes::failure::Failure::DnsNoAnswer;
        return if control.is_some() && !empty_aaaa {
            LookupJudgement::Tampered
        } else {
            LookupJudgement::Unknown
        };
    }
    judge_addrs(&q.addrs(), control)
}

/// Judges one resolver's lookup of one name (its A, AAAA or getaddrinfo
/// queries together): the addresses it found decide (a good A answer beside
/// an empty AAAA is clean); with none, the queries' failures do.
pub fn judge_name(
    qs: &[&probes::records::DnsQuery],
    control: Option<&[String]>,
) -> LookupJudgement {
    let control = control.filter(|c| !c.is_empty());
    let mut addrs: Vec<IpAddr> = Vec::new();
    for q in qs {
        for ip in q.addrs() {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    if !addrs.is_empty() {
        return judge_addrs(&addrs, control);
    }
    if qs
        .iter()
        .any(|q| judge_lookup(q, control) == LookupJudgement::Tampered)
    {
        LookupJudgement::Tampered
    } else {
        LookupJudgement::Unknown
    }
}

fn judge_addrs(addrs: &[IpAddr], control: Option<&[String]>) -> LookupJudgement {
    if addrs.is_empty() {
        return LookupJudgement::Unknown;
    }
    if let Some(c) = control {
        if addrs.iter().any(|ip| in_control(*ip, c)) {
            return LookupJudgement::Clean;
        }
        return LookupJudgement::Tampered;
    }
    if addrs.iter().any(|ip| is_bogon(*ip)) {
        LookupJudgement::Tampered
    } else {
        LookupJudgement::Unknown
    }
}

/// True when the lookup went to the system's (usually the ISP's) resolver.
pub fn is_system_resolver(q: &probes::records::DnsQuery) -> bool {
    matches!(q.engine.as_str(), "getaddrinfo" | "system") || q.resolver_address.is_empty()
}

/// The control's addresses for `host`: the input's, or a redirect hop's
/// from the control's chain; `None` when the control did not resolve it.
pub fn control_addrs_for<'a>(m: &'a Measurement, host: &str) -> Option<&'a [String]> {
    let c = m.test_keys.control.as_ref()?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let input_host = m
        .input
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        });
    if input_host.as_deref() == Some(host.as_str()) {
        return control_addrs(m);
    }
    let hop = c.x_redirect_chain.iter().find(|h| {
        url::Url::parse(&h.url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|x| x.trim_end_matches('.').to_ascii_lowercase())
            })
            .as_deref()
            == Some(host.as_str())
    })?;
    (!hop.dns.addrs.is_empty()).then_some(hop.dns.addrs.as_slice())
}

/// The control's addresses, when the control resolved the name.
pub fn control_addrs(m: &Measurement) -> Option<&[String]> {
    let c = m.test_keys.control.as_ref()?;
    if c.dns.failure.is_some() && c.dns.addrs.is_empty() {
        return None;
    }
    Some(c.dns.addrs.as_slice())
}

/// True for addresses that are not globally routable unicast (private,
/// loopback, link-local, CGNAT, documentation, benchmarking, reserved,
/// multicast, unspecified; IPv4-mapped IPv6 is unwrapped).
pub fn is_bogon(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_bogon(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

fn in_control(ip: IpAddr, control: &[String]) -> bool {
    control
        .iter()
        .any(|c| c.parse::<IpAddr>().map(|c| c == ip).unwrap_or(false))
}

fn sinkholes(m: &Measurement, out: &mut BTreeSet<Artifact>) {
    let control = control_addrs(m);
    for q in &m.test_keys.queries {
        for ip in q.addrs() {
            let differs = match control {
                Some(c) => !in_control(ip, c),
                None => false,
            };
            if is_bogon(ip) && !control.is_some_and(|c| in_control(ip, c)) || differs {
                let resolver = if is_system_resolver(q) {
                    "system resolver".to_string()
                } else {
                    format!("{} {}", q.engine, q.resolver_address)
                };
                out.insert(Artifact {
                    kind: ArtifactKind::SinkholeIp,
                    value: ip.to_string(),
                    detail: Some(resolver),
                });
            }
        }
    }
}

fn blockpages(m: &Measurement, out: &mut BTreeSet<Artifact>) {
    let control_hash = m
        .test_keys
        .control
        .as_ref()
        .and_then(|c| c.x_body.as_ref())
        .map(|b| b.sha256.as_str());
    // The final response comes first.
    if let Some(r) = m.test_keys.requests.first() {
        let hash = r.response.x_body_sha256.as_str();
        if r.response.code != 0 && !hash.is_empty() && Some(hash) != control_hash {
            out.insert(Artifact {
                kind: ArtifactKind::Blockpage,
                value: hash.to_string(),
                detail: r.response.x_title.clone().filter(|t| !t.is_empty()),
            });
        }
    }
}

fn resets(m: &Measurement, out: &mut BTreeSet<Artifact>) {
    let tk = &m.test_keys;
    let mut add = |stage: &str, failure: &str| {
        out.insert(Artifact {
            kind: ArtifactKind::Reset,
            value: format!("{stage}:{failure}"),
            detail: None,
        });
    };
    for t in &tk.tcp_connect {
        if let Some(f) = &t.status.failure {
            if f.as_str() == "connection_refused" {
                add("tcp_connect", "connection_refused");
            }
        }
    }
    for t in &tk.tls_handshakes {
        if let Some(f) = &t.failure {
            let f = f.as_str();
            if f == "connection_reset" || f == "eof_error" {
                add("tls_handshake", &f);
            }
        }
    }
    for r in &tk.requests {
        if let Some(f) = &r.failure {
            let f = f.as_str();
            if f == "connection_reset" || f == "eof_error" {
                add("http_request", &f);
            }
        }
    }
    for e in &tk.x_injection {
        if e.kind.starts_with("tcp.rst") {
            out.insert(Artifact {
                kind: ArtifactKind::Reset,
                value: e.kind.clone(),
                detail: Some(e.detail.clone()),
            });
        }
    }
}

fn certificates(m: &Measurement, out: &mut BTreeSet<Artifact>) {
    for t in &m.test_keys.tls_handshakes {
        if t.x_certificate_failure.is_none() {
            continue;
        }
        if let Some(leaf) = &t.x_leaf {
            if !leaf.sha256.is_empty() {
                out.insert(Artifact {
                    kind: ArtifactKind::Certificate,
                    value: leaf.sha256.clone(),
                    detail: Some(format!("issuer {}", leaf.issuer)),
                });
            }
        }
    }
}

/// The interfering hops of an `x_trace` value (the shape of
/// `crate::trace::report::TraceReport`, read tolerantly as JSON): one
/// artifact per finding. The value compared across vantage points is the
/// router at the finding's `first_hop` (`hop_address`); when that router
/// never answered, `after <previous_hop_address>`; when neither is known,
/// `ttl <first_hop>`. The detail names the hop index, the kind (`rst`,
/// `forged_dns`, `blockpage`, `drop`, ...), the path (`on_path`/`in_path`)
/// and the trigger.
pub fn interfering_hops(trace: &serde_json::Value) -> Vec<Artifact> {
    let Some(findings) = trace.get("findings").and_then(|f| f.as_array()) else {
        return Vec::new();
    };
    findings.iter().filter_map(finding_artifact).collect()
}

/// True when the trace saw a DNS answer from an address that runs no
/// resolver for the test name (proof of an on-path injector).
pub fn trace_saw_injected_dns(trace: &serde_json::Value) -> bool {
    trace
        .get("non_resolver_dns")
        .and_then(|v| v.as_array())
        .is_some_and(|checks| {
            checks.iter().any(|c| {
                c.get("answered").and_then(|a| a.as_bool()) == Some(true)
                    && c.get("role").and_then(|r| r.as_str()) != Some("control")
            })
        })
}

fn finding_artifact(f: &serde_json::Value) -> Option<Artifact> {
    let text = |k: &str| f.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let ttl = f.get("first_hop").and_then(|v| v.as_u64());
    let value = match (text("hop_address"), text("previous_hop_address"), ttl) {
        (Some(a), _, _) => a.to_string(),
        (None, Some(p), _) => format!("after {p}"),
        (None, None, Some(t)) => format!("ttl {t}"),
        (None, None, None) => return None,
    };
    let mut detail = Vec::new();
    if let Some(t) = ttl {
        detail.push(format!("hop {t}"));
    }
    for k in ["kind", "path", "trigger"] {
        if let Some(v) = text(k) {
            detail.push(v.to_string());
        }
    }
    Some(Artifact {
        kind: ArtifactKind::InterferingHop,
        value,
        detail: (!detail.is_empty()).then(|| detail.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bogons() {
        for s in [
            "10.10.10.1",
            "127.0.0.1",
            "0.0.0.0",
            "100.64.1.1",
            "192.0.2.9",
            "::1",
            "::ffff:10.0.0.1",
            "fd00::1",
        ] {
            assert!(is_bogon(s.parse().unwrap()), "{s}");
        }
        for s in ["36.37.242.94", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_bogon(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn hops_from_trace_findings() {
        let t = serde_json::json!({"findings": [
            {"trigger": "tls_client_hello", "first_hop": 2, "hop_address": "192.0.2.21",
             "previous_hop_address": "198.51.100.11", "kind": "rst", "path": "in_path"},
            {"trigger": "tcp_syn", "first_hop": 3, "hop_address": null,
             "previous_hop_address": "192.0.2.21", "kind": "drop", "path": "unknown"}
        ]});
        let got: Vec<(String, Option<String>)> = interfering_hops(&t)
            .into_iter()
            .map(|a| (a.value, a.detail))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "192.0.2.21".to_string(),
                    Some("hop 2, rst, in_path, tls_client_hello".to_string())
                ),
                (
                    "after 192.0.2.21".to_string(),
                    Some("hop 3, drop, unknown, tcp_syn".to_string())
                ),
            ]
        );
        assert!(interfering_hops(&serde_json::json!({"hops": []})).is_empty());
        let dns = serde_json::json!({"non_resolver_dns": [{"role": "test", "answered": true}]});
        assert!(trace_saw_injected_dns(&dns));
        assert!(!trace_saw_injected_dns(
            &serde_json::json!({"non_resolver_dns": [{"role": "control", "answered": true}]})
        ));
    }
}
