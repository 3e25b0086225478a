//! Load shedding (a cap on requests in flight) and per-client rate limiting.
//!
//! The defaults ([`DEFAULT_RATE_PER_MINUTE`], [`DEFAULT_RATE_BURST`]) are
//! sized so that one probe at its default parallelism, over a list of any
//! size, is never limited; a team can lower them to slow down abusers. A
//! limited client is told when to come back (`Retry-After`), and
//! gatewatch's client waits and retries rather than losing the answer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Requests per minute allowed per client by default: 100 a second, more
/// than a probe with 64 URLs in flight asks on a fast network.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 6000;
/// Burst allowed per client by default.
pub const DEFAULT_RATE_BURST: u32 = 600;
/// Measurements in flight before the server sheds load (503) by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Counts measurements in flight and refuses new ones above a cap.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    now: AtomicUsize,
}

/// Holds one in-flight slot; frees it when dropped.
#[derive(Debug)]
pub struct Slot(Arc<InFlight>);

impl InFlight {
    /// A counter allowing `max` requests at once.
    pub fn new(max: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            max: max.max(1),
            now: AtomicUsize::new(0),
        })
    }

    /// A slot, or `None` when `max` requests are already in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut cur = self.now.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self
                .now
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(Slot(Arc::clone(self))),
                Err(v) => cur = v,
            }
        }
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-client-address rate limiting (a token bucket per IP).
#[derive(Debug)]
pub struct ClientLimiter {
    inner: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl ClientLimiter {
    /// `per_minute` requests a minute per client with bursts of `burst`;
    /// `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32, burst: u32) -> ClientLimiter {
        let inner = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        ClientLimiter { inner }
    }

    /// True when `client` may make a request now (and counts it).
    pub fn allow(&self, client: IpAddr) -> bool {
        self.check(client).is_ok()
    }

    /// `Ok` when `client` may make a request now (and counts it), else how
    /// long until it may (what `Retry-After` says, at least one second).
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        match &self.inner {
            Some(l) => l.check_key(&client.to_canonical()).map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64)
            }),
            None => Ok(()),
        }
    }

    /// Forgets clients whose buckets are full again (bounds memory).
    pub fn housekeeping(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_cap_and_release() {
        let f = InFlight::new(2);
        let a = f.try_acquire().unwrap();
        let _b = f.try_acquire().unwrap();
        assert!(f.try_acquire().is_none());
        drop(a);
        assert_eq!(f.current(), 1);
        assert!(f.try_acquire().is_some());
    }

    #[test]
    fn rate_limit_is_per_client() {
        let l = ClientLimiter::new(1, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(a));
        assert!(l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
        assert!(ClientLimiter::new(0, 0).allow(a));
        // One a minute: the next is a minute away, and says so.
        let wait = l.check(a).unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60));
    }
}
