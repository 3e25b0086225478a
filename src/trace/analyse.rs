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
            Trigger::TcpSyn if p.rst && !reached_before(test, p.ttl) => Some(if control_connects {
                (
                    "rst",
                    "RST to a SYN while normal connects succeed".to_string(),
                )
            } else {
                (
                    "rst_unconfirmed",
                    format!(
                        "RST to a SYN from TTL {} on, and normal connects fail too: the RST \
                         comes from hop {}, the censor unless the site itself is that close \
                         (compare with a control vantage point)",
                        p.ttl, p.ttl
                    ),
                )
            }),
            Trigger::TcpSyn => None,
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

/// Pairs every test series with the control series of the same trigger
/// (the SYN series, which carries no name, with the control's ClientHello
/// or GET series: its normal-TTL connects show the port is open).
pub fn pairs(series: &[Series]) -> Vec<(&Series, Option<&Series>)> {
    series
        .iter()
        .filter(|s| s.role == Role::Test)
        .map(|t| {
            let c = series.iter().find(|c| {
                c.role == Role::Control
                    && match t.trigger {
                        Trigger::TcpSyn => {
                            matches!(c.trigger, Trigger::TlsClientHello | Trigger::HttpGet)
                        }
                        other => c.trigger == other,
                    }
            });
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
            "an RST closes the socket; telling on-path from in-path needs the raw sniffer (see skipped)"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::report::{DnsReplyNote, IcmpNote};

    const ROUTERS: [&str; 3] = ["198.51.100.11", "192.0.2.21", "192.0.2.99"];

    fn icmp(ttl: u8) -> HopProbe {
        let from = ROUTERS[usize::from(ttl) - 1].to_string();
        HopProbe {
            ttl,
            outcome: Outcome::TimeExceeded,
            hop: Some(from.clone()),
            icmp: vec![IcmpNote {
                from: Some(from),
                kind: "time_exceeded".into(),
                code: 0,
                raw: false,
            }],
            ..HopProbe::default()
        }
    }

    fn with(ttl: u8, outcome: Outcome) -> HopProbe {
        HopProbe {
            ttl,
            outcome,
            rst: outcome == Outcome::Rst,
            ..HopProbe::default()
        }
    }

    fn answer(ttl: u8, addrs: &[&str]) -> HopProbe {
        HopProbe {
            ttl,
            outcome: Outcome::DnsAnswer,
            dns_replies: addrs
                .iter()
                .map(|a| DnsReplyNote {
                    t: 0.01,
                    ip_ttl: Some(62),
                    rcode: "NoError".into(),
                    addresses: vec![a.to_string()],
                })
                .collect(),
            ..HopProbe::default()
        }
    }

    fn series(trigger: Trigger, role: Role, probes: Vec<HopProbe>) -> Series {
        Series {
            trigger,
            role,
            name: Some(
                if role == Role::Test {
                    "blocked.example"
                } else {
                    "example.org"
                }
                .into(),
            ),
            destination: "203.0.113.40:443".into(),
            probes,
        }
    }

    #[test]
    fn an_rst_at_ttl_two_is_hop_two_and_unknown_without_raw() {
        let t = series(
            Trigger::TlsClientHello,
            Role::Test,
            vec![icmp(1), with(2, Outcome::Rst), with(3, Outcome::Rst)],
        );
        let c = series(
            Trigger::TlsClientHello,
            Role::Control,
            vec![icmp(1), icmp(2), with(3, Outcome::Response)],
        );
        let f = compare(&t, Some(&c), Some(3), false).unwrap();
        assert_eq!(
            (f.first_hop, f.kind.as_str(), f.path.as_str()),
            (2, "rst", "unknown")
        );
        let f = compare(&t, Some(&c), Some(3), true).unwrap();
        assert_eq!(f.path, "in_path");
        let mut f = f;
        let hops = hop_map(&[t.clone(), c.clone()], 30);
        place(&mut f, &hops, Some(&c));
        assert_eq!(f.hop_address.as_deref(), Some("192.0.2.21"));
        assert_eq!(f.previous_hop_address.as_deref(), Some("198.51.100.11"));
    }

    #[test]
    fn an_rst_with_the_trigger_expiring_further_on_is_on_path() {
        let mut late = with(3, Outcome::Rst);
        late.after_rst = Some("server data after the RST (1200 bytes, ip ttl 61)".into());
        let t = series(
            Trigger::TlsClientHello,
            Role::Test,
            vec![icmp(1), with(2, Outcome::Rst), late],
        );
        let c = series(
            Trigger::TlsClientHello,
            Role::Control,
            vec![icmp(1), icmp(2), with(3, Outcome::Response)],
        );
        let f = compare(&t, Some(&c), Some(3), true).unwrap();
        assert_eq!((f.first_hop, f.path.as_str()), (2, "on_path"));
    }

    #[test]
    fn the_same_treatment_as_the_control_is_no_interference() {
        let probes = vec![icmp(1), icmp(2), with(3, Outcome::Response)];
        let t = series(Trigger::TlsClientHello, Role::Test, probes.clone());
        let c = series(Trigger::TlsClientHello, Role::Control, probes);
        assert!(compare(&t, Some(&c), Some(3), true).is_none());
    }

    #[test]
    fn a_blockpage_before_the_server_and_a_drop_are_found() {
        let mut page = with(2, Outcome::Response);
        page.response = Some("HTTP/1.1 403 Forbidden".into());
        let t = series(Trigger::HttpGet, Role::Test, vec![icmp(1), page]);
        let c = series(Trigger::HttpGet, Role::Control, vec![icmp(1), icmp(2)]);
        let f = compare(&t, Some(&c), Some(3), false).unwrap();
        assert_eq!((f.first_hop, f.kind.as_str()), (2, "blockpage"));

        let t = series(
            Trigger::TlsClientHello,
            Role::Test,
            vec![
                icmp(1),
                with(2, Outcome::Silence),
                with(3, Outcome::Silence),
            ],
        );
        let c = series(
            Trigger::TlsClientHello,
            Role::Control,
            vec![icmp(1), icmp(2), with(3, Outcome::Response)],
        );
        let f = compare(&t, Some(&c), Some(3), false).unwrap();
        assert_eq!(
            (f.first_hop, f.kind.as_str(), f.path.as_str()),
            (2, "drop", "in_path")
        );
        // One lost probe followed by an answer is not a drop.
        let t = series(
            Trigger::TlsClientHello,
            Role::Test,
            vec![
                icmp(1),
                with(2, Outcome::Silence),
                with(3, Outcome::Response),
            ],
        );
        assert!(compare(&t, Some(&c), Some(3), false).is_none());
    }

    #[test]
    fn forged_dns_racing_the_resolver_is_on_path() {
        let mut both = answer(3, &["192.0.2.66", "203.0.113.40"]);
        both.dns_replies[1].t = 0.02;
        let t = series(
            Trigger::Dns,
            Role::Test,
            vec![icmp(1), answer(2, &["192.0.2.66"]), both],
        );
        let c = series(
            Trigger::Dns,
            Role::Control,
            vec![icmp(1), icmp(2), answer(3, &["203.0.113.41"])],
        );
        let f = compare(&t, Some(&c), None, false).unwrap();
        assert_eq!(
            (f.first_hop, f.kind.as_str(), f.path.as_str()),
            (2, "forged_dns", "on_path")
        );
        let check = non_resolver_check(&t);
        assert!(check.answered);
        assert_eq!(check.first_hop, Some(2));
        assert_eq!(check.addresses, vec!["192.0.2.66", "203.0.113.40"]);
    }

    #[test]
    fn a_syn_rst_counts_only_when_normal_connects_work() {
        let t = Series {
            name: None,
            ..series(
                Trigger::TcpSyn,
                Role::Test,
                vec![icmp(1), with(2, Outcome::Rst)],
            )
        };
        let connects = series(
            Trigger::TlsClientHello,
            Role::Control,
            vec![with(1, Outcome::Response)],
        );
        let all = [t.clone(), connects.clone()];
        let paired = pairs(&all);
        assert_eq!(paired.len(), 1);
        assert_eq!(
            paired[0].1.map(|c| c.trigger),
            Some(Trigger::TlsClientHello)
        );
        let f = compare(&t, Some(&connects), None, true).unwrap();
        assert_eq!((f.first_hop, f.kind.as_str()), (2, "rst"));
        let refused = series(
            Trigger::TlsClientHello,
            Role::Control,
            vec![with(1, Outcome::ConnectFailed)],
        );
        let f = compare(&t, Some(&refused), None, true).unwrap();
        assert_eq!((f.first_hop, f.kind.as_str()), (2, "rst_unconfirmed"));
    }
}
