//! DNS through the system resolver (getaddrinfo).
//!
//! getaddrinfo blocks and cannot be cancelled, so it runs on tokio's blocking
//! pool behind a process-wide semaphore ([`MAX_CONCURRENT_LOOKUPS`]); when
//! our deadline expires the lookup is recorded as `generic_timeout_error`
//! and the abandoned thread keeps its permit until getaddrinfo returns, so a
//! stuck resolver cannot exhaust the pool.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dns_lookup::{AddrInfoHints, LookupError, LookupErrorKind};
use tokio::sync::Semaphore;

use crate::failure::Failure;
use crate::records::{DnsAnswer, DnsQuery, Trace};

/// At most this many getaddrinfo calls run at once in the process.
pub const MAX_CONCURRENT_LOOKUPS: usize = 32;

/// Resolves `host` with getaddrinfo (off the async worker threads), recorded
/// as one `ANY` query with engine `getaddrinfo`.
///
/// Failures: `dns_nxdomain_error` (EAI_NONAME), `dns_no_answer` (EAI_NODATA
/// or no address), `dns_temporary_failure` (EAI_AGAIN),
/// `dns_non_recoverable_failure` (EAI_FAIL), `generic_timeout_error` (our
/// deadline, which includes waiting for a semaphore permit). The raw
/// getaddrinfo return code is kept in `getaddrinfo_error`.
pub async fn lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let t0 = trace.clock.now();
    let name = ascii_name(host);
    let work = async move {
        let permit = semaphore().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            resolve_blocking(&name)
        })
        .await
    };
    let (addrs, failure, gai_error) = match tokio::time::timeout(timeout, work).await {
        Err(_) => (Vec::new(), Some(Failure::GenericTimeout), None),
        Ok(Err(join)) => (Vec::new(), Some(Failure::Unknown(join.to_string())), None),
        Ok(Ok(Ok(addrs))) if addrs.is_empty() => (addrs, Some(Failure::DnsNoAnswer), None),
        Ok(Ok(Ok(addrs))) => (addrs, None, None),
        Ok(Ok(Err(e))) => (
            Vec::new(),
            Some(map_gai_error(&e)),
            Some(e.error_num() as i64),
        ),
    };
    DnsQuery {
        answers: addrs.into_iter().map(answer_for).collect(),
        engine: "getaddrinfo".to_string(),
        failure,
        getaddrinfo_error: gai_error,
        hostname: host.to_string(),
        query_type: "ANY".to_string(),
        raw_response: None,
        rcode: None,
        resolver_address: String::new(),
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        x_replies: Vec::new(),
        x_attempts: 0,
    }
}

/// The name getaddrinfo is given: internationalised names in punycode
/// (glibc does not convert them by default); anything else unchanged.
fn ascii_name(host: &str) -> String {
    if host.is_ascii() {
        return host.to_string();
    }
    match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) => d,
        _ => host.to_string(),
    }
}

/// Maps a getaddrinfo error to OONI's vocabulary.
pub fn map_gai_error(e: &LookupError) -> Failure {
    match e.kind() {
        LookupErrorKind::NoName => Failure::DnsNxdomain,
        LookupErrorKind::NoData => Failure::DnsNoAnswer,
        LookupErrorKind::Again => Failure::DnsTemporaryFailure,
        LookupErrorKind::Fail => Failure::DnsNonRecoverableFailure,
        other => Failure::Unknown(format!("getaddrinfo: {other:?} ({})", e.error_num())),
    }
}

fn semaphore() -> Arc<Semaphore> {
    static SEM: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(SEM.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS))))
}

/// Runs getaddrinfo; distinct addresses in the order returned.
fn resolve_blocking(host: &str) -> Result<Vec<IpAddr>, LookupError> {
    let hints = AddrInfoHints {
        flags: 0,
        address: 0,
        socktype: libc::SOCK_STREAM,
        protocol: 0,
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for ai in dns_lookup::getaddrinfo(Some(host), None, Some(hints))?.flatten() {
        let ip = ai.sockaddr.ip();
        if seen.insert(ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

fn answer_for(ip: IpAddr) -> DnsAnswer {
    match ip {
        IpAddr::V4(v4) => DnsAnswer {
            answer_type: "A".to_string(),
            ipv4: Some(v4.to_string()),
            ..DnsAnswer::default()
        },
        IpAddr::V6(v6) => DnsAnswer {
            answer_type: "AAAA".to_string(),
            ipv6: Some(v6.to_string()),
            ..DnsAnswer::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_localhost_literal() {
        let trace = Trace::new();
        let q = lookup(&trace, "127.0.0.1", Duration::from_secs(2)).await;
        assert_eq!(q.failure, None);
        assert_eq!(q.engine, "getaddrinfo");
        assert_eq!(q.query_type, "ANY");
        assert_eq!(q.addrs(), vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn idn_names_become_punycode() {
        assert_eq!(ascii_name("example.org"), "example.org");
        assert!(ascii_name("តេស្ត.ខ្មែរ").starts_with("xn--"));
    }

    #[test]
    fn maps_gai_codes() {
        assert_eq!(
            map_gai_error(&LookupError::new(libc::EAI_NONAME)),
            Failure::DnsNxdomain
        );
        assert_eq!(
            map_gai_error(&LookupError::new(libc::EAI_AGAIN)),
            Failure::DnsTemporaryFailure
        );
        assert_eq!(
            map_gai_error(&LookupError::new(libc::EAI_FAIL)),
            Failure::DnsNonRecoverableFailure
        );
    }
}
