//! OONI LTE's multi-facet flags, `x_dns_flags` and `x_blocking_flags`: the
//! bits are not exclusive ("system DNS tampered, yet the page loaded through
//! another resolver" is DNS | success), so a reader sees every facet the
//! single verdict had to choose between.

use crate::model::Measurement;

use super::dnscheck::DnsView;
use super::httpdiff::Diff;
use super::observe::{self, Control, ResolverKind, Target};
use super::outcome::{Outcome, Step};

/// `x_dns_flags`: a depth-0 lookup returned a bogon.
pub const DNS_BOGON: u32 = 1;
/// `x_dns_flags`: a lookup failed (not DoH) while the control's succeeded.
pub const DNS_UNEXPECTED_FAILURE: u32 = 2;
/// `x_dns_flags`: addresses without IP, ASN or TLS agreement (not DoH).
pub const DNS_UNEXPECTED_ADDRS: u32 = 4;

/// `x_blocking_flags`: DNS.
pub const BLOCKING_DNS: u32 = 1;
/// `x_blocking_flags`: TCP/IP.
pub const BLOCKING_TCP_IP: u32 = 2;
/// `x_blocking_flags`: TLS.
pub const BLOCKING_TLS: u32 = 4;
/// `x_blocking_flags`: an HTTP round trip failed.
pub const BLOCKING_HTTP_FAILURE: u32 = 8;
/// `x_blocking_flags`: the final cleartext page differs.
pub const BLOCKING_HTTP_DIFF: u32 = 16;
/// `x_blocking_flags`: the page loaded (over TLS, or matching the control).
pub const BLOCKING_SUCCESS: u32 = 32;

/// Computes `(x_dns_flags, x_blocking_flags)`.
pub(crate) fn compute(
    m: &Measurement,
    target: &Target,
    view: &DnsView,
    outcome: &Outcome<'_>,
    control: Option<Control<'_>>,
    diff: Option<Diff>,
) -> (u32, u32) {
    let mut dns = 0;
    let lookups = view.primary.iter().chain(view.others.iter());
    for l in lookups {
        if view.any_bogon(l) {
            dns |= DNS_BOGON;
        }
        if l.kind == ResolverKind::Doh || control.is_none() {
            continue;
        }
        if l.failure.is_some() && !view.control_addrs.is_empty() {
            dns |= DNS_UNEXPECTED_FAILURE;
        }
        if l.failure.is_none() && !view.validity(l).any() {
            dns |= DNS_UNEXPECTED_ADDRS;
        }
    }
    let mut b = 0;
    if dns & (DNS_UNEXPECTED_FAILURE | DNS_UNEXPECTED_ADDRS) != 0 {
        b |= BLOCKING_DNS;
    }
    if let Some(ctl) = control {
        // Unexpected TCP and TLS failures at depth 0, endpoint by endpoint.
        for c in &m.test_keys.tcp_connect {
            let Some(ep) = c.endpoint() else { continue };
            // As OONI LTE: an unreachable IPv6 endpoint means the probe has
            // no IPv6 route, not a block.
            let no_v6_route = ep.is_ipv6()
                && c.status
                    .failure
                    .as_ref()
                    .is_some_and(super::outcome::is_unreachable);
            if !c.status.success && !no_v6_route && ctl.tcp(ep).is_some_and(|t| t.status) {
                b |= BLOCKING_TCP_IP;
            }
        }
        for h in &m.test_keys.tls_handshakes {
            let Ok(ep) = h.address.parse() else { continue };
            if !observe::tls_valid(h)
                && observe::norm_name(&h.server_name) == target.host
                && ctl.tls(ep, &target.host).is_some_and(|t| t.status)
            {
                b |= BLOCKING_TLS;
            }
        }
    }
    match outcome {
        Outcome::Page { secure: true, .. } => b |= BLOCKING_SUCCESS,
        Outcome::Page { .. } => match diff {
            Some(d) if d.same() => b |= BLOCKING_SUCCESS,
            Some(_) => b |= BLOCKING_HTTP_DIFF,
            None => {}
        },
        Outcome::Failed(f) if f.step == Step::Http && control.is_some_and(|c| c.http_ok()) => {
            b |= BLOCKING_HTTP_FAILURE;
        }
        _ => {}
    }
    (dns, b)
}
