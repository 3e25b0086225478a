//! DNS lookups: the system resolver, raw UDP and TCP queries that keep every
//! reply, and DNS-over-HTTPS. Each returns a [`DnsQuery`](crate::records::DnsQuery).

pub mod doh;
pub mod system;
pub mod tcp;
pub mod udp;
pub mod wire;

use std::time::Duration;

use crate::records::{DnsQuery, Trace};

/// The query types we ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
}

impl QueryType {
    /// `A` or `AAAA`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryType::A => "A",
            QueryType::Aaaa => "AAAA",
        }
    }
}

/// Options for a lookup to a chosen resolver.
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// How long to wait for the first reply.
    pub timeout: Duration,
    /// How long to keep listening after the first reply (UDP), to catch
    /// injected or duplicate replies.
    pub listen_after_first: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            timeout: Duration::from_secs(4),
            listen_after_first: Duration::from_millis(500),
        }
    }
}

/// Starts a lookup of `host`/`qtype` to `resolver_address` with `engine`:
/// the record (stamped from `trace`, `t0` and `t` now, no answers yet) and
/// the wire query with `id` (random when `None`). When `host` cannot be
/// put in a query there is no wire query and the record has that failure.
pub(crate) fn start_query(
    trace: &Trace,
    engine: &str,
    resolver_address: String,
    host: &str,
    qtype: QueryType,
    id: Option<u16>,
) -> (DnsQuery, Option<wire::WireQuery>) {
    let t0 = trace.clock.now();
    let mut q = DnsQuery {
        engine: engine.to_string(),
        hostname: host.to_string(),
        query_type: qtype.as_str().to_string(),
        resolver_address,
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        ..DnsQuery::default()
    };
    match wire::build_query(host, qtype, id) {
        Ok(wq) => (q, Some(wq)),
        Err(f) => {
            q.failure = Some(f);
            (q, None)
        }
    }
}
