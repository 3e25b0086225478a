//! DNS-over-HTTPS (RFC 8484, POST of the wire message).

use std::net::SocketAddr;

use super::{DnsOptions, QueryType};
use crate::records::{DnsQuery, Trace};
use crate::tls::TrustRoots;

/// Where a DoH server is and how to reach it.
#[derive(Clone, Debug)]
pub struct DohServer {
    /// The DoH URL, e.g. `https://dns.example/dns-query`.
    pub url: String,
    /// The address to connect to (the URL's host is used for SNI and Host).
    /// `None`: resolve the URL's host with the system resolver.
    pub addr: Option<SocketAddr>,
}

/// Queries `host`/`qtype` over DoH.
pub async fn query(
    trace: &Trace,
    server: &DohServer,
    host: &str,
    qtype: QueryType,
    roots: &TrustRoots,
    opts: &DnsOptions,
) -> DnsQuery {
    let _ = (trace, server, host, qtype, roots, opts);
    todo!("probes: doh query")
}
