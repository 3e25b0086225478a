//! OONI's classic keys with Web Connectivity LTE (0.5.28) semantics, so our
//! results read next to OONI's: `dns_consistency`, the four HTTP-diff keys,
//! `blocking` and `accessible`.
//!
//! Only the system resolver's depth-0 lookup sets `dns_consistency` (ts-017:
//! extensions must not). When a run did not use the system resolver at all,
//! the first configured UDP/TCP resolver plays its role. DNS inconsistency
//! dominates the label: any failure label becomes `dns`.

use crate::control::protocol::ControlHop;
use crate::model::Blocking;

use super::dnscheck::DnsView;
use super::httpdiff::Diff;
use super::observe::{Control, Target};
use super::outcome::{Failed, Outcome, Step};
use super::AnalysisContext;

/// The classic keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Classic {
    /// `consistent`, `inconsistent` or null.
    pub dns_consistency: Option<&'static str>,
    /// The HTTP comparison (final cleartext or TLS response vs control).
    pub diff: Option<Diff>,
    /// OONI's label.
    pub blocking: Blocking,
    /// OONI's accessibility.
    pub accessible: Option<bool>,
}

/// `dns_consistency` for the headline lookup.
pub(crate) fn dns_consistency(
    target: &Target,
    view: &DnsView,
    control: Option<Control<'_>>,
) -> Option<&'static str> {
    control?;
    if target.host_ip.is_some() {
        return Some("consistent");
    }
    let p = view.primary.as_ref()?;
    let ctl_has = !view.control_addrs.is_empty();
    if p.failure.is_some() {
        // Both failed (an expected failure), or only the probe did.
        return Some(if ctl_has {
            "inconsistent"
        } else {
            "consistent"
        });
    }
    if !ctl_has {
        return Some("inconsistent");
    }
    Some(if view.validity(p).classic() {
        "consistent"
    } else {
        "inconsistent"
    })
}

/// Computes every classic key.
pub(crate) fn compute(
    ctx: &AnalysisContext,
    target: &Target,
    view: &DnsView,
    outcome: &Outcome<'_>,
    control: Option<Control<'_>>,
) -> Classic {
    let mut c = Classic {
        dns_consistency: dns_consistency(target, view, control),
        ..Classic::default()
    };
    let dns_inc = c.dns_consistency == Some("inconsistent");
    let set = |c: &mut Classic, b: Blocking| {
        c.blocking = if dns_inc { Blocking::Dns } else { b };
        c.accessible = Some(false);
    };
    let down = |c: &mut Classic| set(c, Blocking::No);

    c.diff = page_diff(outcome, control);

    // Loopback answers (LTE rules 6 and 7).
    if let (Some(p), Some(_)) = (&view.primary, control) {
        if view.all_localhost(p) {
            if view.control_all_localhost(ctx) {
                down(&mut c);
            } else {
                set(&mut c, Blocking::Dns);
            }
            return c;
        }
    }

    match outcome {
        Outcome::Page { secure: true, .. } => {
            c.blocking = Blocking::No;
            c.accessible = Some(true);
        }
        Outcome::Page { .. } => match (control, c.diff) {
            (Some(_), Some(d)) if d.same() => {
                c.blocking = Blocking::No;
                c.accessible = Some(true);
            }
            (Some(_), Some(_)) => set(&mut c, Blocking::HttpDiff),
            _ if dns_inc => set(&mut c, Blocking::Dns),
            _ => {}
        },
        Outcome::NoData => {}
        Outcome::Failed(f) => {
            let Some(ctl) = control else {
                return c;
            };
            let depth0 = f.depth == 0 && f.hop.host == target.host;
            match f.step {
                Step::Http => {
                    if ctl.http_ok() {
                        set(&mut c, Blocking::HttpFailure);
                    } else {
                        down(&mut c);
                    }
                }
                Step::Tls => {
                    let res = control_tls(ctl, f, depth0);
                    if !res.is_empty() && res.iter().all(|ok| !ok) {
                        down(&mut c);
                    } else {
                        set(&mut c, Blocking::HttpFailure);
                    }
                }
                Step::Tcp if f.no_ipv6_route() => {}
                Step::Tcp => {
                    let res = control_tcp(ctl, f, depth0);
                    if res.is_empty() {
                        set(&mut c, Blocking::HttpFailure);
                    } else if res.iter().any(|ok| *ok) {
                        set(&mut c, Blocking::TcpIp);
                    } else {
                        down(&mut c);
                    }
                }
                Step::Dns => {
                    if !depth0 {
                        set(&mut c, Blocking::Dns);
                    } else if view.control_addrs.is_empty() {
                        down(&mut c);
                    } else {
                        set(&mut c, Blocking::Dns);
                    }
                }
            }
        }
    }
    c
}

/// The HTTP comparison of a final page with the control's, when both exist.
pub(crate) fn page_diff(outcome: &Outcome<'_>, control: Option<Control<'_>>) -> Option<Diff> {
    match (outcome, control) {
        (Outcome::Page { tx, .. }, Some(ctl)) if ctl.http_ok() => {
            Some(Diff::compute(tx, &ctl.r.http_request))
        }
        _ => None,
    }
}

/// The control's TLS results (`status` per endpoint) for the endpoints a
/// failed TLS step tried: the top-level ones at depth 0, else those of the
/// matching hop in the control's `x_redirect_chain`.
pub(crate) fn control_tls(ctl: Control<'_>, f: &Failed, depth0: bool) -> Vec<bool> {
    if depth0 {
        f.endpoints
            .iter()
            .filter_map(|ep| ctl.tls(*ep, &f.hop.host).map(|t| t.status))
            .collect()
    } else {
        hop_results(ctl, f, |h, ep| h.tls_handshake.get(ep).map(|t| t.status))
    }
}

/// The control's TCP results for the endpoints a failed TCP step tried, as
/// [`control_tls`] does for TLS.
pub(crate) fn control_tcp(ctl: Control<'_>, f: &Failed, depth0: bool) -> Vec<bool> {
    if depth0 {
        f.endpoints
            .iter()
            .filter_map(|ep| ctl.tcp(*ep).map(|t| t.status))
            .collect()
    } else {
        hop_results(ctl, f, |h, ep| h.tcp_connect.get(ep).map(|t| t.status))
    }
}

/// `status(hop, "ip:port")` for each of the failed step's endpoints on each
/// control redirect hop to the same host.
fn hop_results(
    ctl: Control<'_>,
    f: &Failed,
    status: impl Fn(&ControlHop, &str) -> Option<bool>,
) -> Vec<bool> {
    ctl.r
        .x_redirect_chain
        .iter()
        .filter(|h| Target::parse(&h.url).is_some_and(|t| t.host == f.hop.host))
        .flat_map(|h| {
            f.endpoints
                .iter()
                .filter_map(|ep| status(h, &ep.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}
