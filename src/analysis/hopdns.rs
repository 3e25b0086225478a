//! DNS at every redirect hop: each hop's name gets the judgement the input's
//! name gets. The system resolver (the headline resolver) failing for a
//! redirect target the control resolved, or answering a loopback, bogon,
//! fingerprinted or certificate-refused address for it, is DNS
//! interference — even when another resolver's answer let the fetch go on.
//!
//! A public answer for a hop that merely differs from the control's (a CDN
//! node near the probe) is not judged a block here: without a verified
//! handshake or ASN data the difference proves nothing. It is reported in
//! the evidence only.

use std::net::IpAddr;

use probes::failure::Failure;

use crate::model::Measurement;

use super::dnscheck::DnsView;
use super::lossy;
use super::observe::{join_ips, join_words, Control, Target};
use super::AnalysisContext;

/// What the headline resolver did wrong for one redirect hop.
#[derive(Clone, Debug)]
pub(crate) struct HopFinding {
    /// The mechanism (`dns.nxdomain`, `dns.bogon`, ...).
    pub mechanism: &'static str,
    /// `likely` or `confirmed`.
    pub confidence: &'static str,
    /// Sentences naming the hop, the resolvers and the control's answer.
    pub evidence: Vec<String>,
}

/// Distinct hop hosts after the input's, in redirect order.
fn hop_hosts(m: &Measurement, target: &Target) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for tx in m.test_keys.requests.iter().rev() {
        let mut urls = vec![tx.request.url.clone()];
        if let Some(next) = tx
            .location()
            .and_then(|l| url::Url::parse(&tx.request.url).ok()?.join(l).ok())
        {
            urls.push(next.to_string());
        }
        for u in urls {
            if let Some(t) = Target::parse(&u) {
                if t.host != target.host
                    && t.host_ip.is_none()
                    && !out.iter().any(|(h, _)| *h == t.host)
                {
                    out.push((t.host, u));
                }
            }
        }
    }
    out
}

/// The first redirect hop whose name the headline resolver tampered with.
pub(crate) fn find(
    m: &Measurement,
    ctx: &AnalysisContext,
    control: Option<Control<'_>>,
    target: &Target,
) -> Option<HopFinding> {
    let ctl = control?;
    for (host, url) in hop_hosts(m, target) {
        let Some(hop) = ctl
            .r
            .x_redirect_chain
            .iter()
            .find(|h| Target::parse(&h.url).is_some_and(|t| t.host == host))
        else {
            continue;
        };
        let ctl_addrs: Vec<IpAddr> = hop
            .dns
            .addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if ctl_addrs.is_empty() {
            continue;
        }
        let view = DnsView::build_for(m, ctx, control, &host, false, ctl_addrs.clone());
        let Some(p) = view.primary.as_ref() else {
            continue;
        };
        let label = p.label(m.resolver_ip.as_deref());
        let hop_name = format!("{host}, a redirect target ({url})");
        let continued = view
            .others
            .iter()
            .find(|o| o.failure.is_none() && view.validity(o).any())
            .map(|o| {
                format!(
                    "{} answered {} and the fetch went on with it",
                    o.label(None),
                    o.addrs_text()
                )
            });
        let mut ev = Vec::new();
        let mechanism = if let Some(f) = &p.failure {
            ev.push(format!(
                "{label} failed with {f}{} for {hop_name}; the control resolved {}",
                lossy::tries_text(p.attempts),
                join_ips(&ctl_addrs)
            ));
            failure_mechanism(f)
        } else {
            let fps: Vec<String> = view
                .fingerprints(p, ctx)
                .into_iter()
                .filter(|f| !f.false_positive)
                .map(|f| f.name)
                .collect();
            let wrong = if view.all_localhost(p) {
                Some("dns.localhost")
            } else if view.any_bogon(p) && !view.bogon_shared_with_control(p) {
                Some("dns.bogon")
            } else if !fps.is_empty() || (!view.validity(p).any() && view.cert_failure(p).is_some())
            {
                Some("dns.sinkhole")
            } else {
                None
            };
            // A public answer that merely differs proves nothing alone.
            let Some(mech) = wrong else {
                continue;
            };
            ev.push(format!(
                "{label} answered {} for {hop_name}; the control resolved {}",
                p.addrs_text(),
                join_ips(&ctl_addrs)
            ));
            if !fps.is_empty() {
                ev.push(format!(
                    "a known blocking address (fingerprint {})",
                    join_words(&fps)
                ));
            }
            if let Some((ip, f)) = view.cert_failure(p) {
                ev.push(format!(
                    "a TLS handshake for {host} to {ip} was refused: {f}"
                ));
            }
            mech
        };
        let mut confidence = if continued.is_some() {
            "confirmed"
        } else {
            "likely"
        };
        // A silence for the hop's name is judged like the input's (issue 23).
        if p.failure.as_ref().is_some_and(lossy::loss_can_cause) {
            match lossy::judge_silence(p.attempts, continued.is_some(), ctx.line_loss) {
                lossy::SilenceCall::Contradicted(_) => continue,
                lossy::SilenceCall::Block {
                    confidence: c,
                    notes,
                } => {
                    confidence = c;
                    ev.extend(notes);
                }
            }
        }
        ev.extend(continued);
        return Some(HopFinding {
            mechanism,
            confidence,
            evidence: ev,
        });
    }
    None
}

fn failure_mechanism(f: &Failure) -> &'static str {
    match f {
        Failure::DnsNxdomain => "dns.nxdomain",
        Failure::DnsNoAnswer => "dns.no_answer",
        Failure::GenericTimeout | Failure::TimedOut | Failure::DnsTemporaryFailure => "dns.timeout",
        _ => "dns.servfail",
    }
}
