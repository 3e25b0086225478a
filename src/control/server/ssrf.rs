//! Which addresses and ports the control may connect to.
//!
//! The control fetches URLs for strangers, so every address it is about to
//! connect to passes through [`AddressPolicy::check`] first, whatever its
//! origin: the URL itself, a DNS answer, a `tcp_connect` entry or a redirect.
//! Special-purpose addresses (loopback, private, link-local, CGNAT,
//! multicast, documentation, ...) are refused unless the operator allowed
//! their range with `--treat-as-public`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use probes::ipclass::parse_ip_lenient;
use url::Url;

/// The operator's address policy.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    treat_as_public: Vec<IpNet>,
}

/// Why the control refused to connect somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address is special-purpose and not allowed by `--treat-as-public`.
    SpecialPurpose(IpAddr),
    /// The port is neither the URL's own port nor 80/443.
    Port(u16),
    /// A `tcp_connect` entry that is not an `ip:port`.
    NotAnEndpoint(String),
    /// A URL (or redirect target) whose scheme is not http or https.
    Scheme(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SpecialPurpose(ip) => {
                write!(f, "refused: {ip} is a special-purpose address")
            }
            Refusal::Port(p) => {
                write!(f, "refused: port {p} is neither the URL's port nor 80/443")
            }
            Refusal::NotAnEndpoint(s) => write!(f, "refused: {s:?} is not an ip:port endpoint"),
            Refusal::Scheme(s) => write!(f, "refused: scheme {s:?} is not http or https"),
        }
    }
}

impl AddressPolicy {
    /// A policy that treats the given ranges as public.
    pub fn new(treat_as_public: Vec<IpNet>) -> AddressPolicy {
        AddressPolicy { treat_as_public }
    }

    /// True when the control may connect to `ip`.
    pub fn is_public(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.treat_as_public.iter().any(|n| n.contains(&ip))
            || !probes::ipclass::is_special_purpose(ip)
    }

    /// `Ok` when the control may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.is_public(ip) {
            Ok(())
        } else {
            Err(Refusal::SpecialPurpose(ip))
        }
    }
}

/// The control's policy as the shared flow's address check: consulted by
/// `probes::flow` before any socket is opened.
impl probes::flow::AddressCheck for AddressPolicy {
    fn check(&self, addr: std::net::SocketAddr) -> Result<(), String> {
        AddressPolicy::check(self, addr.ip()).map_err(|r| r.to_string())
    }
}

/// The host of a URL: an address, or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetHost {
    /// An IP literal in any of its spellings (decimal, hex, octal, short).
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

impl fmt::Display for TargetHost {
    /// The address in its canonical form, or the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Ip(ip) => write!(f, "{ip}"),
            TargetHost::Name(n) => f.write_str(n),
        }
    }
}

/// The host of an http(s) URL, with every IPv4 spelling recognised as an
/// address (the WHATWG parser already normalises most; names that still
/// parse as numbers are caught here). `None` for a URL without a host.
pub fn target_host(url: &Url) -> Option<TargetHost> {
    match url.host()? {
        url::Host::Ipv4(a) => Some(TargetHost::Ip(IpAddr::V4(a))),
        url::Host::Ipv6(a) => Some(TargetHost::Ip(IpAddr::V6(a).to_canonical())),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.');
            match parse_ip_lenient(d) {
                Some(ip) => Some(TargetHost::Ip(ip.to_canonical())),
                None => Some(TargetHost::Name(d.to_ascii_lowercase())),
            }
        }
    }
}

/// Only http and https URLs are fetched.
pub fn check_scheme(url: &Url) -> Result<(), Refusal> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        s => Err(Refusal::Scheme(s.to_string())),
    }
}

/// The ports the control may use for `url`: its own port and 80/443.
pub fn port_allowed(url: &Url, port: u16) -> bool {
    port == 80 || port == 443 || Some(port) == url.port_or_known_default()
}

/// Parses a `tcp_connect` entry (`1.2.3.4:80`, `[::1]:443`, and lenient
/// IPv4 spellings such as `2130706433:80` or `0x7f.1:80`).
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, Refusal> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(SocketAddr::new(sa.ip().to_canonical(), sa.port()));
    }
    let bad = || Refusal::NotAnEndpoint(s.chars().take(80).collect());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = parse_ip_lenient(host).ok_or_else(bad)?;
    Ok(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_in_every_spelling() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for s in [
            "127.0.0.1:80",
            "2130706433:80",
            "0x7f000001:80",
            "0177.0.0.1:80",
            "127.1:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(parse_endpoint(s), Ok(SocketAddr::new(lo, 80)), "{s}");
        }
        assert!(matches!(
            parse_endpoint("example.org:80"),
            Err(Refusal::NotAnEndpoint(_))
        ));
        assert!(parse_endpoint("1.2.3.4").is_err());
    }

    #[test]
    fn policy_refuses_special_and_honours_allowed_ranges() {
        let p = AddressPolicy::new(vec!["127.0.0.2/32".parse().unwrap()]);
        assert!(p.check("127.0.0.1".parse().unwrap()).is_err());
        assert!(p.check("::ffff:127.0.0.1".parse().unwrap()).is_err());
        assert!(p.check("169.254.169.254".parse().unwrap()).is_err());
        assert!(p.check("10.1.2.3".parse().unwrap()).is_err());
        assert!(p.check("127.0.0.2".parse().unwrap()).is_ok());
        assert!(p.check("::ffff:127.0.0.2".parse().unwrap()).is_ok());
        assert!(p.check("8.8.8.8".parse().unwrap()).is_ok());
    }

    #[test]
    fn policy_refuses_every_ipv6_encoding_of_a_special_address() {
        let p = AddressPolicy::new(vec!["127.0.0.2/32".parse().unwrap()]);
        for e in [
            "[::1]:443",
            "[::]:443",
            "[fe80::1]:443",
            "[fe80::1%25eth0]:443",
            "[fd00::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[::ffff:7f00:1]:443",
            "[::ffff:10.0.0.1]:443",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::127.0.0.1]:443",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:7f00:1::]:443",
            "[2002:a00:1::]:443",
            "[::127.0.0.1]:443",
            "[2001:db8::1]:443",
            "[ff02::1]:443",
        ] {
            let refused = match parse_endpoint(e) {
                Ok(sa) => p.check(sa.ip()).is_err(),
                Err(_) => true,
            };
            assert!(refused, "{e} must be refused");
        }
        for u in [
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[2001:db8::1]/",
            "http://[ff02::1]/",
            "http://[::]/",
        ] {
            let Some(TargetHost::Ip(ip)) = target_host(&Url::parse(u).unwrap()) else {
                panic!("{u}: not an address");
            };
            assert!(p.check(ip).is_err(), "{u} must be refused");
        }
        // An allowed IPv4 address stays allowed when IPv4-mapped, and a
        // global IPv6 address is public.
        assert!(p
            .check(parse_endpoint("[::ffff:127.0.0.2]:80").unwrap().ip())
            .is_ok());
        assert!(p.check("2001:4860:4860::8888".parse().unwrap()).is_ok());
    }

    #[test]
    fn url_hosts_in_numeric_spellings_are_addresses() {
        let lo = TargetHost::Ip("127.0.0.1".parse().unwrap());
        for u in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let url = Url::parse(u).unwrap();
            assert_eq!(target_host(&url), Some(lo.clone()), "{u}");
        }
        let url = Url::parse("http://Example.ORG./").unwrap();
        assert_eq!(
            target_host(&url),
            Some(TargetHost::Name("example.org".into()))
        );
    }
}
