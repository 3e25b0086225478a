//! DNS over UDP to a chosen resolver, built with hickory-proto.

use std::net::SocketAddr;

use super::{DnsOptions, QueryType};
use crate::records::{DnsQuery, Trace};

/// Sends one query for `host`/`qtype` to `resolver` and records the reply
/// (for UDP: every reply that arrives within the listening window).
pub async fn query(
    trace: &Trace,
    resolver: SocketAddr,
    host: &str,
    qtype: QueryType,
    opts: &DnsOptions,
) -> DnsQuery {
    let _ = (trace, resolver, host, qtype, opts);
    todo!("probes: udp query")
}
