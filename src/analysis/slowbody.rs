//! A body that did not finish: the response's status line and headers
//! arrived, then the probe's HTTP timeout expired, while the control
//! fetched a large body.
//!
//! The fetch did not fail to start: the path carried the response and then
//! delivered its body too slowly to finish in time (or stalled). That is the
//! signature of throttling on a large download (OONI's QA `throttlingWith*`
//! scenarios), not of a connection torn down. When the measurement shows
//! that no body byte at all came after the headers (our `x_transfer`, or
//! OONI's `read` events), it is a stall and this check stays out of the
//! way: the caller's `http.timeout` stands. When the run's line baseline is
//! known and the body was arriving at a rate this line reaches for other
//! sites (at least [`LINE_RATIO`] of it), the line is slow for a page this
//! large: `inconclusive`, never throttling nor a block (issue 20's rule).

use probes::failure::Failure;
use probes::records::HttpTransaction;

use crate::control::protocol::ControlResponse;

use super::throttling::{LINE_RATIO, MIN_BODY_BYTES};

/// What a body that timed out after its headers says.
#[derive(Debug, PartialEq)]
pub(crate) enum SlowBody {
    /// Slowed on the path: the evidence.
    Throttled(Vec<String>),
    /// It arrived at a rate this line reaches for other sites: the line is
    /// slow, not the site's path (never evidence of interference).
    SlowLine(String),
}

/// What the body of `tx` says when it timed out after its headers, or
/// `None` when this is not such a body. `line_rate_bps` is the run's line
/// baseline ([`super::throttling`]), when known.
pub(crate) fn check(
    tx: &HttpTransaction,
    ctl: &ControlResponse,
    line_rate_bps: Option<f64>,
) -> Option<SlowBody> {
    let timed_out = matches!(
        tx.failure,
        Some(Failure::GenericTimeout | Failure::TimedOut)
    );
    let started = (200..300).contains(&tx.response.code);
    let control_len = u64::try_from(ctl.http_request.body_length).unwrap_or(0);
    if !timed_out || !started || control_len < MIN_BODY_BYTES {
        return None;
    }
    let t = &tx.x_transfer;
    // Known to have stalled: the first byte came, then nothing.
    if t.ttfb > 0.0 && t.bytes == 0 {
        return None;
    }
    if let Some(line) = line_rate_bps.filter(|&l| l > 0.0 && t.bytes > 0 && t.rate_bps > 0.0) {
        if t.rate_bps >= line * LINE_RATIO {
            return Some(SlowBody::SlowLine(format!(
                "the body did not finish before the probe's timeout, but it arrived at {:.0} kbit/s, \
                 which this line reaches for other sites in this run ({:.0} kbit/s): the line is \
                 slow for a page this large, which says nothing about the site",
                t.rate_bps * 8.0 / 1000.0,
                line * 8.0 / 1000.0
            )));
        }
    }
    let progress = if t.bytes > 0 {
        format!(
            "{} bytes arrived in {:.1} s ({:.0} kbit/s)",
            t.bytes,
            t.body_seconds,
            t.rate_bps * 8.0 / 1000.0
        )
    } else {
        "how much of it arrived was not recorded".to_string()
    };
    Some(SlowBody::Throttled(vec![format!(
        "the response (status {}) began but its body did not finish before the probe's \
         timeout ({progress}), while the control fetched all {control_len} bytes: the \
         transfer was slowed, or stalled, on the path",
        tx.response.code
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::records::TransferStats;

    fn tx(code: i64, failure: Option<Failure>, transfer: TransferStats) -> HttpTransaction {
        let mut tx = HttpTransaction {
            failure,
            x_transfer: transfer,
            ..HttpTransaction::default()
        };
        tx.response.code = code;
        tx
    }

    fn ctl(len: i64) -> ControlResponse {
        let mut c = ControlResponse::default();
        c.http_request.status_code = 200;
        c.http_request.body_length = len;
        c
    }

    fn throttled(s: Option<SlowBody>) -> Vec<String> {
        match s {
            Some(SlowBody::Throttled(ev)) => ev,
            other => panic!("not throttled: {other:?}"),
        }
    }

    #[test]
    fn a_large_body_timing_out_after_its_headers_is_slowed() {
        let unknown = TransferStats::default();
        let t = Some(Failure::GenericTimeout);
        let ev = throttled(check(
            &tx(200, t.clone(), unknown.clone()),
            &ctl(1 << 24),
            None,
        ));
        assert!(ev[0].contains("was not recorded"), "{ev:?}");
        let flowing = TransferStats {
            ttfb: 0.2,
            body_seconds: 10.0,
            bytes: 80_000,
            rate_bps: 8_000.0,
        };
        let ev = throttled(check(&tx(200, t.clone(), flowing), &ctl(1 << 24), None));
        assert!(
            ev[0].contains("80000 bytes arrived in 10.0 s (64 kbit/s)"),
            "{ev:?}"
        );
        // Known to have stalled at zero bytes: a torn-down transfer, not this.
        let stalled = TransferStats {
            ttfb: 0.2,
            ..TransferStats::default()
        };
        assert!(check(&tx(200, t.clone(), stalled), &ctl(1 << 24), None).is_none());
        // A small page, no response, another failure: not this.
        assert!(check(&tx(200, t.clone(), unknown.clone()), &ctl(2000), None).is_none());
        assert!(check(&tx(0, t, unknown.clone()), &ctl(1 << 24), None).is_none());
        let reset = Some(Failure::ConnectionReset);
        assert!(check(&tx(200, reset, unknown), &ctl(1 << 24), None).is_none());
    }

    #[test]
    fn a_body_as_fast_as_the_line_is_a_slow_line_not_throttling() {
        let t = Some(Failure::GenericTimeout);
        // 2 Mbit/s for 10 s on a line whose other large pages came at
        // 2.5 Mbit/s: the line, not the path.
        let line_speed = TransferStats {
            ttfb: 0.2,
            body_seconds: 10.0,
            bytes: 2_500_000,
            rate_bps: 250_000.0,
        };
        match check(
            &tx(200, t.clone(), line_speed),
            &ctl(1 << 24),
            Some(312_500.0),
        ) {
            Some(SlowBody::SlowLine(why)) => assert!(why.contains("the line is slow"), "{why}"),
            other => panic!("{other:?}"),
        }
        // 64 kbit/s on the same line (a fortieth of it): still slowed.
        let slowed = TransferStats {
            ttfb: 0.2,
            body_seconds: 10.0,
            bytes: 80_000,
            rate_bps: 8_000.0,
        };
        throttled(check(&tx(200, t, slowed), &ctl(1 << 24), Some(312_500.0)));
    }
}
