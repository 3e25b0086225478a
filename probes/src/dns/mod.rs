//! DNS lookups: the system resolver, raw UDP and TCP queries that keep every
//! reply, and DNS-over-HTTPS. Each returns a [`DnsQuery`](crate::records::DnsQuery).

pub mod doh;
pub mod system;
pub mod tcp;
pub mod udp;

use std::time::Duration;

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
