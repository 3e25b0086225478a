//! Back-pressure towards one control: an AIMD window of requests in flight,
//! a pause after a push-back (429/503), and the counters the run reports.
//!
//! The window starts small and grows by one per good answer (slow start,
//! doubling each round trip) until the first push-back; from then on by one
//! per window's worth of good answers (additive increase). A push-back
//! halves it (multiplicative decrease), never below one nor above the
//! control's cap. After a
//! push-back the whole window waits (`Retry-After`, or a bounded
//! exponential backoff, with jitter) before anything is sent again, so a
//! probe never hammers a control that asked it to slow down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first backoff when the control gave no `Retry-After`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest wait after one push-back, whatever the control asked.
pub const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// How long to wait after the `attempt`-th push-back (0-based): the
/// control's `Retry-After` when given, else `BACKOFF_BASE * 2^attempt`;
/// at most [`BACKOFF_MAX`]; plus up to 25 % jitter so waiting requests do
/// not come back at the same instant.
pub fn delay(retry_after: Option<Duration>, attempt: u32) -> Duration {
    let base = retry_after
        .unwrap_or_else(|| BACKOFF_BASE.saturating_mul(1u32 << attempt.min(8)))
        .min(BACKOFF_MAX);
    let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
    base + jitter
}

/// What a run reports about one control.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ControlHealth {
    /// The control.
    pub url: String,
    /// Good answers.
    pub answers: u64,
    /// 429 answers (too many requests), each waited out and retried.
    pub http_429: u64,
    /// 503 answers (overloaded), each waited out and retried.
    pub http_503: u64,
    /// Attempts that failed otherwise (unreachable, bad answer, other
    /// status).
    pub failures: u64,
    /// The window of requests in flight at the end.
    pub window: usize,
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// Below this the window grows by one per answer (slow start).
    threshold: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
}

/// The AIMD window of one control.
#[derive(Debug)]
pub struct Window {
    url: String,
    max: usize,
    state: Mutex<State>,
    changed: Notify,
    answers: AtomicU64,
    http_429: AtomicU64,
    http_503: AtomicU64,
    failures: AtomicU64,
}

/// One request in flight; frees its place in the window when dropped.
#[derive(Debug)]
pub struct Permit<'a>(&'a Window);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut st = self.0.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
        }
        self.0.changed.notify_waiters();
    }
}

impl Window {
    /// A window for `url` starting at `initial` requests in flight, at most
    /// `max`.
    pub fn new(url: String, initial: usize, max: usize) -> Window {
        let max = max.max(1);
        Window {
            url,
            max,
            state: Mutex::new(State {
                limit: initial.clamp(1, max) as f64,
                threshold: max as f64,
                in_flight: 0,
                paused_until: None,
            }),
            changed: Notify::new(),
            answers: AtomicU64::new(0),
            http_429: AtomicU64::new(0),
            http_503: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place in the window (and for any pause to end).
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut st = self.lock();
                let now = Instant::now();
                match st.paused_until {
                    Some(t) if t > now => Some(t),
                    _ => {
                        st.paused_until = None;
                        if st.in_flight < st.limit.floor().max(1.0) as usize {
                            st.in_flight += 1;
                            return Permit(self);
                        }
                        None
                    }
                }
            };
            match wait_until {
                Some(t) => tokio::time::sleep_until(t).await,
                // A lost wake-up costs at most this.
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                }
            }
        }
    }

    /// A good answer: additive increase.
    pub fn answered(&self) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.lock();
            let step = if st.limit < st.threshold {
                1.0
            } else {
                1.0 / st.limit
            };
            st.limit = (st.limit + step).min(self.max as f64);
        }
        self.changed.notify_waiters();
    }

    /// A 429/503: multiplicative decrease and a pause of `wait`.
    pub fn pushed_back(&self, status: u16, wait: Duration) {
        if status == 429 {
            self.http_429.fetch_add(1, Ordering::Relaxed);
        } else {
            self.http_503.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.lock();
        let now = Instant::now();
        // The answers to one burst count as one push-back: halve once per
        // pause, not once per refused request.
        if st.paused_until.is_none_or(|t| t <= now) {
            st.limit = (st.limit / 2.0).max(1.0);
            st.threshold = st.limit;
        }
        let until = now + wait;
        if st.paused_until.is_none_or(|t| t < until) {
            st.paused_until = Some(until);
        }
    }

    /// Any other failed attempt.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn health(&self) -> ControlHealth {
        ControlHealth {
            url: self.url.clone(),
            answers: self.answers.load(Ordering::Relaxed),
            http_429: self.http_429.load(Ordering::Relaxed),
            http_503: self.http_503.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            window: self.lock().limit.floor() as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_honours_retry_after_and_is_bounded() {
        for _ in 0..50 {
            let d = delay(Some(Duration::from_secs(2)), 0);
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2500));
            let d = delay(Some(Duration::from_secs(3600)), 0);
            assert!(d >= BACKOFF_MAX && d <= BACKOFF_MAX.mul_f64(1.25));
            let d = delay(None, 3);
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(5));
            assert!(delay(None, 40) <= BACKOFF_MAX.mul_f64(1.25));
        }
    }

    #[tokio::test]
    async fn window_grows_and_halves() {
        let w = Window::new("http://c.example/".into(), 4, 6);
        let held: Vec<_> = futures_hold(&w, 4).await;
        // Full: a fifth request waits.
        assert!(tokio::time::timeout(Duration::from_millis(10), w.acquire())
            .await
            .is_err());
        drop(held);
        for _ in 0..20 {
            w.answered();
        }
        assert_eq!(w.health().window, 6, "capped at max");
        w.pushed_back(429, Duration::from_secs(3600));
        assert_eq!(w.health().window, 3);
        assert_eq!(w.health().http_429, 1);
        // Paused: nothing is sent before the wait is over.
        assert!(tokio::time::timeout(Duration::from_millis(50), w.acquire())
            .await
            .is_err());
        // After a push-back, growth is additive: three answers at a window
        // of three add one.
        for _ in 0..3 {
            w.answered();
        }
        assert_eq!(w.health().window, 3);
        // Refusals during a pause are one push-back.
        let w = Window::new("http://c.example/".into(), 8, 8);
        w.pushed_back(429, Duration::from_secs(3600));
        w.pushed_back(503, Duration::from_secs(3600));
        assert_eq!(w.health().window, 4);
        assert_eq!((w.health().http_429, w.health().http_503), (1, 1));
        // Never below one.
        let w = Window::new("http://c.example/".into(), 2, 8);
        for _ in 0..5 {
            w.pushed_back(503, Duration::ZERO);
        }
        assert_eq!(w.health().window, 1);
    }

    async fn futures_hold(w: &Window, n: usize) -> Vec<Permit<'_>> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(w.acquire().await);
        }
        v
    }
}
