//! Throttling: the page arrived far slower than this line fetches other
//! sites, while the control got the same content fast.
//!
//! # Thresholds, and why
//!
//! **Transfer rate.** A line is not a site: a rural 3G line at 2 Mbit/s
//! fetches *everything* a thousand times slower than a data-centre control,
//! so the probe's rate is judged against what the same line achieves for
//! other sites in the same run (the *line baseline*, see below), and the
//! control only shows that the site itself is fast. Throttled when all hold:
//! - the probe's body is at least [`MIN_BODY_BYTES`] (64 KiB) and the control
//!   saw the same content (equal SHA-256, or lengths within 10 %). Below
//!   64 KiB a transfer is over in a few round trips of TCP slow start
//!   (an initial window of 10 segments is ~14 KiB), so its "rate" measures
//!   latency, not bandwidth;
//! - there is a line baseline, and the probe's rate is below
//!   [`LINE_RATIO`] (1/5) of it: far below what this line does for other
//!   sites, not merely below a data centre;
//! - the probe's rate is below [`RATE_RATIO`] (1/5) of the control's: the
//!   site is fast where it is not filtered;
//! - the probe's rate is below [`MAX_THROTTLED_RATE_BPS`] (2 Mbit/s): a page
//!   that still arrives faster than that is not usefully throttled.
//!
//! Documented throttles are far stronger than 1/5 (Russia's 2021 Twitter
//! throttle held flows to ~130–150 kbit/s on links of tens of Mbit/s).
//! Without a baseline (a one-URL run, a run whose transfers were all small,
//! or the first large page of a run) the rate signal never fires: the rate
//! stays recorded in `x_transfer` and the evidence says throttling was not
//! judged.
//!
//! **The line baseline** is a running one, because each URL's result is
//! written as soon as it finishes: the median transfer rate of the URLs
//! already finished in this run whose page was at least [`MIN_BODY_BYTES`]
//! and judged `accessible` (so a throttled or blocked page never lowers
//! it). The median, not the maximum, so one in-country CDN node does not
//! make every foreign site look throttled. `gatewatch run` keeps it
//! (`run::line`) and passes it in
//! [`AnalysisContext::line_rate_bps`](super::AnalysisContext::line_rate_bps).
//!
//! **TLS handshake time.** Throttled when the probe's handshake for the name
//! took more than [`MIN_SLOW_HANDSHAKE_S`] (1 s), more than
//! [`HANDSHAKE_RATIO`] (5×) the control's for the same endpoint, *and*
//! more than 5× the probe's own TCP connect time to that endpoint when it is
//! known. The probe's own connect time is this line's baseline: TLS 1.3
//! needs one round trip and TLS 1.2 two, so a handshake many round trips
//! long on a path whose TCP connect was quick points at SNI-triggered delay
//! or loss, not at a distant or slow line.
//!
//! Both signals together give confidence `confirmed`; one gives `likely`.
//! A slow site is slow for the control too, and stays `accessible`.

use std::net::SocketAddr;

use probes::records::HttpTransaction;

use crate::control::protocol::ControlResponse;
use crate::model::Measurement;

use super::observe;

/// The smallest body a transfer rate is judged on (bytes).
pub const MIN_BODY_BYTES: u64 = 64 * 1024;
/// The probe's rate must be below this fraction of the control's.
pub const RATE_RATIO: f64 = 0.2;
/// ... and below this fraction of the line baseline.
pub const LINE_RATIO: f64 = 0.2;
/// ... and below this absolute rate (bytes/s; 2 Mbit/s).
pub const MAX_THROTTLED_RATE_BPS: f64 = 250_000.0;
/// The probe's handshake must be longer than this (seconds) ...
pub const MIN_SLOW_HANDSHAKE_S: f64 = 1.0;
/// ... and this many times the control's (and the probe's TCP connect's).
pub const HANDSHAKE_RATIO: f64 = 5.0;

/// What the throttling check found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Throttling {
    /// The evidence sentences; empty when not throttled.
    pub evidence: Vec<String>,
    /// Both the rate and the handshake signal fired.
    pub both: bool,
    /// Sentences for an `accessible` verdict: why a slow transfer was not
    /// judged throttled (no baseline, or the line is as slow for others).
    pub notes: Vec<String>,
}

/// Checks the final response `tx` of `m` against the control.
/// Checks the final response `tx` of `m` against the control and against
/// `line_bps`, the line baseline (bytes/s) when there is one.
pub(crate) fn check(
    m: &Measurement,
    tx: &HttpTransaction,
    ctl: &ControlResponse,
    line_bps: Option<f64>,
) -> Throttling {
    let mut out = Throttling::default();
    let rate = match (rate_signal(tx, ctl), line_bps) {
        (None, _) => None,
        (Some(s), Some(line)) if tx.x_transfer.rate_bps < line * LINE_RATIO => Some(format!(
            "{s}; this line fetched other pages of this run at {} (median)",
            fmt_rate(line)
        )),
        (Some(_), Some(line)) => {
            out.notes.push(format!(
                "the page arrived at {}, slower than at the control but not far below what this line achieves for other sites ({} median): a slow line, not throttling",
                fmt_rate(tx.x_transfer.rate_bps),
                fmt_rate(line)
            ));
            None
        }
        (Some(_), None) => {
            out.notes.push(format!(
                "the page arrived at {}, slower than at the control, but this run has no baseline of the line's own throughput yet (no other large page finished), so throttling was not judged",
                fmt_rate(tx.x_transfer.rate_bps)
            ));
            None
        }
    };
    let hs = handshake_signal(m, tx, ctl);
    out.both = rate.is_some() && hs.is_some();
    out.evidence.extend(rate);
    out.evidence.extend(hs);
    out
}

/// The rate half of the rule against the control only (same content, far
/// slower, slow in absolute terms); the line baseline is applied by
/// [`check`].
fn rate_signal(tx: &HttpTransaction, ctl: &ControlResponse) -> Option<String> {
    // 0 is "unknown". A body too quick to time carries a lower bound (see
    // `TransferStats::rate_bps`): on the control's side it can only hide a
    // verdict; on the probe's side it is far above MAX_THROTTLED_RATE_BPS
    // for any body of MIN_BODY_BYTES.
    let probe_rate = tx.x_transfer.rate_bps;
    let ctl_rate = ctl.x_transfer_rate_bps?;
    let bytes = observe::body_len(tx).max(tx.x_transfer.bytes);
    if bytes < MIN_BODY_BYTES || probe_rate <= 0.0 || ctl_rate <= 0.0 {
        return None;
    }
    let body = ctl.x_body.as_ref()?;
    // The same content: equal hashes, lengths within 10 %, or (when the
    // probe kept only the first part of a big body) a control body at least
    // as long.
    let same = (!body.sha256.is_empty()
        && body.sha256.eq_ignore_ascii_case(&tx.response.x_body_sha256))
        || (body.length > 0 && {
            let (a, b) = (bytes as f64, body.length as f64);
            a.min(b) / a.max(b) >= 0.9
        })
        || (tx.response.body_is_truncated && body.length >= bytes as i64);
    if !same {
        return None;
    }
    if probe_rate < ctl_rate * RATE_RATIO && probe_rate < MAX_THROTTLED_RATE_BPS {
        Some(format!(
            "the page ({bytes} bytes) arrived at {} while the control received the same content at {}",
            fmt_rate(probe_rate),
            fmt_rate(ctl_rate)
        ))
    } else {
        None
    }
}

fn handshake_signal(
    m: &Measurement,
    tx: &HttpTransaction,
    ctl: &ControlResponse,
) -> Option<String> {
    let ep: SocketAddr = tx.address.parse().ok()?;
    let ctl_s = *ctl.x_tls_handshake_time.get(&ep.to_string())?;
    let hs = m
        .test_keys
        .tls_handshakes
        .iter()
        .filter(|h| h.address == ep.to_string() && observe::tls_valid(h))
        .map(|h| h.t - h.t0)
        .fold(None, |acc: Option<f64>, d| {
            Some(acc.map_or(d, |a| a.min(d)))
        })?;
    let connect = m
        .test_keys
        .tcp_connect
        .iter()
        .filter(|c| c.endpoint() == Some(ep) && c.status.success)
        .map(|c| c.t - c.t0)
        .fold(None, |acc: Option<f64>, d| {
            Some(acc.map_or(d, |a| a.min(d)))
        });
    let slow = hs > MIN_SLOW_HANDSHAKE_S
        && ctl_s > 0.0
        && hs > HANDSHAKE_RATIO * ctl_s
        && connect.is_none_or(|c| hs > HANDSHAKE_RATIO * c);
    slow.then(|| {
        let tcp = connect
            .map(|c| format!(" (its TCP connect took {c:.3} s)"))
            .unwrap_or_default();
        format!(
            "the TLS handshake with {ep} took {hs:.2} s{tcp} against {ctl_s:.2} s at the control"
        )
    })
}

/// `1.9 Mbit/s`, `512 kbit/s`.
pub(crate) fn fmt_rate(bps: f64) -> String {
    let bits = bps * 8.0;
    if bits >= 1e6 {
        format!("{:.1} Mbit/s", bits / 1e6)
    } else {
        format!("{:.0} kbit/s", bits / 1e3)
    }
}
