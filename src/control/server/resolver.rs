//! The control's own DNS: which resolver (`--resolver`) and the lookup of a
//! URL's host, A and AAAA, with the `probes` DNS code.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use probes::dns::{DnsOptions, QueryType};
use probes::records::{DnsQuery, Trace};
use probes::tls::TrustRoots;
use probes::Failure;

use crate::control::protocol::ControlDns;

/// Where the control sends its DNS queries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResolverSpec {
    /// getaddrinfo (the default).
    #[default]
    System,
    /// Plain DNS over UDP to this server.
    Udp(SocketAddr),
    /// Plain DNS over TCP to this server.
    Tcp(SocketAddr),
    /// DNS-over-HTTPS to this URL.
    Doh(String),
}

/// A `--resolver` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid resolver {value:?}: expected `system`, IP[:PORT], tcp://IP[:PORT] or an https:// DoH URL")]
pub struct ResolverSpecError {
    /// What was given.
    pub value: String,
}

impl FromStr for ResolverSpec {
    type Err = ResolverSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ResolverSpecError {
            value: s.to_string(),
        };
        if s == "system" || s.is_empty() {
            return Ok(ResolverSpec::System);
        }
        if s.starts_with("https://") {
            url::Url::parse(s).map_err(|_| err())?;
            return Ok(ResolverSpec::Doh(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            return parse_server(rest).map(ResolverSpec::Tcp).ok_or_else(err);
        }
        let rest = s.strip_prefix("udp://").unwrap_or(s);
        parse_server(rest).map(ResolverSpec::Udp).ok_or_else(err)
    }
}

impl fmt::Display for ResolverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolverSpec::System => f.write_str("system"),
            ResolverSpec::Udp(a) => write!(f, "{a}"),
            ResolverSpec::Tcp(a) => write!(f, "tcp://{a}"),
            ResolverSpec::Doh(u) => f.write_str(u),
        }
    }
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 by default.
fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let ip: IpAddr = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s)
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 53))
}

/// The outcome of resolving one host.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// The answer in the protocol's shape (OONI's failure names).
    pub dns: ControlDns,
    /// The addresses, parsed, in answer order without duplicates.
    pub addrs: Vec<IpAddr>,
    /// The failure in our full vocabulary (for the redirect chain), when no
    /// address came back.
    pub failure: Option<Failure>,
}

/// Resolves `host` (A and AAAA) through `spec`.
pub async fn resolve(
    spec: &ResolverSpec,
    trace: &Trace,
    host: &str,
    roots: &TrustRoots,
    timeout: Duration,
) -> Resolution {
    let opts = DnsOptions {
        timeout,
        listen_after_first: Duration::ZERO,
    };
    let queries: Vec<DnsQuery> = match spec {
        ResolverSpec::System => vec![probes::dns::system::lookup(trace, host, timeout).await],
        ResolverSpec::Udp(a) => {
            let (x, y) = tokio::join!(
                probes::dns::udp::query(trace, *a, host, QueryType::A, &opts),
                probes::dns::udp::query(trace, *a, host, QueryType::Aaaa, &opts)
            );
            vec![x, y]
        }
        ResolverSpec::Tcp(a) => {
            let (x, y) = tokio::join!(
                probes::dns::tcp::query(trace, *a, host, QueryType::A, &opts),
                probes::dns::tcp::query(trace, *a, host, QueryType::Aaaa, &opts)
            );
            vec![x, y]
        }
        ResolverSpec::Doh(u) => {
            let server = probes::dns::doh::DohServer {
                url: u.clone(),
                addr: None,
            };
            let (x, y) = tokio::join!(
                probes::dns::doh::query(trace, &server, host, QueryType::A, roots, &opts),
                probes::dns::doh::query(trace, &server, host, QueryType::Aaaa, roots, &opts)
            );
            vec![x, y]
        }
    };
    combine(&queries)
}

/// Merges the A and AAAA lookups: the union of addresses; when there is
/// none, the first lookup's failure (A before AAAA).
fn combine(queries: &[DnsQuery]) -> Resolution {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for q in queries {
        for ip in q.addrs() {
            let ip = ip.to_canonical();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    let failure = if addrs.is_empty() {
        queries.iter().find_map(|q| q.failure.clone())
    } else {
        None
    };
    let dns = ControlDns {
        failure: failure
            .as_ref()
            .and_then(|f| f.helper_dns().map(str::to_string)),
        addrs: addrs.iter().map(IpAddr::to_string).collect(),
    };
    Resolution {
        dns,
        addrs,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolver_specs() {
        assert_eq!(
            "system".parse::<ResolverSpec>().unwrap(),
            ResolverSpec::System
        );
        assert_eq!(
            "9.9.9.9".parse::<ResolverSpec>().unwrap(),
            ResolverSpec::Udp("9.9.9.9:53".parse().unwrap())
        );
        assert_eq!(
            "127.0.0.1:5353".parse::<ResolverSpec>().unwrap(),
            ResolverSpec::Udp("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            "tcp://[2001:db8::1]".parse::<ResolverSpec>().unwrap(),
            ResolverSpec::Tcp("[2001:db8::1]:53".parse().unwrap())
        );
        assert_eq!(
            "https://dns.example/dns-query"
                .parse::<ResolverSpec>()
                .unwrap(),
            ResolverSpec::Doh("https://dns.example/dns-query".into())
        );
        assert!("dns.example".parse::<ResolverSpec>().is_err());
    }
}
