//! The measurement regrouped for analysis: the URL's parts, each resolver's
//! lookup of a name, the TCP/TLS results per endpoint, and the control's
//! answer with lookups by endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use probes::failure::Failure;
use probes::records::{DnsQuery, HttpTransaction, TcpConnect, TlsHandshake};
use url::Url;

use crate::control::protocol::{ControlIpInfo, ControlResponse, ControlTcp, ControlTls};
use crate::model::Measurement;

use super::AnalysisContext;

/// The URL being measured.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The parsed URL.
    pub url: Url,
    /// Lower-case host without brackets or a trailing dot.
    pub host: String,
    /// The host when it is an IP literal.
    pub host_ip: Option<IpAddr>,
    /// The port (explicit or the scheme's).
    pub port: u16,
    /// `https`.
    pub https: bool,
}

impl Target {
    /// Parses a URL; `None` when it is not http(s) or has no host.
    pub fn parse(s: &str) -> Option<Target> {
        let url = Url::parse(s).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let (host, host_ip) = match url.host()? {
            url::Host::Domain(d) => (norm_name(d), None),
            url::Host::Ipv4(ip) => (ip.to_string(), Some(IpAddr::V4(ip))),
            url::Host::Ipv6(ip) => (ip.to_string(), Some(IpAddr::V6(ip))),
        };
        let port = url.port_or_known_default()?;
        let https = url.scheme() == "https";
        Some(Target {
            url,
            host,
            host_ip,
            port,
            https,
        })
    }
}

/// Lower-case, without a trailing dot.
pub(crate) fn norm_name(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

/// Which kind of resolver answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ResolverKind {
    /// getaddrinfo.
    System,
    /// DNS over UDP.
    Udp,
    /// DNS over TCP.
    Tcp,
    /// DNS over HTTPS.
    Doh,
}

/// One resolver's answer for one name (its A, AAAA or getaddrinfo queries
/// merged).
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    /// The kind of resolver.
    pub kind: ResolverKind,
    /// `ip:port`, a DoH URL, or empty for the system resolver.
    pub resolver: String,
    /// Distinct addresses answered.
    pub addrs: Vec<IpAddr>,
    /// CNAME targets answered.
    pub cnames: Vec<String>,
    /// Set when no address came back: the most telling failure
    /// (`dns_no_answer` when the replies were empty).
    pub failure: Option<Failure>,
    /// True when UDP replies disagreed (a racing injected reply) or the
    /// measurement recorded DNS injection evidence for the name.
    pub injected: bool,
    /// The disagreeing replies, as `source: answers` strings.
    pub reply_notes: Vec<String>,
    /// How many times the least-tried query of this lookup went out (1
    /// unless it was resent after a silence).
    pub attempts: u32,
}

impl Lookup {
    /// A human name for the resolver, e.g. "the system resolver" or
    /// "resolver 198.51.100.53:53 (udp)".
    pub fn label(&self, system_egress: Option<&str>) -> String {
        match self.kind {
            ResolverKind::System => match system_egress {
                Some(e) if !e.is_empty() => format!("the system resolver (egress {e})"),
                _ => "the system resolver".to_string(),
            },
            ResolverKind::Udp => format!("resolver {} (udp)", self.resolver),
            ResolverKind::Tcp => format!("resolver {} (tcp)", self.resolver),
            ResolverKind::Doh => format!("DoH resolver {}", self.resolver),
        }
    }

    /// The addresses as a readable list.
    pub fn addrs_text(&self) -> String {
        join_ips(&self.addrs)
    }
}

/// `a, b and c`.
pub(crate) fn join_ips(ips: &[IpAddr]) -> String {
    let v: Vec<String> = ips.iter().map(ToString::to_string).collect();
    join_words(&v)
}

/// `a, b and c`.
pub(crate) fn join_words(v: &[String]) -> String {
    match v.len() {
        0 => "nothing".to_string(),
        1 => v[0].clone(),
        n => format!("{} and {}", v[..n - 1].join(", "), v[n - 1]),
    }
}

/// The depth tag of a record (`depth=N`), if any.
fn depth_of(tags: &[String]) -> Option<u32> {
    tags.iter()
        .find_map(|t| t.strip_prefix("depth=").and_then(|d| d.parse().ok()))
}

/// Every resolver's lookup of `name`, the system resolver first. With
/// `depth0_only`, queries tagged with a redirect depth other than 0 are left
/// out (untagged queries count).
pub(crate) fn lookups(m: &Measurement, name: &str, depth0_only: bool) -> Vec<Lookup> {
    let name = norm_name(name);
    let mut groups: BTreeMap<(ResolverKind, String), Vec<&DnsQuery>> = BTreeMap::new();
    for q in &m.test_keys.queries {
        if norm_name(&q.hostname) != name {
            continue;
        }
        if depth0_only && depth_of(&q.tags).is_some_and(|d| d != 0) {
            continue;
        }
        // A lookup our own limits kept from running measured nothing.
        if q.failure == Some(Failure::ProbeResourceLimit) {
            continue;
        }
        let kind = match q.engine.as_str() {
            "getaddrinfo" | "system" => ResolverKind::System,
            "tcp" => ResolverKind::Tcp,
            "doh" => ResolverKind::Doh,
            _ => ResolverKind::Udp,
        };
        groups
            .entry((kind, q.resolver_address.clone()))
            .or_default()
            .push(q);
    }
    // Injection evidence from the measurement: `host [TYPE] [@resolver]`.
    let injected_targets: BTreeSet<(String, String)> = m
        .test_keys
        .x_injection
        .iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "dns.duplicate_replies" | "dns.non_resolver_answer"
            )
        })
        .map(|e| {
            let mut words = e.target.split_whitespace();
            let host = norm_name(words.next().unwrap_or(""));
            let resolver = words
                .find_map(|w| w.strip_prefix('@'))
                .unwrap_or("")
                .to_string();
            (host, resolver)
        })
        .collect();
    groups
        .into_iter()
        .map(|((kind, resolver), qs)| {
            let mut addrs: Vec<IpAddr> = Vec::new();
            let mut cnames = Vec::new();
            for q in &qs {
                for a in &q.answers {
                    if let Some(ip) = a.ip() {
                        if !addrs.contains(&ip) {
                            addrs.push(ip);
                        }
                    } else if let Some(h) = &a.hostname {
                        cnames.push(norm_name(h));
                    }
                }
            }
            let failure = if addrs.is_empty() {
                Some(pick_failure(&qs))
            } else {
                None
            };
            let (mut injected, reply_notes) = racing_replies(&qs);
            if kind != ResolverKind::System
                && injected_targets
                    .iter()
                    .any(|(h, r)| *h == name && (r.is_empty() || *r == resolver))
            {
                injected = true;
            }
            let attempts = qs.iter().map(|q| q.attempts()).min().unwrap_or(1);
            Lookup {
                kind,
                resolver,
                addrs,
                cnames,
                failure,
                injected,
                reply_notes,
                attempts,
            }
        })
        .collect()
}

/// The failure of a lookup that gave no address: an A (or getaddrinfo)
/// failure first, an AAAA one otherwise, `dns_no_answer` for empty replies.
fn pick_failure(qs: &[&DnsQuery]) -> Failure {
    let mut best: Option<&Failure> = None;
    for q in qs {
        if let Some(f) = &q.failure {
            let prefer = q.query_type != "AAAA" || best.is_none();
            if prefer && best.is_none_or(|b| *b == Failure::DnsNoAnswer) {
                best = Some(f);
            }
        }
    }
    best.cloned().unwrap_or(Failure::DnsNoAnswer)
}

/// Whether the UDP replies to one query disagree (different answer sets or
/// rcodes): the mark of an injected reply racing the genuine one.
fn racing_replies(qs: &[&DnsQuery]) -> (bool, Vec<String>) {
    let mut notes = Vec::new();
    let mut injected = false;
    for q in qs {
        let usable: Vec<_> = q.x_replies.iter().filter(|r| r.failure.is_none()).collect();
        if usable.len() < 2 {
            continue;
        }
        let key = |r: &probes::records::DnsReply| {
            let mut v: Vec<String> = r
                .answers
                .iter()
                .filter_map(|a| a.ip().map(|i| i.to_string()))
                .collect();
            v.sort();
            (r.rcode, v)
        };
        let first = key(usable[0]);
        if usable.iter().any(|r| key(r) != first) {
            injected = true;
            for r in &usable {
                let (rcode, ips) = key(r);
                let what = if ips.is_empty() {
                    format!("rcode {rcode}")
                } else {
                    ips.join(", ")
                };
                notes.push(format!("{} answered {what}", r.source));
            }
        }
    }
    (injected, notes)
}

/// The TCP connects to any of `ips` on `port`.
pub(crate) fn tcp_to<'a>(m: &'a Measurement, ips: &[IpAddr], port: u16) -> Vec<&'a TcpConnect> {
    m.test_keys
        .tcp_connect
        .iter()
        .filter(|c| c.port == port && c.ip.parse::<IpAddr>().is_ok_and(|ip| ips.contains(&ip)))
        .collect()
}

/// The TLS handshakes to any of `ips` on `port` (any port when `None`) with
/// SNI `name`.
pub(crate) fn tls_to<'a>(
    m: &'a Measurement,
    ips: &[IpAddr],
    port: Option<u16>,
    name: &str,
) -> Vec<&'a TlsHandshake> {
    m.test_keys
        .tls_handshakes
        .iter()
        .filter(|h| {
            norm_name(&h.server_name) == name
                && h.address
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| port.is_none_or(|p| a.port() == p) && ips.contains(&a.ip()))
        })
        .collect()
}

/// True when the handshake succeeded and the chain verified for the name.
pub(crate) fn tls_valid(h: &TlsHandshake) -> bool {
    h.failure.is_none()
        && h.x_certificate_failure.is_none()
        && (!h.no_tls_verify || !h.x_verify_as.is_empty())
}

/// The certificate problem of a handshake, if the chain was refused.
pub(crate) fn tls_cert_failure(h: &TlsHandshake) -> Option<&Failure> {
    match (&h.failure, &h.x_certificate_failure) {
        (Some(f), _) if f.is_certificate_error() => Some(f),
        (_, Some(f)) => Some(f),
        _ => None,
    }
}

/// The IP of a TLS handshake's or HTTP transaction's `ip:port`.
pub(crate) fn addr_ip(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .or_else(|| address.parse().ok())
}

/// The control's answer with lookups by endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Control<'a> {
    /// The raw answer.
    pub r: &'a ControlResponse,
}

impl<'a> Control<'a> {
    /// The control's addresses for the URL's host.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.r
            .dns
            .addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// The control's DNS failure (`dns_name_error`, ...).
    pub fn dns_failure(&self) -> Option<&'a str> {
        self.r.dns.failure.as_deref()
    }

    /// The control's TCP result for an endpoint.
    pub fn tcp(&self, ep: SocketAddr) -> Option<&'a ControlTcp> {
        self.r.tcp_connect.get(&ep.to_string())
    }

    /// The control's TLS result for an endpoint, if it used SNI `name`.
    pub fn tls(&self, ep: SocketAddr, name: &str) -> Option<&'a ControlTls> {
        self.r
            .tls_handshake
            .get(&ep.to_string())
            .filter(|t| t.server_name.is_empty() || norm_name(&t.server_name) == name)
    }

    /// The control's TLS results for any port of this IP with SNI `name`.
    fn tls_of_ip(&self, ip: IpAddr, name: &str) -> impl Iterator<Item = &'a ControlTls> + 'a {
        let name = name.to_string();
        self.r.tls_handshake.iter().filter_map(move |(k, t)| {
            let same_ip = k.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip);
            let same_name = t.server_name.is_empty() || norm_name(&t.server_name) == name;
            (same_ip && same_name).then_some(t)
        })
    }

    /// True when the control says this IP is TLS-valid for the name (its
    /// `ip_info` flag 8, or a verified handshake).
    pub fn ip_tls_valid(&self, ip: IpAddr, name: &str) -> bool {
        self.r
            .ip_info
            .get(&ip.to_string())
            .is_some_and(|i| i.flags & ControlIpInfo::FLAG_TLS_VALID != 0)
            || self.tls_of_ip(ip, name).any(|t| t.status)
    }

    /// The control's TLS certificate failure on this IP, if any.
    pub fn ip_tls_cert_failure(&self, ip: IpAddr, name: &str) -> Option<&'a str> {
        self.tls_of_ip(ip, name)
            .find_map(|t| t.failure.as_deref())
            .filter(|f| f.starts_with("ssl_"))
    }

    /// The control fetched the final page.
    pub fn http_ok(&self) -> bool {
        self.r.http_request.failure.is_none() && self.r.http_request.status_code > 0
    }

    /// The control's ASN for an IP (0 unknown), from its `ip_info`.
    pub fn asn(&self, ip: IpAddr) -> u32 {
        self.r
            .ip_info
            .get(&ip.to_string())
            .map(|i| i.asn)
            .unwrap_or(0)
    }
}

/// The ASN of an IP: the control's `ip_info`, then the context's database,
/// then the probe's own DNS records. 0 when unknown.
pub(crate) fn asn_of(
    m: &Measurement,
    ctx: &AnalysisContext,
    control: Option<Control<'_>>,
    ip: IpAddr,
) -> u32 {
    if let Some(a) = control.map(|c| c.asn(ip)).filter(|a| *a != 0) {
        return a;
    }
    if let Some(a) = ctx.asn(ip).filter(|a| *a != 0) {
        return a;
    }
    m.test_keys
        .queries
        .iter()
        .flat_map(|q| q.answers.iter())
        .find(|a| a.ip() == Some(ip))
        .and_then(|a| a.asn)
        .unwrap_or(0)
}

/// The body of a response as text (lossy).
pub(crate) fn body_text(tx: &HttpTransaction) -> String {
    String::from_utf8_lossy(&tx.response.body.to_bytes()).into_owned()
}

/// The body length of a response: the recorded length, else the body's.
pub(crate) fn body_len(tx: &HttpTransaction) -> u64 {
    if tx.response.x_body_length > 0 {
        tx.response.x_body_length
    } else {
        tx.response.body.to_bytes().len() as u64
    }
}

/// A response's title: the recorded one, else the first `<title>` of the
/// body (at most 512 characters).
pub(crate) fn title_of(tx: &HttpTransaction) -> String {
    if let Some(t) = &tx.response.x_title {
        return t.clone();
    }
    extract_title(&body_text(tx))
}

/// The first `<title>` of an HTML text.
pub(crate) fn extract_title(body: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(?is)<title>([^<]{1,512})</title>").expect("title regex")
    });
    re.captures(body)
        .and_then(|c| c.get(1))
        .map(|t| t.as_str().trim().to_string())
        .unwrap_or_default()
}
