//! More tries of the system resolver on a lossy line.
//!
//! getaddrinfo cannot be told to resend sooner than `resolv.conf` says (glibc:
//! 5 s by default, longer than our DNS step), so one lost datagram would be
//! a system-resolver timeout. While no try has answered, a new, independent
//! getaddrinfo (new socket, new query ids) starts every [`resend_after`]
//! (an eighth of the timeout, at least [`MIN_RESEND_AFTER`] and at most
//! [`MAX_RESEND_AFTER`]; at most [`MAX_SYSTEM_TRIES`] in all, the last one
//! starting at least [`MIN_TRY_TIME`] before the end), each bounded by what
//! is left of the step's timeout. With the lab's 2 s timeout that is 7 tries
//! (every 250 ms up to 1.5 s), with the default 4 s, 8 (every 500 ms).
//!
//! Why so many: a censor drops every query for a name, loss only some, and
//! the number of silent tries is what tells them apart
//! (`analysis::lossy`). The cost: a name that answers on the first try
//! costs nothing more; a name that is really blocked costs no extra time,
//! only more threads of the lookup pool for the rest of the timeout (a
//! try's slot is released at the deadline; its thread ends when glibc gives
//! up). The first answer wins (an NXDOMAIN is an answer too, a silence is
//! not); the record says how many tries were started (`x_attempts`), and
//! the lookup failed only when every try did, which is what the verdict
//! calls a persistent failure. While the lookup pool is more than half
//! busy (many names hanging in getaddrinfo), a due resend is skipped
//! instead (`probes::dns::system::spare_capacity`), so the lookup may end
//! with fewer tries, which the verdict then does not call persistent. A
//! try our own pool refused
//! (`x_probe_resource_limit`) is no try: it is not counted, and it is the
//! record only when no try ran.

use std::time::Duration;

use probes::records::{DnsQuery, Trace};
use probes::Failure;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::analysis::lossy::loss_can_cause;

/// The shortest pause between two tries.
pub(crate) const MIN_RESEND_AFTER: Duration = Duration::from_millis(250);

/// The longest pause between two tries.
pub(crate) const MAX_RESEND_AFTER: Duration = Duration::from_secs(1);

/// The most tries of one system lookup.
pub(crate) const MAX_SYSTEM_TRIES: u32 = 8;

/// The silence after which the system lookup with this timeout is tried
/// again: an eighth of the timeout, within the bounds above.
pub(crate) fn resend_after(timeout: Duration) -> Duration {
    (timeout / 8).clamp(MIN_RESEND_AFTER, MAX_RESEND_AFTER)
}

/// A try is started only if it has at least this long before the deadline.
pub(crate) const MIN_TRY_TIME: Duration = Duration::from_millis(500);

/// The system lookup of `host`, tried again after silences (see the module
/// doc). The record keeps the first try's `t0`; an answer (addresses or an
/// rcode) from any try wins over a silence.
pub(crate) async fn system_lookup(trace: &Trace, host: &str, timeout: Duration) -> DnsQuery {
    let t0 = trace.clock.now();
    let start = Instant::now();
    let deadline = start + timeout;
    let every = resend_after(timeout);
    let refused = |q: &DnsQuery| q.failure == Some(Failure::ProbeResourceLimit);
    let answered =
        |q: &DnsQuery| !refused(q) && q.failure.as_ref().is_none_or(|f| !loss_can_cause(f));
    let spawn = |set: &mut JoinSet<DnsQuery>, left: Duration| {
        let (trace, host) = (trace.clone(), host.to_string());
        set.spawn(async move { probes::dns::system::lookup(&trace, &host, left).await });
    };
    let mut set = JoinSet::new();
    spawn(&mut set, timeout);
    let mut tries = 1u32;
    let mut not_run = 0u32;
    let mut skipped = 0u32;
    let mut silent: Option<DnsQuery> = None;
    let mut limit: Option<DnsQuery> = None;
    loop {
        let next = start + every * (tries + skipped);
        let may_try = tries + skipped < MAX_SYSTEM_TRIES && next + MIN_TRY_TIME <= deadline;
        if set.is_empty() && !may_try {
            break;
        }
        tokio::select! {
            joined = set.join_next(), if !set.is_empty() => {
                let Some(Ok(q)) = joined else { continue };
                if answered(&q) {
                    return finish(q, t0, tries - not_run);
                }
                if refused(&q) {
                    not_run += 1;
                    limit.get_or_insert(q);
                    continue;
                }
                silent = Some(match silent.take() {
                    // The first try's failure, ended when the last one did.
                    Some(first) => DnsQuery { t: q.t.max(first.t), ..first },
                    None => q,
                });
            }
            () = tokio::time::sleep_until(next), if may_try => {
                // A resend waits while the pool is busy (it would take the
                // room of another name's first lookup); the count of tries
                // then says how few there were.
                if probes::dns::system::spare_capacity() {
                    spawn(&mut set, deadline.saturating_duration_since(Instant::now()));
                    tries += 1;
                } else {
                    skipped += 1;
                }
            }
        }
    }
    match (silent, limit) {
        (Some(q), _) => finish(q, t0, tries - not_run),
        // No try ran: our own limit, not a silence.
        (None, Some(q)) => finish(q, t0, 0),
        // Every try panicked: record the deadline.
        (None, None) => probes::dns::system::lookup(trace, host, Duration::ZERO).await,
    }
}

fn finish(mut q: DnsQuery, t0: f64, tries: u32) -> DnsQuery {
    q.t0 = t0;
    q.x_attempts = tries;
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_come_every_eighth_of_the_timeout_within_bounds() {
        assert_eq!(resend_after(Duration::from_secs(2)), MIN_RESEND_AFTER);
        assert_eq!(
            resend_after(Duration::from_secs(4)),
            Duration::from_millis(500)
        );
        assert_eq!(resend_after(Duration::from_secs(30)), MAX_RESEND_AFTER);
    }
}
