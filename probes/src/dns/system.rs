//! DNS through the system resolver (getaddrinfo).

use std::time::Duration;

use crate::records::{DnsQuery, Trace};

/// Resolves `host` with getaddrinfo (off the async worker threads), recorded
/// as one `ANY` query with engine `getaddrinfo`.
pub async fn lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let _ = (trace, host, timeout);
    todo!("probes: system lookup")
}
