//! A second try of the system resolver on a lossy line.
//!
//! getaddrinfo cannot be told to resend sooner than `resolv.conf` says (glibc:
//! 5 s by default, longer than our DNS step), so one lost datagram would be
//! a system-resolver timeout. When the first lookup has not ended after
//! [`SYSTEM_RESEND_AFTER`], a second, independent getaddrinfo (new socket,
//! new query id) starts, bounded by what is left of the step's timeout: a
//! name that is really blocked costs no extra time, only one more thread of
//! the lookup pool for the rest of the timeout. The first answer wins (an
//! NXDOMAIN is an answer too, a timeout is not); the
//! record says `x_attempts: 2`, and the lookup failed only when both did,
//! which is what the verdict calls a persistent failure.

use std::time::Duration;

use probes::records::{DnsQuery, Trace};

use crate::analysis::lossy::loss_can_cause;

/// The silence after which the system lookup is tried a second time.
pub(crate) const SYSTEM_RESEND_AFTER: Duration = Duration::from_secs(1);

/// The system lookup of `host`, tried a second time after a silence (see the
/// module doc). The record keeps the first try's `t0`; an answer (addresses
/// or an rcode) from either try wins over a silence.
pub(crate) async fn system_lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let t0 = trace.clock.now();
    let first = probes::dns::system::lookup(trace, host, timeout);
    tokio::pin!(first);
    if timeout <= SYSTEM_RESEND_AFTER {
        return first.await;
    }
    tokio::select! {
        q = &mut first => return q,
        () = tokio::time::sleep(SYSTEM_RESEND_AFTER) => {}
    }
    let second = probes::dns::system::lookup(trace, host, timeout - SYSTEM_RESEND_AFTER);
    tokio::pin!(second);
    let (done, first_done) = tokio::select! {
        q = &mut first => (q, true),
        q = &mut second => (q, false),
    };
    // An answer (addresses, or an rcode such as NXDOMAIN) wins over a
    // silence, whichever try it came from.
    let answered = |q: &DnsQuery| q.failure.as_ref().is_none_or(|f| !loss_can_cause(f));
    let mut q = if answered(&done) {
        done
    } else {
        let other = if first_done {
            second.await
        } else {
            first.await
        };
        match (answered(&other), first_done) {
            (true, _) => other,
            // Both failed: the first try's failure, ended when both had.
            (false, true) => DnsQuery {
                t: other.t.max(done.t),
                ..done
            },
            (false, false) => DnsQuery {
                t: other.t.max(done.t),
                ..other
            },
        }
    };
    q.t0 = t0;
    q.x_attempts = 2;
    q
}
