//! DNS lookups: the system resolver, raw UDP and TCP queries that keep every
//! reply, and DNS-over-HTTPS. Each returns a [`DnsQuery`](crate::records::DnsQuery).

pub mod doh;
pub mod system;
pub mod tcp;
pub mod udp;
pub mod wire;

use std::time::Duration;

use crate::failure::Failure;
use crate::records::{DnsQuery, DnsReply, Trace};

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

/// A [`DnsQuery`] for `host`/`qtype` to `resolver_address` with `engine`,
/// stamped from `trace`, started at `t0` and ending now, with no answers
/// yet.
pub(crate) fn blank_query(
    trace: &Trace,
    engine: &str,
    resolver_address: String,
    host: &str,
    qtype: QueryType,
    t0: f64,
) -> DnsQuery {
    DnsQuery {
        engine: engine.to_string(),
        hostname: host.to_string(),
        query_type: qtype.as_str().to_string(),
        resolver_address,
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        ..DnsQuery::default()
    }
}

/// Fills the reply-derived fields of `q` from a valid reply.
pub(crate) fn apply_reply(q: &mut DnsQuery, reply: &DnsReply, outcome: Option<Failure>) {
    q.answers = reply.answers.clone();
    q.rcode = Some(reply.rcode);
    q.raw_response = Some(reply.raw.clone());
    q.failure = outcome;
}
