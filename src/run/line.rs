//! What the run has learnt about the volunteer's line, as each URL
//! finishes, so a URL finishing later is judged against it: the transfer
//! rates of large pages judged `accessible` (the throttling baseline, see
//! `analysis::throttling`) and the share of steps that needed a retry (see
//! `analysis::lossy`).

use std::sync::Mutex;

use crate::analysis::throttling::MIN_BODY_BYTES;
use crate::model::{Measurement, VerdictStatus};

/// The rates learnt so far (bytes/s).
#[derive(Debug, Default)]
pub struct LineBaseline {
    rates: Mutex<Vec<f64>>,
    /// Retriable steps and retried steps of the URLs finished so far.
    steps: Mutex<(u64, u64)>,
}

impl LineBaseline {
    /// The median rate learnt so far; `None` before the first large page.
    pub fn median(&self) -> Option<f64> {
        let mut v = self.rates.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// The share of retriable steps that needed a retry so far (see
    /// `analysis::lossy`); `None` before any.
    pub fn loss(&self) -> Option<f64> {
        let (steps, retried) = *self.steps.lock().unwrap_or_else(|e| e.into_inner());
        (steps > 0).then(|| retried as f64 / steps as f64)
    }

    /// Learns `m`'s retried steps, and its final transfer when its page was at least
    /// [`MIN_BODY_BYTES`] and the verdict `accessible` (a throttled or
    /// blocked page never lowers the baseline).
    pub fn learn(&self, m: &Measurement) {
        let (steps, retried) = crate::analysis::lossy::retried_steps(m);
        {
            let mut st = self.steps.lock().unwrap_or_else(|e| e.into_inner());
            st.0 += u64::from(steps);
            st.1 += u64::from(retried);
        }
        let ok = m
            .test_keys
            .x_verdict
            .as_ref()
            .is_some_and(|v| v.status == VerdictStatus::Accessible && v.mechanism.is_none());
        let Some(tx) = m.test_keys.requests.first() else {
            return;
        };
        let bytes = tx.x_transfer.bytes.max(tx.response.x_body_length);
        let rate = tx.x_transfer.rate_bps;
        if ok && bytes >= MIN_BODY_BYTES && rate > 0.0 && rate.is_finite() {
            self.rates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;
    use probes::records::HttpTransaction;

    fn page(bytes: u64, rate: f64, status: VerdictStatus) -> Measurement {
        let mut m = Measurement::default();
        let mut tx = HttpTransaction::default();
        tx.x_transfer.bytes = bytes;
        tx.x_transfer.rate_bps = rate;
        m.test_keys.requests = vec![tx];
        m.test_keys.x_verdict = Some(Verdict {
            status,
            ..Verdict::default()
        });
        m
    }

    #[test]
    fn the_median_of_large_accessible_pages() {
        let b = LineBaseline::default();
        assert_eq!(b.median(), None);
        b.learn(&page(10_000, 1e6, VerdictStatus::Accessible)); // too small
        b.learn(&page(200_000, 1e3, VerdictStatus::Throttled)); // not accessible
        assert_eq!(b.median(), None);
        b.learn(&page(200_000, 3e5, VerdictStatus::Accessible));
        assert_eq!(b.median(), Some(3e5));
        b.learn(&page(200_000, 1e5, VerdictStatus::Accessible));
        b.learn(&page(200_000, 9e6, VerdictStatus::Accessible));
        assert_eq!(b.median(), Some(3e5));
        assert_eq!(b.loss(), None, "no DNS steps in these pages");
        let mut m = page(1, 0.0, VerdictStatus::Accessible);
        m.test_keys.queries = vec![
            probes::records::DnsQuery {
                engine: "udp".into(),
                x_attempts: 2,
                ..Default::default()
            },
            probes::records::DnsQuery {
                engine: "getaddrinfo".into(),
                ..Default::default()
            },
        ];
        b.learn(&m);
        assert_eq!(b.loss(), Some(0.5));
    }
}
