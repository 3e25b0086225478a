//! OONI's measurements made ready for our analysis, and what their data
//! cannot tell.
//!
//! The model already reads every version's keys ([`probes::lenient`]);
//! here the remaining differences of meaning are settled: older versions
//! did not name the resolver engine, an empty control object means no
//! control, and OONI's network events give the body's transfer timing that
//! our probe records in `x_transfer`.

use probes::records::HttpTransaction;

use crate::control::protocol::ControlResponse;
use crate::model::{Measurement, SOFTWARE_NAME};

/// What OONI's data could not support, noted while preparing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The measurement was written by another probe than ours.
    pub foreign: bool,
    /// Lookups without an engine were taken as the system resolver's.
    pub engine_assumed: bool,
    /// No control answer.
    pub no_control: bool,
    /// No TLS handshake records for an https URL (versions before 0.4).
    pub no_tls_records: bool,
    /// No network events: no transfer timing for the body.
    pub no_timing: bool,
}

/// True for a measurement written by gatewatch.
pub fn is_ours(m: &Measurement) -> bool {
    m.software_name == SOFTWARE_NAME
}

/// Prepares a measurement of another probe for [`crate::analysis::analyze`]
/// and says what its data lacks. Our own measurements are left as they are.
pub fn prepare(m: &mut Measurement) -> Limits {
    let mut limits = Limits::default();
    if is_ours(m) {
        return limits;
    }
    limits.foreign = true;
    let tk = &mut m.test_keys;
    for q in &mut tk.queries {
        if q.engine.is_empty() {
            // Versions before 0.4 did not record the engine: their one
            // lookup used the system's resolver configuration.
            q.engine = "getaddrinfo".into();
            limits.engine_assumed = true;
        }
        if q.engine == "system" {
            q.engine = "getaddrinfo".into();
        }
    }
    if tk.control.as_ref().is_some_and(control_is_empty) {
        tk.control = None;
    }
    limits.no_control = tk.control.is_none();
    let https = m.input.as_deref().is_some_and(|u| u.starts_with("https:"));
    limits.no_tls_records = https && tk.tls_handshakes.is_empty() && !tk.tcp_connect.is_empty();
    limits.no_timing = tk.network_events.is_empty();
    let events = std::mem::take(&mut tk.network_events);
    for tx in &mut tk.requests {
        fill_transfer(tx, &events);
        if tx.address.is_empty() {
            tx.address = sole_endpoint(&tk.tcp_connect, &tx.request.url).unwrap_or_default();
        }
    }
    tk.network_events = events;
    limits
}

/// Versions before 0.4 did not write the address a request went to: when
/// exactly one connect to the URL's port succeeded, it was that one.
fn sole_endpoint(tcp: &[probes::records::TcpConnect], url: &str) -> Option<String> {
    let port = url::Url::parse(url).ok()?.port_or_known_default()?;
    let mut ok = tcp.iter().filter(|c| c.port == port && c.status.success);
    let one = ok.next()?;
    if ok.next().is_some() {
        return None;
    }
    one.endpoint().map(|a| a.to_string())
}

/// An empty control object (`{}`): older probes wrote it when the control
/// failed.
fn control_is_empty(c: &ControlResponse) -> bool {
    c.tcp_connect.is_empty()
        && c.tls_handshake.is_empty()
        && c.dns.addrs.is_empty()
        && c.dns.failure.is_none()
        && c.http_request.failure.is_none()
        && c.http_request.status_code <= 0
        && c.ip_info.is_empty()
}

/// The body's transfer timing from OONI's `read` events of the round trip
/// (same transaction, same address), when our `x_transfer` is absent: the
/// first read after the request was written is the first response byte,
/// the bytes are every read's.
fn fill_transfer(tx: &mut HttpTransaction, events: &[probes::records::NetworkEvent]) {
    if tx.x_transfer.bytes > 0 || tx.transaction_id == 0 {
        return;
    }
    let reads: Vec<_> = events
        .iter()
        .filter(|e| {
            e.transaction_id == tx.transaction_id
                && e.operation == "read"
                && e.failure.is_none()
                && e.address.as_deref().is_none_or(|a| a == tx.address)
        })
        .collect();
    let (Some(first), Some(last)) = (reads.first(), reads.last()) else {
        return;
    };
    // Every byte read, headers included: a little more than the body.
    let bytes: u64 = reads.iter().filter_map(|e| e.num_bytes).sum();
    let body_seconds = (last.t - first.t).max(0.0);
    tx.x_transfer = probes::records::TransferStats {
        ttfb: (first.t - tx.t0).max(0.0),
        body_seconds,
        bytes,
        rate_bps: probes::http::rate_lower_bound(bytes, body_seconds),
    };
}

/// Sentences on what the measurement's data could not support, for the
/// verdict's evidence.
pub fn limit_sentences(m: &Measurement, limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if !limits.foreign {
        return out;
    }
    out.push(format!(
        "Re-analysed from {} {} data (web_connectivity {}): OONI records one DNS \
         reply per query, without every datagram or its IP TTL, and its control \
         reports a body length, title and headers but no body fingerprint or \
         transfer rate.",
        if m.software_name.is_empty() {
            "OONI"
        } else {
            m.software_name.as_str()
        },
        m.software_version,
        if m.test_version.is_empty() {
            "version unknown"
        } else {
            m.test_version.as_str()
        }
    ));
    if limits.engine_assumed {
        out.push(
            "This version did not record which resolver answered: its lookups are taken \
             as the system resolver's."
                .into(),
        );
    }
    if limits.no_control {
        let why = m
            .test_keys
            .control_failure
            .as_deref()
            .map(|f| format!(" (control_failure: {f})"))
            .unwrap_or_default();
        out.push(format!(
            "The measurement holds no control answer{why}: nothing can be compared \
             with an uncensored vantage point."
        ));
    }
    if limits.no_tls_records {
        out.push(
            "This version recorded no TLS handshakes: certificate and TLS-level \
             interference cannot be told apart from other failures."
                .into(),
        );
    }
    if limits.no_timing {
        out.push(
            "No network events were recorded: the body's transfer rate is unknown, so \
             throttling cannot be judged."
                .into(),
        );
    }
    out
}
