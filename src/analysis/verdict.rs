//! Our verdict (`x_verdict`): status, layer, mechanism, confidence, the NIG
//! article-6 power it corresponds to, and evidence sentences.
//!
//! The decision goes down the stack. DNS at depth 0 first (an inconsistent
//! answer dominates, as in OONI), then the step where the fetch ended: a
//! failure is compared with the control's result for the same step and
//! endpoint (both failed → `down`); a page is checked against blocking
//! fingerprints, the control's page, server-side refusals and throttling.

use std::net::IpAddr;

use probes::failure::Failure;

use crate::model::{Measurement, Verdict, VerdictStatus};

use super::classic::{control_tcp, control_tls};
use super::dnscheck::{Diversion, DnsView};
use super::fingerprints::FingerprintMatch;
use super::httpdiff::{self, Diff};
use super::interception::{self, short};
use super::lossy;
use super::observe::{self, join_ips, join_words, Control, Lookup, ResolverKind, Target};
use super::outcome::{Failed, Outcome, Step};
use super::pagecmp::PageCmp;
use super::pagetext::{SAME_TEXT, SAME_TITLE};
use super::sni_layout;
use super::AnalysisContext;
use super::{cluster, hopdns, throttling};

/// Status codes a site (or its CDN) uses to refuse or challenge a client.
const SERVER_REFUSAL_CODES: [i64; 5] = [401, 403, 406, 429, 503];

/// Everything the decision reads.
pub(crate) struct Inputs<'a> {
    pub m: &'a Measurement,
    pub ctx: &'a AnalysisContext,
    pub target: &'a Target,
    pub view: &'a DnsView,
    pub outcome: &'a Outcome<'a>,
    pub control: Option<Control<'a>>,
    pub diff: Option<Diff>,
    /// The probe's final page against the control's, by text.
    pub page: Option<&'a PageCmp>,
}

/// Decides the verdict.
pub(crate) fn decide(i: &Inputs<'_>) -> Verdict {
    let mut ev = Vec::new();
    let mut side_dns: Option<Verdict> = None;
    let mut interference = Vec::new();
    if i.target.host_ip.is_none() {
        if let Some(mut v) = dns_step(i, &mut ev, &mut side_dns, &mut interference) {
            v.interference = interference;
            return v;
        }
    }
    let mut v = after_dns(i, ev, side_dns);
    // Every redirect hop's name gets the input's DNS judgement.
    if let Some(h) = hopdns::find(i.m, i.ctx, i.control, i.target) {
        if v.status == VerdictStatus::Blocked {
            // A fetch that stopped at that hop's DNS already says so.
            if !v
                .mechanism
                .as_deref()
                .is_some_and(|m| m.starts_with("dns."))
            {
                v.evidence.extend(h.evidence);
            }
        } else {
            let mut e = h.evidence;
            e.extend(std::mem::take(&mut v.evidence));
            let cluster = v.cluster.take();
            v = blocked(h.mechanism, h.confidence, e);
            v.cluster = cluster;
        }
    }
    v.interference = interference;
    v
}

/// The verdict from the step where the fetch ended, with tampering seen
/// only on a secondary resolver.
fn after_dns(i: &Inputs<'_>, ev: Vec<String>, side_dns: Option<Verdict>) -> Verdict {
    let v = match i.outcome {
        Outcome::NoData => inconclusive(ev, "nothing was measured for this URL"),
        Outcome::Failed(f) => failed_step(i, f, ev),
        Outcome::Page {
            tx,
            hop,
            secure,
            cert_failure,
        } => page_step(i, tx, hop, *secure, cert_failure.as_ref(), ev),
    };
    // Tampering seen only on a secondary resolver still counts when the page
    // itself loaded.
    let mut v = match side_dns {
        Some(mut s) if v.status == VerdictStatus::Accessible => {
            s.evidence.extend(v.evidence);
            s
        }
        _ => v,
    };
    v.evidence.extend(lossy::retry_notes(i.m));
    v
}

// ---------------------------------------------------------------- DNS ----

fn dns_step(
    i: &Inputs<'_>,
    ev: &mut Vec<String>,
    side: &mut Option<Verdict>,
    interference: &mut Vec<String>,
) -> Option<Verdict> {
    let p = i.view.primary.as_ref()?;
    let label = p.label(i.m.resolver_ip.as_deref());
    let fps = i.view.fingerprints(p, i.ctx);
    let blocking_fps: Vec<&FingerprintMatch> = fps.iter().filter(|f| !f.false_positive).collect();
    let ctl_addrs = &i.view.control_addrs;

    // A DNS fingerprint decides with or without a control.
    if !blocking_fps.is_empty() && p.failure.is_none() {
        let mech = dns_addr_mechanism(i, p);
        let conf = if blocking_fps.iter().any(|f| f.confirmed) {
            "confirmed"
        } else {
            "likely"
        };
        let names: Vec<String> = blocking_fps.iter().map(|f| f.name.clone()).collect();
        let mut e = vec![format!(
            "{label} answered {}, a known blocking address (fingerprint {})",
            p.addrs_text(),
            join_words(&names)
        )];
        if i.control.is_some() {
            e.push(format!("the control resolved {}", join_ips(ctl_addrs)));
        }
        e.extend(cert_sentence(i, p));
        let mut v = blocked(mech, conf, e);
        v.fingerprints = names;
        return Some(v);
    }

    let Some(ctl) = i.control else {
        return dns_without_control(i, p, &label, ev);
    };

    if let Some(f) = &p.failure {
        if ctl_addrs.is_empty() {
            let why = ctl.dns_failure().unwrap_or("no address");
            ev.push(format!(
                "{label} failed with {f}; the control's lookup found {why} too"
            ));
            return Some(down(std::mem::take(ev)));
        }
        let mut e = vec![format!(
            "{label} failed with {f}{}; the control resolved {}",
            lossy::tries_text(p.attempts),
            join_ips(ctl_addrs)
        )];
        let mut conf = "likely";
        let consistent = i
            .view
            .others
            .iter()
            .find(|o| o.failure.is_none() && i.view.validity(o).any());
        if let Some(o) = consistent {
            e.push(format!(
                "{} resolved {}, consistent with the control",
                o.label(None),
                o.addrs_text()
            ));
            conf = "confirmed";
        }
        if p.injected {
            e.extend(p.reply_notes.iter().cloned());
            conf = "confirmed";
            return Some(blocked("dns.injected", conf, e));
        }
        if lossy::loss_can_cause(f) {
            // A silence is what lost datagrams look like too: only a
            // persistent one counts, and never as `confirmed`.
            match lossy::judge_silence(p.attempts, consistent.is_some(), i.ctx.line_loss) {
                lossy::SilenceCall::Contradicted(why) => {
                    ev.extend(e);
                    ev.push(why);
                    return None;
                }
                lossy::SilenceCall::Block { confidence, notes } => {
                    e.extend(notes);
                    conf = confidence;
                }
            }
        }
        return Some(blocked(dns_failure_mechanism(f), conf, e));
    }

    if i.view.all_localhost(p) {
        if i.view.control_all_localhost(i.ctx) {
            ev.push(format!(
                "{label} answered {} and so did the control: the site's own records point to loopback",
                p.addrs_text()
            ));
            return Some(down(std::mem::take(ev)));
        }
        let e = vec![format!(
            "{label} answered {}; the control resolved {}",
            p.addrs_text(),
            join_ips(ctl_addrs)
        )];
        return Some(blocked("dns.localhost", "confirmed", e));
    }

    let v = i.view.validity(p);
    if !v.any() {
        let mut v = inconsistent_dns(i, p, &label);
        if v.status == VerdictStatus::Accessible {
            diverted(i, p, &label, &mut v.evidence, interference);
        }
        return Some(v);
    }
    let how = if v.ip_overlap {
        "a shared address"
    } else if v.asn_overlap {
        "the same network, by ASN"
    } else {
        "a TLS handshake for the name verified"
    };
    ev.push(format!(
        "{label} answered {}, consistent with the control ({how})",
        p.addrs_text()
    ));
    diverted(i, p, &label, ev, interference);
    if p.injected {
        ev.push(format!(
            "duplicate DNS replies differed ({}) but the answer used is consistent",
            join_words(&p.reply_notes)
        ));
    }
    for o in &i.view.others {
        if o.kind == ResolverKind::Doh {
            continue;
        }
        if let Some(f) = &o.failure {
            ev.push(format!(
                "{} failed with {f} although the control resolved the name",
                o.label(None)
            ));
            continue;
        }
        if !i.view.validity(o).any() && !o.addrs.is_empty() {
            let mut e = vec![format!(
                "{} answered {}, inconsistent with the control's {}",
                o.label(None),
                o.addrs_text(),
                join_ips(ctl_addrs)
            )];
            if o.injected {
                e.extend(o.reply_notes.iter().cloned());
                e.push(format!(
                    "{label} was not tampered with and the page loaded through it",
                ));
                *side = Some(blocked("dns.injected", "likely", e));
            } else {
                ev.extend(e);
            }
        }
    }
    None
}

/// A name that led to a middlebox passing the genuine site through (only a
/// verified certificate or the same page links its address to the site):
/// `dns.diverted` when ASNs show the address is outside the site's
/// network; without ASN data, what is unknown is said.
fn diverted(
    i: &Inputs<'_>,
    p: &Lookup,
    label: &str,
    ev: &mut Vec<String>,
    interference: &mut Vec<String>,
) {
    let others: Vec<String> = i
        .view
        .others
        .iter()
        .map(|o| match &o.failure {
            Some(f) => format!("{} failed with {f}", o.label(None)),
            None => format!("{} answered {}", o.label(None), o.addrs_text()),
        })
        .collect();
    let ctl = format!("the control resolved {}", join_ips(&i.view.control_addrs));
    match i.view.diversion(p) {
        Diversion::No => {}
        Diversion::Diverted => {
            let mut s = format!(
                "dns.diverted: {label} answered {}{}, outside the network of the control's addresses; {ctl}{}",
                p.addrs_text(),
                asns_text(p.addrs.iter().map(|ip| i.view.fact(*ip).asn)),
                asns_text(i.view.control_asns.iter().copied())
            );
            if !others.is_empty() {
                s.push_str(&format!("; {}", join_words(&others)));
            }
            ev.push(s);
            ev.push(
                "a middlebox there passed the genuine site through: the content is genuine, the address is not the site's".into(),
            );
            interference.push("dns.diverted".into());
        }
        Diversion::Unknown(ips) => ev.push(format!(
            "{label} answered {}, which the control did not ({ctl}); without ASN data for {} it is unknown whether that is the site's network or a middlebox",
            p.addrs_text(),
            join_ips(&ips)
        )),
    }
}

/// The primary lookup's addresses do not agree with the control's by IP,
/// ASN or TLS.
fn inconsistent_dns(i: &Inputs<'_>, p: &Lookup, label: &str) -> Verdict {
    let ctl_addrs = &i.view.control_addrs;
    let mut e =
        vec![if ctl_addrs.is_empty() {
            format!(
                "{label} answered {}; the control found no address for the name",
                p.addrs_text()
            )
        } else {
            format!(
            "{label} answered {}{}; the control resolved {}{}, with no shared address or network",
            p.addrs_text(),
            asns_text(p.addrs.iter().map(|ip| i.view.fact(*ip).asn)),
            join_ips(ctl_addrs),
            asns_text(ctl_addrs.iter().map(|ip| {
                observe::asn_of(i.m, i.ctx, i.control, *ip)
            }))
        )
        }];
    // A transparent proxy: the page fetched from these addresses is the
    // control's page.
    if let Outcome::Page { tx, secure, .. } = i.outcome {
        let from_here = observe::addr_ip(&tx.address).is_some_and(|ip| p.addrs.contains(&ip));
        if from_here && (*secure || matches_control(i)) {
            e.push(format!(
                "the page fetched from {} matches the control's, so the answer leads to the site (a proxy or CDN node)",
                tx.address
            ));
            return Verdict {
                status: VerdictStatus::Accessible,
                evidence: e,
                ..Verdict::default()
            };
        }
    }
    let mut conf = "likely";
    let cert = cert_sentence(i, p);
    if !cert.is_empty() {
        conf = "confirmed";
    }
    e.extend(cert);
    if p.injected {
        e.extend(p.reply_notes.iter().cloned());
        return blocked("dns.injected", "confirmed", e);
    }
    let mut fps = Vec::new();
    if let Outcome::Page { tx, .. } = i.outcome {
        let m = i.ctx.fingerprints.match_http(
            &observe::body_text(tx),
            &tx.response.headers,
            &i.ctx.probe_cc,
        );
        for f in m.iter().filter(|f| !f.false_positive) {
            fps.push(f.name.clone());
        }
        if !fps.is_empty() {
            conf = "confirmed";
            e.push(format!(
                "the page served from {} matches blocking fingerprint {}",
                tx.address,
                join_words(&fps)
            ));
        } else if i.diff.is_some() && !matches_control(i) {
            e.push(format!(
                "the page served from {} (status {}, title \"{}\") differs from the control's",
                tx.address,
                tx.response.code,
                observe::title_of(tx)
            ));
        }
    }
    let mech = dns_addr_mechanism(i, p);
    let mut v = blocked(mech, conf, e);
    v.fingerprints = fps;
    v
}

/// No control: only a fingerprint (handled before) or a self-evident signal
/// gives more than `inconclusive`.
fn dns_without_control(
    i: &Inputs<'_>,
    p: &Lookup,
    label: &str,
    ev: &mut Vec<String>,
) -> Option<Verdict> {
    let no_ctl = "there is no control data";
    let elsewhere = i.view.others_public_elsewhere(p);
    let others_agree = !elsewhere.is_empty()
        && i.view
            .others
            .iter()
            .filter(|o| o.failure.is_none())
            .all(|o| o.addrs.iter().all(|ip| !i.view.fact(*ip).bogon));
    if let Some(f) = &p.failure {
        let valid: Vec<IpAddr> = elsewhere
            .iter()
            .copied()
            .filter(|ip| i.view.fact(*ip).tls_valid)
            .collect();
        if !valid.is_empty() {
            let e = vec![
                format!("{label} failed with {f}"),
                format!(
                    "other resolvers answered {}, and a TLS handshake for the name to {} verified; {no_ctl}",
                    join_ips(&elsewhere),
                    valid[0]
                ),
            ];
            return Some(blocked(dns_failure_mechanism(f), "possible", e));
        }
        ev.push(format!(
            "{label} failed with {f}; {no_ctl} to tell a block from a dead name"
        ));
        return Some(inconclusive(std::mem::take(ev), ""));
    }
    if others_agree && (i.view.all_localhost(p) || i.view.any_bogon(p)) {
        let mech = if i.view.all_localhost(p) {
            "dns.localhost"
        } else {
            "dns.bogon"
        };
        let e = vec![format!(
            "{label} answered {} while the other resolvers agree on {}; {no_ctl}",
            p.addrs_text(),
            join_ips(&elsewhere)
        )];
        return Some(blocked(mech, "possible", e));
    }
    if let Some((ip, f)) = i.view.cert_failure(p) {
        let disjoint = !p.addrs.iter().any(|a| elsewhere.contains(a))
            && i.view
                .others
                .iter()
                .all(|o| !o.addrs.iter().any(|a| p.addrs.contains(a)));
        if !elsewhere.is_empty() && disjoint {
            let e = vec![
                format!("{label} answered {}", p.addrs_text()),
                format!("a TLS handshake for the name to {ip} was refused: {f}"),
                format!(
                    "other resolvers map the name to {}; {no_ctl}",
                    join_ips(&elsewhere)
                ),
            ];
            return Some(blocked("dns.sinkhole", "possible", e));
        }
    }
    ev.push(format!("{label} answered {}", p.addrs_text()));
    None
}

/// `dns.localhost`, `dns.bogon`, `dns.injected` or `dns.sinkhole` for a
/// lookup whose addresses are wrong.
fn dns_addr_mechanism(i: &Inputs<'_>, p: &Lookup) -> &'static str {
    if p.injected {
        "dns.injected"
    } else if i.view.all_localhost(p) {
        "dns.localhost"
    } else if i.view.any_bogon(p) && !i.view.bogon_shared_with_control(p) {
        "dns.bogon"
    } else {
        "dns.sinkhole"
    }
}

/// The mechanism for a failed lookup.
fn dns_failure_mechanism(f: &Failure) -> &'static str {
    match f {
        Failure::DnsNxdomain => "dns.nxdomain",
        Failure::DnsNoAnswer => "dns.no_answer",
        Failure::GenericTimeout | Failure::TimedOut | Failure::DnsTemporaryFailure => "dns.timeout",
        _ => "dns.servfail",
    }
}

/// "a TLS handshake for the name to X was refused: ..." for the lookup's
/// addresses, if any.
fn cert_sentence(i: &Inputs<'_>, p: &Lookup) -> Vec<String> {
    i.view
        .cert_failure(p)
        .map(|(ip, f)| format!("a TLS handshake for the name to {ip} was refused: {f}"))
        .into_iter()
        .collect()
}

// ------------------------------------------------------------ failures ----

fn failed_step(i: &Inputs<'_>, f: &Failed, mut ev: Vec<String>) -> Verdict {
    // A fetch cut short (Ctrl-C, the per-URL deadline) proves nothing.
    if let Some(why) = &i.m.test_keys.x_interrupted {
        ev.push(format!(
            "{}; the measurement was cut short ({why})",
            describe_failure(f)
        ));
        return inconclusive(ev, "");
    }
    if f.failure == Failure::Interrupted {
        ev.push(describe_failure(f));
        return inconclusive(ev, "");
    }
    if f.no_ipv6_route() {
        ev.push(describe_failure(f));
        return inconclusive(
            ev,
            "only IPv6 addresses were tried and the probe has no IPv6 route: not evidence",
        );
    }
    let mut v = compare_failure(i, f, ev);
    // An injected RST (its IP TTL differs from the server's packets) is an
    // independent signal agreeing with the control comparison.
    if v.status == VerdictStatus::Blocked
        && matches!(
            f.failure,
            Failure::ConnectionReset | Failure::ConnectionRefused | Failure::Eof
        )
    {
        let mut eps: Vec<String> = f.endpoints.iter().map(ToString::to_string).collect();
        if let Some(tx) = i.m.test_keys.requests.first() {
            eps.push(tx.address.clone());
        }
        let injected: Vec<&str> =
            i.m.test_keys
                .x_injection
                .iter()
                .filter(|e| e.kind == "tcp.rst_ttl_mismatch" && eps.contains(&e.target))
                .map(|e| e.detail.as_str())
                .collect();
        if let Some(d) = injected.first() {
            v.evidence.push(format!("an injected RST was seen: {d}"));
            v.confidence = Some("confirmed".into());
        }
    }
    v
}

/// Compares a failed step with the control's result for the same step.
fn compare_failure(i: &Inputs<'_>, f: &Failed, mut ev: Vec<String>) -> Verdict {
    let what = describe_failure(f);
    let Some(ctl) = i.control else {
        ev.push(format!(
            "{what}; there is no control data to tell a block from an outage"
        ));
        return inconclusive(ev, "");
    };
    let depth0 = f.depth == 0 && f.hop.host == i.target.host;
    let unexplained = |ev: &mut Vec<String>| {
        ev.push(format!(
            "the control has no result for this step{}",
            if ctl.http_ok() {
                " but fetched the final page"
            } else {
                " and could not fetch the page either"
            }
        ));
    };
    match f.step {
        Step::Dns => {
            let hop = ctl
                .r
                .x_redirect_chain
                .iter()
                .find(|h| Target::parse(&h.url).is_some_and(|t| t.host == f.hop.host));
            match hop {
                Some(h) if h.dns.addrs.is_empty() => {
                    ev.push(format!("{what}; the control's lookup failed too"));
                    down(ev)
                }
                Some(h) => {
                    ev.push(format!(
                        "{what}; the control resolved {}",
                        h.dns.addrs.join(", ")
                    ));
                    blocked(dns_failure_mechanism(&f.failure), "likely", ev)
                }
                None if ctl.http_ok() => {
                    ev.push(what);
                    unexplained(&mut ev);
                    blocked(dns_failure_mechanism(&f.failure), "possible", ev)
                }
                None => {
                    ev.push(format!(
                        "{what}; the control could not fetch the page either"
                    ));
                    down(ev)
                }
            }
        }
        Step::Tcp => {
            let res = control_tcp(ctl, f, depth0);
            let mech = tcp_mechanism(&f.failure);
            compare_step(ctl, &res, what, mech, "connected", ev, unexplained)
        }
        Step::Tls => {
            let res = control_tls(ctl, f, depth0);
            if f.failure.is_certificate_error() {
                let v = compare_step(
                    ctl,
                    &res,
                    what,
                    "tls.mitm",
                    "verified the certificate",
                    ev,
                    unexplained,
                );
                // Interception needs a chain the control did not see.
                interception::require_chain_evidence(i.m, i.control, &f.endpoints, v)
            } else {
                let mech = match f.failure {
                    Failure::GenericTimeout | Failure::TimedOut => "tls.timeout",
                    Failure::Eof => "tls.eof",
                    _ => "tls.reset",
                };
                let mut v = compare_step(
                    ctl,
                    &res,
                    what,
                    mech,
                    "completed the handshake",
                    ev,
                    unexplained,
                );
                if v.status == VerdictStatus::Blocked {
                    let (e, conf) = sni_layout::judge(i.m, &f.endpoints, &f.failure);
                    v.evidence.extend(e);
                    if let Some(c) = conf {
                        v.confidence = Some(c.into());
                    }
                }
                v
            }
        }
        Step::Http => {
            if !ctl.http_ok() {
                ev.push(format!(
                    "{what}; the control's fetch failed too ({})",
                    ctl.r
                        .http_request
                        .failure
                        .as_deref()
                        .unwrap_or("no response")
                ));
                return down(ev);
            }
            let mech = match f.failure {
                Failure::ConnectionReset | Failure::ConnectionAborted => Some("http.reset"),
                Failure::Eof => Some("http.eof"),
                Failure::GenericTimeout | Failure::TimedOut => Some("http.timeout"),
                _ => None,
            };
            ev.push(format!(
                "{what}; the control fetched the page (status {})",
                ctl.r.http_request.status_code
            ));
            if let Some(more) = i.m.test_keys.requests.first().and_then(|tx| {
                Target::parse(&tx.request.url)
                    .filter(|t| t.host == f.hop.host)
                    .and_then(|_| super::slowbody::check(tx, ctl.r, i.ctx.line_rate_bps))
            }) {
                return match more {
                    super::slowbody::SlowBody::Throttled(more) => {
                        ev.extend(more);
                        verdict_with(VerdictStatus::Throttled, "throttling", "possible", ev)
                    }
                    super::slowbody::SlowBody::SlowLine(why) => {
                        ev.push(why);
                        inconclusive(ev, "")
                    }
                };
            }
            // A timeout alone is weak: the site may just be slower than the
            // probe's HTTP timeout and faster than the control's.
            let conf = if depth0 && mech != Some("http.timeout") {
                "likely"
            } else {
                "possible"
            };
            match mech {
                Some(m) => blocked(m, conf, ev),
                None => inconclusive(ev, ""),
            }
        }
    }
}

/// Compares a failed TCP or TLS step with the control's results for the same
/// endpoints.
fn compare_step(
    ctl: Control<'_>,
    res: &[bool],
    what: String,
    mech: &str,
    ctl_did: &str,
    mut ev: Vec<String>,
    unexplained: impl Fn(&mut Vec<String>),
) -> Verdict {
    if res.iter().any(|ok| *ok) {
        ev.push(format!(
            "{what}; the control {ctl_did} with the same endpoint"
        ));
        blocked(mech, "likely", ev)
    } else if !res.is_empty() {
        ev.push(format!("{what}; the control failed at the same step"));
        down(ev)
    } else if ctl.http_ok() {
        ev.push(what);
        unexplained(&mut ev);
        blocked(mech, "possible", ev)
    } else {
        ev.push(what);
        unexplained(&mut ev);
        down(ev)
    }
}

fn tcp_mechanism(f: &Failure) -> &'static str {
    match f {
        Failure::ConnectionRefused | Failure::ConnectionReset => "tcp.refused",
        Failure::HostUnreachable | Failure::NetworkUnreachable => "tcp.unreachable",
        _ => "tcp.timeout",
    }
}

fn describe_failure(f: &Failed) -> String {
    let hop = match (f.depth, f.step) {
        (0, _) => String::new(),
        (d, Step::Http) => format!(" (redirect {d})"),
        (d, _) => format!(" (redirect {d} to {})", f.hop.url),
    };
    let eps: Vec<String> = f.endpoints.iter().map(ToString::to_string).collect();
    match f.step {
        Step::Dns => format!("resolving {}{hop} failed with {}", f.hop.host, f.failure),
        Step::Tcp => format!(
            "TCP connects to {}{hop} failed with {}",
            join_words(&eps),
            f.failure
        ),
        Step::Tls => format!(
            "the TLS handshake for {} with {}{hop} failed with {}",
            f.hop.host,
            join_words(&eps),
            f.failure
        ),
        Step::Http => format!("fetching {}{hop} failed with {}", f.hop.url, f.failure),
    }
}

// ---------------------------------------------------------------- page ----

fn page_step(
    i: &Inputs<'_>,
    tx: &probes::records::HttpTransaction,
    hop: &Target,
    secure: bool,
    cert_failure: Option<&Failure>,
    mut ev: Vec<String>,
) -> Verdict {
    let cc = &i.ctx.probe_cc;
    let reqs = &i.m.test_keys.requests;
    let title = observe::title_of(tx);
    let page = format!(
        "the probe got status {} with title \"{}\" ({} bytes) from {}",
        tx.response.code,
        title,
        observe::body_len(tx),
        tx.address
    );

    // Blocking fingerprints: on a redirect's headers, then on the page.
    for r in reqs.iter().skip(1) {
        let m = i
            .ctx
            .fingerprints
            .match_http("", &r.response.headers, cc)
            .into_iter()
            .filter(|f| !f.false_positive)
            .collect::<Vec<_>>();
        if !m.is_empty() {
            return fp_verdict(
                "http.redirect_to_blockpage",
                &m,
                format!(
                    "{} redirected to {}, a known blockpage location",
                    r.request.url,
                    r.response
                        .headers
                        .get("location")
                        .cloned()
                        .unwrap_or_default()
                ),
                ev,
            );
        }
    }
    let fps = i
        .ctx
        .fingerprints
        .match_http(&observe::body_text(tx), &tx.response.headers, cc);
    let blocking: Vec<FingerprintMatch> =
        fps.iter().filter(|f| !f.false_positive).cloned().collect();
    if !blocking.is_empty() {
        let mech = if redirected_off_site(i, hop) {
            "http.redirect_to_blockpage"
        } else {
            "http.blockpage"
        };
        return fp_verdict(mech, &blocking, page, ev);
    }
    let fp_names: Vec<String> = fps.iter().map(|f| f.name.clone()).collect();
    if !fp_names.is_empty() {
        ev.push(format!(
            "{page}, which matches {} (a known server-side page, not censorship)",
            join_words(&fp_names)
        ));
        let mut v = server_side(ev);
        v.fingerprints = fp_names;
        return v;
    }

    if let Some(cf) = cert_failure {
        // The page came over a chain that did not verify.
        let ok = i.control.is_some_and(|c| {
            observe::addr_ip(&tx.address).is_some_and(|ip| c.ip_tls_valid(ip, &hop.host))
                || c.r.tls_handshake.values().any(|t| t.status)
        });
        ev.push(format!(
            "the TLS certificate of {} for {} was refused: {cf}",
            tx.address, hop.host
        ));
        return match i.control {
            Some(_) if ok => {
                ev.push("the control verified the site's certificate".into());
                let eps: Vec<std::net::SocketAddr> = tx.address.parse().into_iter().collect();
                interception::require_chain_evidence(
                    i.m,
                    i.control,
                    &eps,
                    blocked("tls.mitm", "likely", ev),
                )
            }
            Some(_) => {
                ev.push("the control could not verify the certificate either".into());
                down(ev)
            }
            None => inconclusive(ev, "there is no control data"),
        };
    }

    let Some(ctl) = i.control else {
        if secure {
            ev.push(format!(
                "{page} over TLS verified for the name; there is no control data"
            ));
            return accessible(ev);
        }
        ev.push(page);
        return inconclusive(
            ev,
            "there is no control data to tell the page from a blockpage",
        );
    };
    if !ctl.http_ok() {
        let cf = ctl
            .r
            .http_request
            .failure
            .as_deref()
            .unwrap_or("no response");
        if secure {
            ev.push(format!(
                "{page} over TLS verified for the name; the control's fetch failed ({cf})"
            ));
            return accessible(ev);
        }
        ev.push(page);
        return inconclusive(
            ev,
            &format!("the control's fetch failed ({cf}), so the page cannot be compared"),
        );
    }
    let ch = &ctl.r.http_request;
    let ctl_page = format!(
        "the control got status {} with title \"{}\" ({} bytes)",
        ch.status_code, ch.title, ch.body_length
    );
    let diff = i.diff.unwrap_or_else(|| Diff::compute(tx, ch));

    // The site failing for everyone (5xx at both ends) is down, whatever
    // the transport.
    if tx.response.code >= 500 && ch.status_code >= 500 {
        ev.push(format!("{page}; {ctl_page}: the site fails for both"));
        return down(ev);
    }

    // Server-side refusals: an error or challenge to the probe, 200 to the
    // control, from the same site.
    if SERVER_REFUSAL_CODES.contains(&tx.response.code) && (200..300).contains(&ch.status_code) {
        let same_site = secure || httpdiff::same_server(tx, ch) || diff.headers_match == Some(true);
        if same_site {
            ev.push(format!(
                "{page}; {ctl_page}; the refusal came from the site itself{}",
                if secure {
                    " (over TLS verified for the name)"
                } else {
                    " (same server software or headers)"
                }
            ));
            return server_side(ev);
        }
    }
    if tx.response.code == 451 {
        ev.push(format!(
            "{page} (451: unavailable for legal reasons); {ctl_page}"
        ));
        return blocked("http.blockpage", "likely", ev);
    }

    if secure {
        let s = format!("{page} over TLS verified for the name; {ctl_page}");
        return page_loaded(i, tx, ctl, ev, s);
    }
    if redirected_off_site(i, hop) {
        ev.push(format!(
            "the probe was redirected to {} where the control was not; {page}; {ctl_page}",
            hop.url
        ));
        return blocked("http.redirect_to_blockpage", "likely", ev);
    }
    // Decide on what the page says, when the control sent its text.
    if let Some(cmp) = i.page.filter(|c| c.text_sim.is_some()) {
        if cmp.text_sim.is_some_and(|t| t >= SAME_TEXT) {
            let s = format!(
                "{page}, saying what the control's page says ({}); {ctl_page}",
                cmp.describe()
            );
            return page_loaded(i, tx, ctl, ev, s);
        }
        return text_differs(i, cmp, diff, format!("{page}; {ctl_page}"), ev);
    }
    // No text to compare (a control without `x_body_text`, a page with
    // almost no text): OONI's comparison, made stricter.
    if same_page(diff) {
        let s = format!("{page}, matching the control's page; {ctl_page}");
        return page_loaded(i, tx, ctl, ev, s);
    }
    let prop = diff.body_proportion.unwrap_or(0.0);
    let terms = i.page.map(|c| c.block_terms.clone()).unwrap_or_default();
    if !terms.is_empty() && i.page.is_some_and(PageCmp::short) {
        ev.push(format!(
            "{page}; {ctl_page}; the pages differ and the probe's page says \"{}\"",
            terms.join("\", \"")
        ));
        return blocked("http.blockpage", "likely", ev);
    }
    if diff.status_code_match == Some(true) && httpdiff::same_server(tx, ch) && prop >= 0.3 {
        // Same status and server software are weak evidence either way
        // (most filtering boxes and most sites run nginx).
        ev.push(format!("{page}; {ctl_page}; the pages differ"));
        return inconclusive(
            ev,
            "the control sent no text to compare, and the same status and server software cannot tell another edition of the page from a blockpage",
        );
    }
    ev.push(format!("{page}; {ctl_page}; the pages differ"));
    let conf = if prop < 0.3 && diff.title_match != Some(true) {
        "likely"
    } else {
        "possible"
    };
    blocked("http.blockpage", conf, ev)
}

/// The page loaded as the control's did: accessible, or throttled.
fn page_loaded(
    i: &Inputs<'_>,
    tx: &probes::records::HttpTransaction,
    ctl: Control<'_>,
    mut ev: Vec<String>,
    sentence: String,
) -> Verdict {
    let th = throttling::check(i.m, tx, ctl.r, i.ctx.line_rate_bps);
    if !th.evidence.is_empty() {
        let conf = if th.both { "confirmed" } else { "likely" };
        let mut v = verdict_with(VerdictStatus::Throttled, "throttling", conf, th.evidence);
        v.evidence.splice(0..0, ev);
        return v;
    }
    ev.push(sentence);
    ev.extend(th.notes);
    accessible(ev)
}

/// A cleartext page whose text differs from the control's. A blockpage
/// needs support: the same page served for other unrelated sites in this
/// run, or blocking words on a short page. A challenge page is the site's
/// (or its CDN's) own; a full page, or one titled like the site's, is
/// another edition; anything else is left unexplained.
fn text_differs(
    i: &Inputs<'_>,
    cmp: &PageCmp,
    diff: Diff,
    pages: String,
    mut ev: Vec<String>,
) -> Verdict {
    let differ = format!("{pages}; the pages differ ({})", cmp.describe());
    if !cmp.challenge_terms.is_empty() && cmp.short() {
        ev.push(format!(
            "{differ}; the probe's page is a challenge (\"{}\"), the site's or its CDN's own answer",
            cmp.challenge_terms.join("\", \"")
        ));
        return server_side(ev);
    }
    let said = (!cmp.block_terms.is_empty() && cmp.short()).then(|| {
        format!(
            "the probe's page ({} words) says \"{}\"",
            cmp.words,
            cmp.block_terms.join("\", \"")
        )
    });
    let shared = match (&i.ctx.clusters, i.control) {
        (Some(reg), Some(ctl)) => {
            let control = cluster::PageKey {
                sha256: ctl
                    .r
                    .x_body
                    .as_ref()
                    .map(|b| b.sha256.clone())
                    .unwrap_or_default(),
                sketch: ctl
                    .r
                    .x_body_text
                    .as_ref()
                    .map(|t| t.sketch.clone())
                    .unwrap_or_default(),
            };
            reg.add(&cmp.key, &i.target.host, &control, "")
        }
        _ => None,
    };
    if let Some(c) = shared {
        ev.push(differ);
        ev.push(format!(
            "the same page (sha256 {}) was served for {} unrelated sites in this run, whose control pages differ: a blockpage",
            short(&c.page_sha256),
            c.sites
        ));
        let conf = if let Some(s) = said {
            ev.push(s);
            "confirmed"
        } else {
            "likely"
        };
        let mut v = blocked("http.blockpage", conf, ev);
        v.cluster = Some(c);
        return v;
    }
    if let Some(s) = said {
        ev.push(format!("{differ}; {s}"));
        return blocked("http.blockpage", "likely", ev);
    }
    if cmp.title_sim >= SAME_TITLE || diff.headers_match == Some(true) {
        ev.push(format!(
            "{differ}, but they share the site's {}: another edition or changing content of the same site",
            if cmp.title_sim >= SAME_TITLE { "title" } else { "uncommon headers" }
        ));
        return accessible(ev);
    }
    if !cmp.short() {
        ev.push(format!(
            "{differ}; the probe's page is a full page ({} words) with no blockpage wording: another edition, not a notice",
            cmp.words
        ));
        return accessible(ev);
    }
    ev.push(differ);
    inconclusive(
        ev,
        "nothing marks the probe's page as a blockpage (no fingerprint, no blocking words, not served for other sites so far)",
    )
}

/// The probe's page matches the control's: by text when the control sent
/// it, else by OONI's stricter rule.
fn matches_control(i: &Inputs<'_>) -> bool {
    match i.page.and_then(|c| c.text_sim) {
        Some(t) => t >= SAME_TEXT,
        None => i.diff.is_some_and(same_page),
    }
}

/// OONI's "no difference" rule, made stricter: a title that differs with
/// no uncommon header in common means another page even when the lengths
/// are close (a small site and a small blockpage).
fn same_page(d: Diff) -> bool {
    d.same() && (d.title_match != Some(false) || d.headers_match == Some(true))
}

/// True when the probe's redirect chain reached a host the control's chain
/// never visited (and that is not the input's host).
fn redirected_off_site(i: &Inputs<'_>, hop: &Target) -> bool {
    if hop.host == i.target.host || i.m.test_keys.requests.len() < 2 {
        return false;
    }
    let Some(ctl) = i.control else {
        return false;
    };
    if ctl.r.x_redirect_chain.is_empty() {
        return false;
    }
    !ctl.r
        .x_redirect_chain
        .iter()
        .any(|h| Target::parse(&h.url).is_some_and(|t| t.host == hop.host))
}

fn fp_verdict(mech: &str, fps: &[FingerprintMatch], what: String, mut ev: Vec<String>) -> Verdict {
    let names: Vec<String> = fps.iter().map(|f| f.name.clone()).collect();
    let conf = if fps.iter().any(|f| f.confirmed) {
        "confirmed"
    } else {
        "likely"
    };
    ev.push(format!(
        "{what}, matching blocking fingerprint {}",
        join_words(&names)
    ));
    let mut v = blocked(mech, conf, ev);
    v.fingerprints = names;
    v
}

// ------------------------------------------------------------ builders ----

/// The layer named by a mechanism's prefix.
fn layer_of(mech: &str) -> &'static str {
    match mech.split('.').next().unwrap_or("") {
        "dns" => "dns",
        "tcp" => "tcp_ip",
        "tls" => "tls",
        "throttling" => "throttling",
        _ => "http",
    }
}

/// NIG sub-decree article 6: "block" (name or address refused, blockpage),
/// "disconnect" (a connection torn down after the trigger), "degrade".
fn nig_of(mech: &str) -> Option<&'static str> {
    match mech {
        "server_side" => None,
        "throttling" => Some("degrade"),
        "tls.reset" | "tls.eof" | "tls.timeout" | "http.reset" | "http.eof" | "http.timeout" => {
            Some("disconnect")
        }
        _ => Some("block"),
    }
}

fn blocked(mech: &str, conf: &str, evidence: Vec<String>) -> Verdict {
    Verdict {
        status: VerdictStatus::Blocked,
        layer: Some(layer_of(mech).into()),
        mechanism: Some(mech.into()),
        confidence: Some(conf.into()),
        nig_article6: nig_of(mech).map(Into::into),
        evidence,
        ..Verdict::default()
    }
}

fn verdict_with(status: VerdictStatus, mech: &str, conf: &str, evidence: Vec<String>) -> Verdict {
    Verdict {
        status,
        ..blocked(mech, conf, evidence)
    }
}

fn down(evidence: Vec<String>) -> Verdict {
    Verdict {
        status: VerdictStatus::Down,
        evidence,
        ..Verdict::default()
    }
}

fn accessible(evidence: Vec<String>) -> Verdict {
    Verdict {
        status: VerdictStatus::Accessible,
        evidence,
        ..Verdict::default()
    }
}

/// A server-side refusal: reported, not censorship (status `accessible`,
/// mechanism `server_side`, layer `http`, no confidence, no article 6).
fn server_side(evidence: Vec<String>) -> Verdict {
    Verdict {
        status: VerdictStatus::Accessible,
        layer: Some("http".into()),
        mechanism: Some("server_side".into()),
        evidence,
        ..Verdict::default()
    }
}

fn inconclusive(mut evidence: Vec<String>, why: &str) -> Verdict {
    if !why.is_empty() {
        evidence.push(why.to_string());
    }
    Verdict {
        status: VerdictStatus::Inconclusive,
        evidence,
        ..Verdict::default()
    }
}

/// " (AS1, AS2)" for the known ASNs, or nothing.
fn asns_text(asns: impl Iterator<Item = u32>) -> String {
    let mut v: Vec<String> = Vec::new();
    for a in asns.filter(|a| *a != 0) {
        let s = format!("AS{a}");
        if !v.contains(&s) {
            v.push(s);
        }
    }
    if v.is_empty() {
        String::new()
    } else {
        format!(" ({})", v.join(", "))
    }
}
