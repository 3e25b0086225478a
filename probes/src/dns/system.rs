//! DNS through the system resolver (getaddrinfo).
//!
//! getaddrinfo blocks and cannot be cancelled. Each call runs on its own
//! detached thread, so a stuck call never holds up the async runtime or the
//! process's exit. Two limits keep this bounded without letting one bad
//! name starve the others:
//!
//! - **Slots** ([`MAX_CONCURRENT_LOOKUPS`]): calls we are waiting for. A
//!   lookup waits at most its timeout for a slot, then gets its full
//!   timeout to run; when that expires it is recorded as
//!   `generic_timeout_error` and its slot is released at once, while the
//!   thread stays detached until getaddrinfo returns.
//! - **Threads** ([`MAX_LOOKUP_THREADS`]): calls still inside getaddrinfo,
//!   abandoned ones included. Only when that many are stuck does a lookup
//!   fail at once.
//!
//! A lookup that never ran because of these limits (no slot within its
//! timeout, too many stuck threads, no thread could be started) is recorded
//! as `x_probe_resource_limit`: our own limit, not a network failure.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dns_lookup::{AddrInfoHints, LookupError, LookupErrorKind};
use tokio::sync::{oneshot, Semaphore};

use crate::failure::Failure;
use crate::records::{DnsAnswer, DnsQuery, Trace};

/// At most this many getaddrinfo calls are waited for at once in the
/// process (calls given up on no longer count).
pub const MAX_CONCURRENT_LOOKUPS: usize = 32;

/// At most this many threads are inside getaddrinfo at once, the ones
/// abandoned after a timeout included.
pub const MAX_LOOKUP_THREADS: usize = 256;

/// What runs in a lookup thread: getaddrinfo, or a stand-in in tests.
type ResolveFn = fn(&str) -> Result<Vec<IpAddr>, LookupError>;

/// The two limits of one lookup pool (the process has one).
struct Pool {
    slots: Arc<Semaphore>,
    threads: Arc<Semaphore>,
    resolve: ResolveFn,
}

impl Pool {
    fn new(slots: usize, threads: usize, resolve: ResolveFn) -> Pool {
        Pool {
            slots: Arc::new(Semaphore::new(slots)),
            threads: Arc::new(Semaphore::new(threads)),
            resolve,
        }
    }

    /// Runs one lookup under the pool's limits.
    async fn run(&self, name: String, timeout: Duration) -> Outcome {
        let slot =
            match tokio::time::timeout(timeout, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Outcome::Limit("no free getaddrinfo slot within the lookup timeout"),
            };
        let Ok(thread_permit) = Arc::clone(&self.threads).try_acquire_owned() else {
            return Outcome::Limit("too many getaddrinfo calls stuck in the system resolver");
        };
        let (tx, rx) = oneshot::channel();
        let resolve = self.resolve;
        let spawned = std::thread::Builder::new()
            .name("getaddrinfo".into())
            .spawn(move || {
                let _permit = thread_permit;
                let _ = tx.send(resolve(&name));
            });
        if spawned.is_err() {
            return Outcome::Limit("cannot start a getaddrinfo thread");
        }
        let got = tokio::time::timeout(timeout, rx).await;
        drop(slot);
        match got {
            Err(_) => Outcome::Timeout,
            Ok(Err(_)) => Outcome::Failed(Failure::Unknown("getaddrinfo thread ended".into())),
            Ok(Ok(r)) => Outcome::Done(r),
        }
    }
}

/// How a pooled lookup ended.
enum Outcome {
    Done(Result<Vec<IpAddr>, LookupError>),
    Timeout,
    Limit(&'static str),
    Failed(Failure),
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(MAX_CONCURRENT_LOOKUPS, MAX_LOOKUP_THREADS, resolve_blocking))
}

/// Whether the process's lookup pool has room to spare: more than half of
/// its slots and threads are free. Extra tries of a lookup (resends on a
/// lossy line) start only then, so they never take the room a first
/// lookup of another name needs.
pub fn spare_capacity() -> bool {
    let p = pool();
    p.slots.available_permits() > MAX_CONCURRENT_LOOKUPS / 2
        && p.threads.available_permits() > MAX_LOOKUP_THREADS / 2
}

/// Resolves `host` with getaddrinfo (on a thread of its own), recorded as
/// one `ANY` query with engine `getaddrinfo`.
///
/// Failures: `dns_nxdomain_error` (EAI_NONAME), `dns_no_answer` (EAI_NODATA
/// or no address), `dns_temporary_failure` (EAI_AGAIN),
/// `dns_non_recoverable_failure` (EAI_FAIL), `generic_timeout_error` (the
/// call ran for `timeout` without an answer), `x_probe_resource_limit` (the
/// call never ran because of our own limits; see the module docs). The raw
/// getaddrinfo return code is kept in `getaddrinfo_error`.
pub async fn lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    lookup_in(pool(), trace, host, timeout).await
}

async fn lookup_in(pool: &Pool, trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let t0 = trace.clock.now();
    let name = ascii_name(host);
    let (addrs, failure, gai_error) = match pool.run(name, timeout).await {
        Outcome::Timeout => (Vec::new(), Some(Failure::GenericTimeout), None),
        Outcome::Limit(why) => {
            tracing::debug!("system resolver skipped: {why}");
            (Vec::new(), Some(Failure::ProbeResourceLimit), None)
        }
        Outcome::Failed(f) => (Vec::new(), Some(f), None),
        Outcome::Done(Ok(addrs)) if addrs.is_empty() => (addrs, Some(Failure::DnsNoAnswer), None),
        Outcome::Done(Ok(addrs)) => (addrs, None, None),
        Outcome::Done(Err(e)) => (
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

    /// Names that reached the stand-in resolver.
    static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    /// A resolver that never answers for `hang-*` names (like one stuck on
    /// a silent DNS server) and answers 192.0.2.1 for the rest.
    fn stand_in(name: &str) -> Result<Vec<IpAddr>, LookupError> {
        STARTED.lock().unwrap().push(name.to_string());
        if name.starts_with("hang-") {
            loop {
                std::thread::park();
            }
        }
        Ok(vec!["192.0.2.1".parse().unwrap()])
    }

    async fn until_started(names: &[&str]) {
        while !names
            .iter()
            .all(|n| STARTED.lock().unwrap().iter().any(|s| s == n))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn stuck_calls_release_their_slot_at_their_timeout() {
        // 2 slots, 45 threads: 40 names that never answer, then good ones.
        let pool = Pool::new(2, 45, stand_in);
        let trace = Trace::new();
        for i in 0..40 {
            let q = lookup_in(
                &pool,
                &trace,
                &format!("hang-a{i}.example"),
                Duration::from_millis(20),
            )
            .await;
            assert_eq!(q.failure, Some(Failure::GenericTimeout), "{i}");
        }
        for i in 0..5 {
            let q = lookup_in(
                &pool,
                &trace,
                &format!("good-a{i}.example"),
                Duration::from_secs(30),
            )
            .await;
            assert_eq!(q.failure, None);
            assert_eq!(q.addrs(), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        }
        for i in 0..5 {
            let q = lookup_in(
                &pool,
                &trace,
                &format!("hang-c{i}.example"),
                Duration::from_millis(20),
            )
            .await;
            assert_eq!(q.failure, Some(Failure::GenericTimeout), "{i}");
        }
        // Now every thread is stuck: the next lookup is our limit, at once.
        let q = lookup_in(
            &pool,
            &trace,
            "good-a-late.example",
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(q.failure, Some(Failure::ProbeResourceLimit));
        assert_eq!(q.failure.unwrap().to_string(), "x_probe_resource_limit");
    }

    #[tokio::test]
    async fn waiting_too_long_for_a_slot_is_our_limit_not_a_timeout() {
        let pool = Arc::new(Pool::new(2, 10, stand_in));
        let mut held = Vec::new();
        for n in ["hang-b1.example", "hang-b2.example"] {
            let pool = Arc::clone(&pool);
            held.push(tokio::spawn(async move {
                lookup_in(&pool, &Trace::new(), n, Duration::from_secs(600)).await
            }));
        }
        until_started(&["hang-b1.example", "hang-b2.example"]).await;
        let q = lookup_in(
            &pool,
            &Trace::new(),
            "good-b.example",
            Duration::from_millis(30),
        )
        .await;
        assert_eq!(q.failure, Some(Failure::ProbeResourceLimit));
        assert!(q.answers.is_empty());
        assert!(!STARTED
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == "good-b.example"));
        for h in held {
            h.abort();
        }
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
