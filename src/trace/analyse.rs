//! From probes to findings: the first TTL at which the test name's trigger
//! is treated differently from the control's, and whether the trigger
//! travelled on past that point (on-path injector) or not (in-path).

use std::collections::BTreeMap;

use super::report::{
    Finding, HopAddress, HopProbe, NonResolverCheck, Outcome, Role, Series, Trigger,
};

/// Router addresses by TTL, from every series sent to the site's address.
pub fn hop_map(series: &[Series], max_ttl: u8) -> Vec<HopAddress> {
    let mut by_ttl: BTreeMap<u8, String> = BTreeMap::new();
    for s in series.iter().filter(|s| s.trigger != Trigger::Dns) {
        for p in &s.probes {
            if let Some(h) = &p.hop {
                by_ttl.entry(p.ttl).or_insert_with(|| h.clone());
            }
        }
    }
    let last = series
        .iter()
        .flat_map(|s| s.probes.iter().map(|p| p.ttl))
        .max()
        .unwrap_or(0)
        .min(max_ttl);
    (1..=last)
        .map(|ttl| HopAddress {
            ttl,
            address: by_ttl.get(&ttl).cloned(),
        })
        .collect()
}

/// The first interference for a test series compared with its control
/// series (same trigger, same destination). `raw` says whether packets after
/// an RST were observable (the sniffer ran).
pub fn compare(
    test: &Series,
    control: Option<&Series>,
    server_hop: Option<u8>,
    raw: bool,
) -> Option<Finding> {
    let ctl = |ttl: u8| control.and_then(|c| c.probes.iter().find(|p| p.ttl == ttl));
    let control_connects = control
        .map(|c| c.probes.iter().any(|p| p.outcome != Outcome::ConnectFailed))
        .unwrap_or(false);
    let mut first: Option<(u8, &'static str, String)> = None;
    for (i, p) in test.probes.iter().enumerate() {
        let c = ctl(p.ttl);
        let c_outcome = c.map(|c| c.outcome);
        let before_server = server_hop.is_some_and(|s| p.ttl < s);
        let found = match test.trigger {
            Trigger::Dns | Trigger::DnsNonResolver => {
                let forged = p.outcome == Outcome::DnsAnswer
                    && (test.trigger == Trigger::DnsNonResolver
                        || c_outcome != Some(Outcome::DnsAnswer)
                        || differs(p, c));
                forged.then(|| ("forged_dns", describe_dns(p)))
            }
            Trigger::TcpSyn => {
                (p.rst && control_connects && !reached_before(test, p.ttl)).then(|| {
                    (
                        "rst",
                        "RST to a SYN while normal connects succeed".to_string(),
                    )
                })
            }
            Trigger::TlsClientHello | Trigger::HttpGet => {
                if p.rst && c.is_some_and(|c| !c.rst) {
                    Some((
                        "rst",
                        "RST to the trigger; none for the control".to_string(),
                    ))
                } else if p.outcome == Outcome::Response
                    && before_server
                    && c_outcome != Some(Outcome::Response)
                {
                    let kind = if test.trigger == Trigger::HttpGet {
                        "blockpage"
                    } else {
                        "injected_response"
                    };
                    let what = p.response.clone().unwrap_or_default();
                    Some((kind, format!("a response before the server's hop: {what}")))
                } else if p.outcome == Outcome::Eof && c_outcome != Some(Outcome::Eof) {
                    Some(("eof", "connection closed after the trigger".to_string()))
                } else if p.outcome == Outcome::Silence
                    && matches!(
                        c_outcome,
                        Some(
                            Outcome::TimeExceeded
                                | Outcome::IcmpError
                                | Outcome::Response
                                | Outcome::Unreachable
                        )
                    )
                    && test.probes[i..]
                        .iter()
                        .all(|q| matches!(q.outcome, Outcome::Silence | Outcome::ConnectFailed))
                {
                    Some((
                        "drop",
                        "silence from here on while the control is answered".to_string(),
                    ))
                } else {
                    None
                }
            }
        };
        if let Some((kind, detail)) = found {
            first = Some((p.ttl, kind, detail));
            break;
        }
    }
    let (ttl, kind, detail) = first?;
    let (path, why) = path_position(test, ttl, kind, raw);
    Some(Finding {
        trigger: test.trigger,
        name: test.name.clone(),
        destination: test.destination.clone(),
        first_hop: ttl,
        hop_address: None,
        previous_hop_address: None,
        kind: kind.to_string(),
        path: path.to_string(),
        detail: format!("{detail}; {why}"),
    })
}

/// Fills in router addresses from the hop map (or, for resolver DNS, from
/// the control series' own ICMP).
pub fn place(f: &mut Finding, hops: &[HopAddress], own: Option<&Series>) {
    let dns = f.trigger == Trigger::Dns;
    f.hop_address = hop_at(f.first_hop, dns, hops, own);
    f.previous_hop_address = f
        .first_hop
        .checked_sub(1)
        .and_then(|t| hop_at(t, dns, hops, own));
}

fn hop_at(
    ttl: u8,
    resolver_path: bool,
    hops: &[HopAddress],
    own: Option<&Series>,
) -> Option<String> {
    let from_own = own.and_then(|s| {
        s.probes
            .iter()
            .find(|p| p.ttl == ttl)
            .and_then(|p| p.hop.clone())
    });
    if resolver_path {
        // The resolver's path may differ from the site's.
        return from_own;
    }
    hops.iter()
        .find(|h| h.ttl == ttl)
        .and_then(|h| h.address.clone())
        .or(from_own)
}

/// The non-resolver check for one series of DNS queries to the site.
pub fn non_resolver_check(s: &Series) -> NonResolverCheck {
    let answered: Vec<&HopProbe> = s
        .probes
        .iter()
        .filter(|p| !p.dns_replies.is_empty())
        .collect();
    let mut addresses: Vec<String> = answered
        .iter()
        .flat_map(|p| p.dns_replies.iter().flat_map(|r| r.addresses.clone()))
        .collect();
    addresses.sort();
    addresses.dedup();
    NonResolverCheck {
        name: s.name.clone().unwrap_or_default(),
        role: s.role,
        destination: s.destination.clone(),
        answered: !answered.is_empty(),
        first_hop: answered.first().map(|p| p.ttl),
        addresses,
    }
}

/// Pairs every test series with the control series of the same trigger.
pub fn pairs(series: &[Series]) -> Vec<(&Series, Option<&Series>)> {
    series
        .iter()
        .filter(|s| s.role == Role::Test)
        .map(|t| {
            let c = series
                .iter()
                .find(|c| c.role == Role::Control && c.trigger == t.trigger);
            (t, c)
        })
        .collect()
}

fn reached_before(s: &Series, ttl: u8) -> bool {
    s.probes
        .iter()
        .any(|p| p.ttl <= ttl && p.outcome == Outcome::Response)
}

fn differs(p: &HopProbe, c: Option<&HopProbe>) -> bool {
    let addrs = |h: &HopProbe| -> Vec<String> {
        let mut v: Vec<String> = h
            .dns_replies
            .iter()
            .flat_map(|r| r.addresses.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // Two different answer sets in the test's own replies: one is forged.
    let first = p.dns_replies.first().map(|r| &r.addresses);
    let mixed = p.dns_replies.iter().any(|r| Some(&r.addresses) != first);
    mixed && c.is_none_or(|c| addrs(c).len() <= 1)
}

fn describe_dns(p: &HopProbe) -> String {
    let replies: Vec<String> = p
        .dns_replies
        .iter()
        .map(|r| {
            format!(
                "{} [{}] ip ttl {}",
                r.rcode,
                r.addresses.join(","),
                r.ip_ttl.map_or("?".to_string(), |t| t.to_string())
            )
        })
        .collect();
    format!("DNS answer(s) {}", replies.join(" then "))
}

/// On-path if the trigger was seen travelling on at or past the first
/// interfering TTL: an ICMP time exceeded for it, a second (genuine) DNS
/// reply, an ICMP unreachable from the destination, or server data after
/// the RST. In-path if none of that was seen where it would have been
/// visible. Unknown when it could not have been seen (an RST closes an
/// ordinary socket; only the raw sniffer sees past it).
fn path_position(test: &Series, ttl: u8, kind: &str, raw: bool) -> (&'static str, String) {
    let at_or_after: Vec<&HopProbe> = test.probes.iter().filter(|p| p.ttl >= ttl).collect();
    let is_dns = matches!(test.trigger, Trigger::Dns | Trigger::DnsNonResolver);
    for p in &at_or_after {
        if p.icmp.iter().any(|n| n.kind == "time_exceeded") {
            let from = p
                .icmp
                .iter()
                .find(|n| n.kind == "time_exceeded")
                .and_then(|n| n.from.clone())
                .unwrap_or_default();
            return (
                "on_path",
                format!(
                    "the trigger sent with ttl {} still expired at {from}",
                    p.ttl
                ),
            );
        }
        if is_dns && p.dns_replies.len() > 1 {
            return (
                "on_path",
                format!(
                    "ttl {}: {} replies to one query",
                    p.ttl,
                    p.dns_replies.len()
                ),
            );
        }
        if is_dns && p.icmp.iter().any(|n| n.kind == "unreachable") {
            return (
                "on_path",
                format!(
                    "ttl {}: the destination also answered (ICMP unreachable)",
                    p.ttl
                ),
            );
        }
        if let Some(a) = &p.after_rst {
            return ("on_path", format!("ttl {}: {a}", p.ttl));
        }
    }
    if kind == "drop" || is_dns || raw {
        (
            "in_path",
            "nothing of the trigger was seen past the interfering hop".to_string(),
        )
    } else {
        (
            "unknown",
            "an RST closes the socket; telling on-path from in-path needs the raw sniffer (no_cap_net_raw)"
                .to_string(),
        )
    }
}
