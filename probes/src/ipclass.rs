//! Address classification: bogons and other special-purpose ranges.

use std::net::IpAddr;

/// True for addresses that are not globally routable unicast: loopback,
/// private, link-local, CGNAT, multicast, documentation, benchmarking,
/// reserved, unspecified, and the IPv6 equivalents (IPv4-mapped and other
/// embeddings are unwrapped first).
pub fn is_special_purpose(ip: IpAddr) -> bool {
    let _ = ip;
    todo!("probes: ipclass")
}
