//! More tries of the system resolver on a lossy line.
//!
//! getaddrinfo cannot be told to resend sooner than `resolv.conf` says (glibc:
//! 5 s by default, longer than our DNS step), so one lost datagram would be
//! a system-resolver timeout. While no try has answered, a new, independent
//! getaddrinfo (new socket, new query ids) starts every
//! [`SYSTEM_RESEND_AFTER`] (at 1 s, 2 s, ...; at most [`MAX_SYSTEM_TRIES`]
//! in all, the last one starting at least [`MIN_TRY_TIME`] before the end),
//! each bounded by what is left of the step's timeout: a name that is really
//! blocked costs no extra time, only more threads of the lookup pool for the
//! rest of the timeout. With the default 4 s DNS timeout that is 3 tries, at
//! 0, 1 and 2 s. The first answer wins (an NXDOMAIN is an answer too, a
//! silence is not); the record says how many tries were started
//! (`x_attempts`), and the lookup failed only when every try did, which is
//! what the verdict calls a persistent failure.

use std::time::Duration;

use probes::records::{DnsQuery, Trace};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::analysis::lossy::loss_can_cause;

/// The silence after which the system lookup is tried again.
pub(crate) const SYSTEM_RESEND_AFTER: Duration = Duration::from_secs(1);

/// The most tries of one system lookup.
pub(crate) const MAX_SYSTEM_TRIES: u32 = 3;

/// A try is started only if it has at least this long before the deadline.
pub(crate) const MIN_TRY_TIME: Duration = Duration::from_millis(500);

/// The system lookup of `host`, tried again after silences (see the module
/// doc). The record keeps the first try's `t0`; an answer (addresses or an
/// rcode) from any try wins over a silence.
pub(crate) async fn system_lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let t0 = trace.clock.now();
    let start = Instant::now();
    let deadline = start + timeout;
    let answered = |q: &DnsQuery| q.failure.as_ref().is_none_or(|f| !loss_can_cause(f));
    let spawn = |set: &mut JoinSet<DnsQuery>, left: Duration| {
        let (trace, host) = (trace.clone(), host.to_string());
        set.spawn(async move { probes::dns::system::lookup(&trace, &host, left).await });
    };
    let mut set = JoinSet::new();
    spawn(&mut set, timeout);
    let mut tries = 1u32;
    let mut silent: Option<DnsQuery> = None;
    loop {
        let next = start + SYSTEM_RESEND_AFTER * tries;
        let may_try = tries < MAX_SYSTEM_TRIES && next + MIN_TRY_TIME <= deadline;
        if set.is_empty() && !may_try {
            break;
        }
        tokio::select! {
            joined = set.join_next(), if !set.is_empty() => {
                let Some(Ok(q)) = joined else { continue };
                if answered(&q) {
                    return finish(q, t0, tries);
                }
                silent = Some(match silent.take() {
                    // The first try's failure, ended when the last one did.
                    Some(first) => DnsQuery { t: q.t.max(first.t), ..first },
                    None => q,
                });
            }
            () = tokio::time::sleep_until(next), if may_try => {
                spawn(&mut set, deadline.saturating_duration_since(Instant::now()));
                tries += 1;
            }
        }
    }
    match silent {
        Some(q) => finish(q, t0, tries),
        // Every try panicked: record the deadline.
        None => probes::dns::system::lookup(trace, host, Duration::ZERO).await,
    }
}

fn finish(mut q: DnsQuery, t0: f64, tries: u32) -> DnsQuery {
    q.t0 = t0;
    q.x_attempts = tries;
    q
}
