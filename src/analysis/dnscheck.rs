//! DNS judged three ways, never by equality alone: IP overlap with the
//! control, ASN overlap, and TLS validity of the probe's addresses for the
//! name (CDNs and geo-DNS answer differently and are fine). Plus what an
//! address is on its own: loopback, another bogon, a fingerprinted sinkhole.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::Measurement;

use super::fingerprints::FingerprintMatch;
use super::observe::{self, Control, Lookup, ResolverKind};
use super::AnalysisContext;

/// What is known about one address a probe resolver returned.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddrFacts {
    /// Loopback or unspecified (and not treated as public).
    pub localhost: bool,
    /// Any special-purpose address (and not treated as public).
    pub bogon: bool,
    /// The control resolved it too.
    pub in_control: bool,
    /// Its ASN (0 unknown).
    pub asn: u32,
    /// Its non-zero ASN is one of the control's addresses' ASNs.
    pub asn_in_control: bool,
    /// A verified TLS handshake for the name reached it (ours or the
    /// control's).
    pub tls_valid: bool,
    /// A TLS handshake for the name to it was refused for its certificate
    /// (ours or the control's): the failure string.
    pub tls_cert_failure: Option<String>,
    /// DNS fingerprints matching it.
    pub fingerprints: Vec<FingerprintMatch>,
}

/// How one lookup's addresses compare with the control's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Validity {
    /// An address is also one of the control's.
    pub ip_overlap: bool,
    /// A non-zero ASN is shared with the control's addresses.
    pub asn_overlap: bool,
    /// An address is TLS-valid for the name.
    pub tls_valid: bool,
}

impl Validity {
    /// OONI's classic test: IP or ASN overlap.
    pub fn classic(&self) -> bool {
        self.ip_overlap || self.asn_overlap
    }

    /// Our test: IP, ASN or TLS.
    pub fn any(&self) -> bool {
        self.ip_overlap || self.asn_overlap || self.tls_valid
    }
}

/// The DNS picture at redirect depth 0.
#[derive(Clone, Debug)]
pub(crate) struct DnsView {
    /// The lookup that decides the headline: the system resolver's, else the
    /// first configured UDP/TCP resolver's, else a DoH one.
    pub primary: Option<Lookup>,
    /// The other resolvers' lookups.
    pub others: Vec<Lookup>,
    /// Facts per address (all resolvers).
    pub facts: BTreeMap<IpAddr, AddrFacts>,
    /// The control's addresses.
    pub control_addrs: Vec<IpAddr>,
    /// The known (non-zero) ASNs of the control's addresses.
    pub control_asns: Vec<u32>,
}

/// Whether a lookup that shares neither an address nor a network with the
/// control (it reached the site only through a middlebox or another node)
/// was diverted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Diversion {
    /// Not applicable: an address or an ASN is shared with the control.
    No,
    /// Every answer's ASN and the control's are known and none is shared:
    /// the name leads outside the site's network.
    Diverted,
    /// ASN data is missing for these addresses: a CDN node of the site and
    /// a middlebox cannot be told apart.
    Unknown(Vec<IpAddr>),
}

/// Loopback or unspecified, unless treated as public.
pub(crate) fn is_localhost(ip: IpAddr, ctx: &AnalysisContext) -> bool {
    let ip = unmap(ip);
    !ctx.is_public_override(ip) && (ip.is_loopback() || ip.is_unspecified())
}

/// Special-purpose (bogon), unless treated as public.
pub(crate) fn is_bogon(ip: IpAddr, ctx: &AnalysisContext) -> bool {
    !ctx.is_public_override(ip) && probes::ipclass::is_special_purpose(ip)
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl DnsView {
    /// Builds the view for the URL's host.
    pub fn build(
        m: &Measurement,
        ctx: &AnalysisContext,
        control: Option<Control<'_>>,
        host: &str,
    ) -> DnsView {
        let control_addrs = control.map(|c| c.addrs()).unwrap_or_default();
        DnsView::build_for(m, ctx, control, host, true, control_addrs)
    }

    /// Builds the view for any name (a redirect hop's too): its lookups
    /// (only depth 0's with `depth0_only`) against `control_addrs`.
    pub fn build_for(
        m: &Measurement,
        ctx: &AnalysisContext,
        control: Option<Control<'_>>,
        host: &str,
        depth0_only: bool,
        control_addrs: Vec<IpAddr>,
    ) -> DnsView {
        let mut all = observe::lookups(m, host, depth0_only);
        let pick = all
            .iter()
            .position(|l| l.kind == ResolverKind::System)
            .or_else(|| {
                all.iter()
                    .position(|l| matches!(l.kind, ResolverKind::Udp | ResolverKind::Tcp))
            })
            .or(if all.is_empty() { None } else { Some(0) });
        let primary = pick.map(|i| all.remove(i));
        let control_asns: Vec<u32> = control_addrs
            .iter()
            .map(|ip| observe::asn_of(m, ctx, control, *ip))
            .filter(|a| *a != 0)
            .collect();
        let mut facts = BTreeMap::new();
        for l in primary.iter().chain(all.iter()) {
            for &ip in &l.addrs {
                facts.entry(ip).or_insert_with(|| {
                    let asn = observe::asn_of(m, ctx, control, ip);
                    let tls = observe::tls_to(m, &[ip], None, host);
                    let local_valid = tls.iter().any(|h| observe::tls_valid(h));
                    let local_bad = tls
                        .iter()
                        .find_map(|h| observe::tls_cert_failure(h))
                        .map(|f| f.to_string());
                    let ctl_valid = control.is_some_and(|c| c.ip_tls_valid(ip, host));
                    let ctl_bad = control
                        .and_then(|c| c.ip_tls_cert_failure(ip, host))
                        .map(str::to_string);
                    AddrFacts {
                        localhost: is_localhost(ip, ctx),
                        bogon: is_bogon(ip, ctx),
                        in_control: control_addrs.contains(&ip),
                        asn,
                        asn_in_control: asn != 0 && control_asns.contains(&asn),
                        tls_valid: local_valid || ctl_valid,
                        tls_cert_failure: if local_valid || ctl_valid {
                            None
                        } else {
                            local_bad.or(ctl_bad)
                        },
                        fingerprints: ctx.fingerprints.match_dns(&ip.to_string(), &ctx.probe_cc),
                    }
                });
            }
        }
        DnsView {
            primary,
            others: all,
            facts,
            control_addrs,
            control_asns,
        }
    }

    /// Whether the lookup's answers were diverted away from the site's
    /// network (judged by ASN; see [`Diversion`]).
    pub fn diversion(&self, l: &Lookup) -> Diversion {
        let v = self.validity(l);
        if v.ip_overlap || v.asn_overlap || l.addrs.is_empty() || self.control_addrs.is_empty() {
            return Diversion::No;
        }
        let mut unknown: Vec<IpAddr> = l
            .addrs
            .iter()
            .copied()
            .filter(|ip| self.fact(*ip).asn == 0)
            .collect();
        if self.control_asns.is_empty() {
            unknown.extend(self.control_addrs.iter().copied());
        }
        if unknown.is_empty() {
            Diversion::Diverted
        } else {
            Diversion::Unknown(unknown)
        }
    }

    /// How a lookup's addresses compare with the control's.
    pub fn validity(&self, l: &Lookup) -> Validity {
        let mut v = Validity::default();
        for ip in &l.addrs {
            if let Some(f) = self.facts.get(ip) {
                v.ip_overlap |= f.in_control;
                v.asn_overlap |= f.asn_in_control;
                v.tls_valid |= f.tls_valid;
            }
        }
        v
    }

    /// Every address of the lookup is loopback.
    pub fn all_localhost(&self, l: &Lookup) -> bool {
        !l.addrs.is_empty() && l.addrs.iter().all(|ip| self.fact(*ip).localhost)
    }

    /// Some address of the lookup is a bogon.
    pub fn any_bogon(&self, l: &Lookup) -> bool {
        l.addrs.iter().any(|ip| self.fact(*ip).bogon)
    }

    /// The control's addresses are all loopback (and there is one).
    pub fn control_all_localhost(&self, ctx: &AnalysisContext) -> bool {
        !self.control_addrs.is_empty() && self.control_addrs.iter().all(|ip| is_localhost(*ip, ctx))
    }

    /// A bogon of the lookup that the control also returned.
    pub fn bogon_shared_with_control(&self, l: &Lookup) -> bool {
        l.addrs
            .iter()
            .any(|ip| self.fact(*ip).bogon && self.fact(*ip).in_control)
    }

    /// DNS fingerprints matching the lookup's addresses and CNAMEs.
    pub fn fingerprints(&self, l: &Lookup, ctx: &AnalysisContext) -> Vec<FingerprintMatch> {
        let mut out: Vec<FingerprintMatch> = Vec::new();
        for ip in &l.addrs {
            for f in &self.fact(*ip).fingerprints {
                if !out.contains(f) {
                    out.push(f.clone());
                }
            }
        }
        for c in &l.cnames {
            for f in ctx.fingerprints.match_dns(c, &ctx.probe_cc) {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// The first certificate failure seen on the lookup's addresses.
    pub fn cert_failure(&self, l: &Lookup) -> Option<(IpAddr, String)> {
        l.addrs
            .iter()
            .find_map(|ip| self.fact(*ip).tls_cert_failure.clone().map(|f| (*ip, f)))
    }

    /// The public addresses other resolvers gave that the lookup did not.
    pub fn others_public_elsewhere(&self, l: &Lookup) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for o in &self.others {
            for ip in &o.addrs {
                let f = self.fact(*ip);
                if !f.bogon && !l.addrs.contains(ip) && !out.contains(ip) {
                    out.push(*ip);
                }
            }
        }
        out
    }

    /// The facts of an address (default when unknown).
    pub fn fact(&self, ip: IpAddr) -> &AddrFacts {
        static NONE: std::sync::OnceLock<AddrFacts> = std::sync::OnceLock::new();
        self.facts
            .get(&ip)
            .unwrap_or_else(|| NONE.get_or_init(AddrFacts::default))
    }
}
