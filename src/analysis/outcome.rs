//! Where the probe's fetch ended: a page, or the step (DNS, TCP, TLS, HTTP)
//! and redirect hop at which it failed.

use std::net::{IpAddr, SocketAddr};

use probes::failure::Failure;
use probes::records::HttpTransaction;
use url::Url;

use crate::model::Measurement;

use super::observe::{self, Target};

/// A step of fetching one hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Resolving the hop's host.
    Dns,
    /// Connecting to its addresses.
    Tcp,
    /// The TLS handshake.
    Tls,
    /// The HTTP round trip.
    Http,
}

/// A failed fetch.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    /// The step that failed.
    pub step: Step,
    /// Its failure.
    pub failure: Failure,
    /// The hop's URL.
    pub hop: Target,
    /// Its redirect depth (0 for the input URL).
    pub depth: usize,
    /// The endpoints the failed TCP or TLS step tried.
    pub endpoints: Vec<SocketAddr>,
    /// The leaf certificate's SHA-256 when the TLS step refused a chain.
    pub leaf_sha256: Option<String>,
}

impl Failed {
    /// True when the TCP step tried only IPv6 endpoints and failed with
    /// `network_unreachable`/`host_unreachable`: the probe has no IPv6
    /// route (as OONI LTE, such IPv6 failures are not evidence).
    pub fn no_ipv6_route(&self) -> bool {
        self.step == Step::Tcp
            && !self.endpoints.is_empty()
            && self.endpoints.iter().all(SocketAddr::is_ipv6)
            && is_unreachable(&self.failure)
    }
}

/// `network_unreachable` or `host_unreachable`.
pub(crate) fn is_unreachable(f: &Failure) -> bool {
    matches!(f, Failure::NetworkUnreachable | Failure::HostUnreachable)
}

/// The end of the probe's fetch.
#[derive(Clone, Debug)]
pub(crate) enum Outcome<'a> {
    /// A final response arrived.
    Page {
        /// The final round trip.
        tx: &'a HttpTransaction,
        /// Its URL.
        hop: Target,
        /// It came over TLS whose chain verified for the name.
        secure: bool,
        /// It came over TLS whose chain was refused (the handshake went on
        /// unverified): the certificate failure.
        cert_failure: Option<Failure>,
    },
    /// The fetch failed.
    Failed(Failed),
    /// Nothing was measured.
    NoData,
}

/// Works out how the fetch ended.
pub(crate) fn outcome<'a>(m: &'a Measurement, target: &Target) -> Outcome<'a> {
    let tk = &m.test_keys;
    let exp_failure = tk.http_experiment_failure.as_deref().map(Failure::parse);
    let (hop, depth, failure) = match tk.requests.first() {
        Some(last) => {
            let complete = last.failure.is_none() && last.response.code > 0;
            let next = last
                .location()
                .and_then(|loc| Url::parse(&last.request.url).ok()?.join(loc).ok())
                .and_then(|u| Target::parse(u.as_str()));
            if complete && (last.location().is_none() || exp_failure.is_none()) {
                let hop = Target::parse(&last.request.url).unwrap_or_else(|| target.clone());
                let (secure, cert_failure) = page_tls(m, last, &hop);
                return Outcome::Page {
                    tx: last,
                    hop,
                    secure,
                    cert_failure,
                };
            }
            if complete {
                match next {
                    // A redirect was followed and the next hop failed.
                    Some(next) => (next, tk.requests.len(), exp_failure),
                    // The Location itself was unusable.
                    None => (
                        Target::parse(&last.request.url).unwrap_or_else(|| target.clone()),
                        tk.requests.len() - 1,
                        exp_failure,
                    ),
                }
            } else {
                (
                    Target::parse(&last.request.url).unwrap_or_else(|| target.clone()),
                    tk.requests.len() - 1,
                    last.failure.clone().or(exp_failure),
                )
            }
        }
        None => {
            let f =
                exp_failure.or_else(|| tk.dns_experiment_failure.as_deref().map(Failure::parse));
            if f.is_none() && tk.queries.is_empty() && tk.tcp_connect.is_empty() {
                return Outcome::NoData;
            }
            (target.clone(), 0, f)
        }
    };
    // A step our own limits kept from running measured nothing.
    if failure == Some(Failure::ProbeResourceLimit) {
        return Outcome::NoData;
    }
    Outcome::Failed(failed_step(m, hop, depth, failure, None))
}

/// The outcome as OONI's classic analysis sees it: only the headline
/// resolver's addresses count at depth 0, so a page fetched from an address
/// that only another resolver (or the control) gave does not make the URL
/// accessible; what happened on the headline addresses decides instead.
pub(crate) fn classic_outcome<'a>(
    m: &'a Measurement,
    target: &Target,
    full: &Outcome<'a>,
    headline: Option<&[IpAddr]>,
) -> Outcome<'a> {
    let (Outcome::Page { tx, .. }, Some(ips)) = (full, headline) else {
        return full.clone();
    };
    let from_headline = observe::addr_ip(&tx.address).is_some_and(|ip| ips.contains(&ip));
    if target.host_ip.is_some() || m.test_keys.requests.len() != 1 || from_headline {
        return full.clone();
    }
    let failure = m
        .test_keys
        .dns_experiment_failure
        .as_deref()
        .map(Failure::parse);
    Outcome::Failed(failed_step(m, target.clone(), 0, failure, Some(ips)))
}

/// Finds which step of fetching `hop` failed.
fn failed_step(
    m: &Measurement,
    hop: Target,
    depth: usize,
    failure: Option<Failure>,
    only: Option<&[IpAddr]>,
) -> Failed {
    let mut out = Failed {
        step: Step::Http,
        failure: failure
            .clone()
            .unwrap_or_else(|| Failure::Unknown("no response".into())),
        hop: hop.clone(),
        depth,
        endpoints: Vec::new(),
        leaf_sha256: None,
    };
    let ips: Vec<IpAddr> = match hop.host_ip {
        Some(ip) => vec![ip],
        None => {
            let ls = observe::lookups(m, &hop.host, depth == 0);
            let mut ips: Vec<IpAddr> = Vec::new();
            for l in &ls {
                for ip in &l.addrs {
                    if !ips.contains(ip) {
                        ips.push(*ip);
                    }
                }
            }
            let ips = match only {
                Some(only) => only.to_vec(),
                None => ips,
            };
            if ips.is_empty() {
                if let Some(p) = ls.first() {
                    out.step = Step::Dns;
                    out.failure = p.failure.clone().unwrap_or(Failure::DnsNoAnswer);
                    return out;
                }
                if failure.as_ref().is_some_and(Failure::is_dns) {
                    out.step = Step::Dns;
                    return out;
                }
            }
            ips
        }
    };
    let tcp = observe::tcp_to(m, &ips, hop.port);
    if !tcp.is_empty() && tcp.iter().all(|c| !c.status.success) {
        // Ignore IPv6 "unreachable" (a probe without IPv6) when IPv4 was tried.
        let v4: Vec<_> = tcp
            .iter()
            .filter(|c| c.ip.parse::<IpAddr>().is_ok_and(|i| i.is_ipv4()))
            .collect();
        let pick = v4.first().copied().or(tcp.first()).copied();
        out.step = Step::Tcp;
        out.failure = pick
            .and_then(|c| c.status.failure.clone())
            .unwrap_or(Failure::GenericTimeout);
        out.endpoints = tcp.iter().filter_map(|c| c.endpoint()).collect();
        return out;
    }
    if hop.https {
        let tls = observe::tls_to(m, &ips, Some(hop.port), &hop.host);
        if !tls.is_empty() && !tls.iter().any(|h| observe::tls_valid(h)) {
            let first = tls[0];
            out.step = Step::Tls;
            out.failure = observe::tls_cert_failure(first)
                .cloned()
                .or_else(|| first.failure.clone())
                .unwrap_or(Failure::SslFailedHandshake);
            out.endpoints = tls.iter().filter_map(|h| h.address.parse().ok()).collect();
            out.leaf_sha256 = first.x_leaf.as_ref().map(|l| l.sha256.clone());
            return out;
        }
    }
    out
}

/// Whether a final response came over verified TLS, and the certificate
/// failure when it came over a refused chain.
fn page_tls(m: &Measurement, tx: &HttpTransaction, hop: &Target) -> (bool, Option<Failure>) {
    if !hop.https {
        return (false, None);
    }
    let hs: Vec<_> = m
        .test_keys
        .tls_handshakes
        .iter()
        .filter(|h| h.address == tx.address)
        .collect();
    if hs.is_empty() {
        // No handshake record for the connection: the HTTP layer verified it.
        return (true, None);
    }
    if hs.iter().any(|h| observe::tls_valid(h)) {
        return (true, None);
    }
    (
        false,
        hs.iter()
            .find_map(|h| observe::tls_cert_failure(h).cloned()),
    )
}
