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
//! way: the caller's `http.timeout` stands.

use probes::failure::Failure;
use probes::records::HttpTransaction;

use crate::control::protocol::ControlResponse;

use super::throttling::MIN_BODY_BYTES;

/// Evidence that the body of `tx` was throttled, or `None`.
pub(crate) fn check(tx: &HttpTransaction, ctl: &ControlResponse) -> Option<Vec<String>> {
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
    Some(vec![format!(
        "the response (status {}) began but its body did not finish before the probe's \
         timeout ({progress}), while the control fetched all {control_len} bytes: the \
         transfer was slowed, or stalled, on the path",
        tx.response.code
    )])
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

    #[test]
    fn a_large_body_timing_out_after_its_headers_is_slowed() {
        let unknown = TransferStats::default();
        let t = Some(Failure::GenericTimeout);
        let ev = check(&tx(200, t.clone(), unknown.clone()), &ctl(1 << 24)).unwrap();
        assert!(ev[0].contains("was not recorded"), "{ev:?}");
        let flowing = TransferStats {
            ttfb: 0.2,
            body_seconds: 10.0,
            bytes: 80_000,
            rate_bps: 8_000.0,
        };
        let ev = check(&tx(200, t.clone(), flowing), &ctl(1 << 24)).unwrap();
        assert!(
            ev[0].contains("80000 bytes arrived in 10.0 s (64 kbit/s)"),
            "{ev:?}"
        );
        // Known to have stalled at zero bytes: a torn-down transfer, not this.
        let stalled = TransferStats {
            ttfb: 0.2,
            ..TransferStats::default()
        };
        assert!(check(&tx(200, t.clone(), stalled), &ctl(1 << 24)).is_none());
        // A small page, no response, another failure: not this.
        assert!(check(&tx(200, t.clone(), unknown.clone()), &ctl(2000)).is_none());
        assert!(check(&tx(0, t, unknown.clone()), &ctl(1 << 24)).is_none());
        let reset = Some(Failure::ConnectionReset);
        assert!(check(&tx(200, reset, unknown), &ctl(1 << 24)).is_none());
    }
}
