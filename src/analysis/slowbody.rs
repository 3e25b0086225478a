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
