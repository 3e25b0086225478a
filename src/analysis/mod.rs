//! Analysis: compares a measurement with the control and classifies it.
//!
//! [`analyze`] fills two things into a [`Measurement`]'s test keys:
//!
//! 1. **OONI's classic keys** with Web Connectivity LTE semantics
//!    (`dns_consistency`, `body_length_match`, `body_proportion`,
//!    `status_code_match`, `headers_match`, `title_match`, `blocking`,
//!    `accessible`), so our results read next to OONI's. Only the system
//!    resolver's depth-0 lookup sets `dns_consistency` (the first configured
//!    UDP/TCP resolver stands in when the run did not use the system
//!    resolver), and DNS inconsistency dominates the label.
//! 2. **Our verdict** `x_verdict` ([`crate::model::Verdict`]):
//!    - `status`: `accessible`, `blocked`, `throttled`, `down`,
//!      `inconclusive`;
//!    - `layer`: `dns`, `tcp_ip`, `tls`, `http`, `throttling` or null;
//!    - `mechanism`: `dns.nxdomain`, `dns.no_answer`, `dns.servfail`,
//!      `dns.timeout`, `dns.localhost`, `dns.bogon`, `dns.sinkhole` (an answer
//!      inconsistent with the control by IP, ASN and TLS), `dns.injected`
//!      (racing replies disagreed), `tcp.timeout`, `tcp.refused`,
//!      `tcp.unreachable`, `tls.reset`, `tls.eof`, `tls.timeout`, `tls.mitm`
//!      (our chain refused while the control's verified), `http.reset`,
//!      `http.eof`, `http.timeout`, `http.blockpage`,
//!      `http.redirect_to_blockpage`, `throttling`, `server_side`;
//!    - `confidence`: `confirmed` (a fingerprint, or independent signals
//!      agreeing), `likely` (one signal against the control), `possible`
//!      (no control for the step, or weak signals);
//!    - `nig_article6`: `block` (name or address refused, blockpage),
//!      `disconnect` (TLS/HTTP connection torn down or silently dropped after
//!      the trigger), `degrade` (throttling), or null;
//!    - `evidence`: sentences naming resolvers, addresses and observations.
//! 3. OONI LTE's non-exclusive facets `x_dns_flags` and `x_blocking_flags`
//!    ([`flags`]).
//!
//! # Rules
//! - A failure at both the probe and the control is `down`, never a block.
//!   This covers the traps: a site down everywhere, NXDOMAIN everywhere, bad
//!   certificates everywhere, a 15-hop redirect chain failing at both ends,
//!   records pointing to loopback for everyone, a 5xx answer to both.
//! - No control data → `inconclusive`, unless a blocking fingerprint matched
//!   or a signal is self-evident (`possible`): a loopback or bogon answer from
//!   the headline resolver while the other resolvers agree on public
//!   addresses; a certificate refused for the name at addresses that other
//!   resolvers do not give; a lookup failure while another resolver's
//!   addresses are TLS-valid for the name. A page fetched over TLS verified
//!   for the name is `accessible` even without a control (OONI does the same).
//! - DNS is judged by IP overlap, ASN overlap (control `ip_info`, then
//!   [`AnalysisContext::asn_db`], then the probe's own records) and TLS
//!   validity of the probe's addresses for the name — never by equality
//!   alone. An answer that leads to the control's page (a transparent proxy
//!   or a local CDN node) is `accessible`.
//! - A page that differs from the control's only in dynamic or
//!   client-dependent parts is not a blockpage: OONI's rule (same status, and
//!   body length ratio > 0.7, a shared uncommon header, or the same title;
//!   but a different title with no uncommon header in common is another
//!   page whatever the lengths), or the same status and `Server` with a body
//!   ratio ≥ 0.3. Framing headers (`content-length`, `connection`, ...) do not
//!   count as shared uncommon headers. A page matching
//!   a blocking fingerprint is a blockpage whatever its size; a match on an
//!   `fp`-scope fingerprint counts against blocking.
//! - **Server-side refusals** — 401/403/406/429/503 (challenge, geo-block) to
//!   the probe while the control got 2xx, from the same site (over TLS
//!   verified for the name, or with the same `Server` or an uncommon header in
//!   common), or an `fp`-scope page — get status **`accessible`** with
//!   mechanism `server_side`, layer `http`, no confidence and no article 6:
//!   the network delivered the site's own answer. Reported, not censorship.
//! - Throttling thresholds are in [`throttling`] (rate < 1/5 of the
//!   control's and < 2 Mbit/s on ≥ 64 KiB of the same content; or a TLS
//!   handshake > 1 s and > 5× the control's and the probe's own connect).
//!   A 2xx response whose body timed out while the control fetched at least
//!   64 KiB is `throttled` (`possible`), unless the body is known to have
//!   stalled at zero bytes (`slowbody.rs`).
//!
//! Addresses in [`AnalysisContext::treat_as_public`] are public for all of
//! this (labs use documentation ranges for "public" sites).
//!
//! # Use
//! Build one context per run (parsing the fingerprints is not free) and call
//! [`analyze`] on each measurement once its control answer is in:
//!
//! ```no_run
//! use std::sync::Arc;
//! use gatewatch::analysis::{analyze, AnalysisContext, Fingerprints};
//! # fn demo(m: &mut gatewatch::model::Measurement, dir: Option<&std::path::Path>)
//! #     -> Result<(), gatewatch::analysis::FingerprintError> {
//! let ctx = AnalysisContext {
//!     fingerprints: match dir {
//!         Some(d) => Fingerprints::load_dir(d)?, // --fingerprints DIR
//!         None => Fingerprints::shipped(),
//!     },
//!     asn_db: Some(Arc::new(|_ip| None)), // e.g. the --asn-db lookup
//!     probe_cc: "KH".into(),
//!     treat_as_public: vec![],
//! };
//! analyze(m, &ctx);
//! # Ok(()) }
//! ```

mod classic;
pub mod fingerprints;
pub mod flags;
pub mod throttling;

mod dnscheck;
mod httpdiff;
mod observe;
mod outcome;
mod slowbody;
mod verdict;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use fingerprints::{FingerprintError, FingerprintMatch, Fingerprints};

use crate::model::{Measurement, Verdict, VerdictStatus};

/// An ASN lookup: the run plugs in its MaxMind database here.
pub type AsnLookup = Arc<dyn Fn(IpAddr) -> Option<u32> + Send + Sync>;

/// What the analysis needs besides the measurement.
#[derive(Clone)]
pub struct AnalysisContext {
    /// Blocking fingerprints (default: our shipped set).
    pub fingerprints: Fingerprints,
    /// ASN of an address, when a database is available.
    pub asn_db: Option<AsnLookup>,
    /// The probe's country (upper case, `ZZ` unknown): a fingerprint whose
    /// expected countries include it is `confirmed`.
    pub probe_cc: String,
    /// Ranges treated as public (not loopback, not bogons).
    pub treat_as_public: Vec<ipnet::IpNet>,
}

impl Default for AnalysisContext {
    fn default() -> Self {
        AnalysisContext {
            fingerprints: Fingerprints::shipped(),
            asn_db: None,
            probe_cc: "ZZ".into(),
            treat_as_public: Vec::new(),
        }
    }
}

impl fmt::Debug for AnalysisContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalysisContext")
            .field("dns_fingerprints", &self.fingerprints.dns.len())
            .field("http_fingerprints", &self.fingerprints.http.len())
            .field("asn_db", &self.asn_db.is_some())
            .field("probe_cc", &self.probe_cc)
            .field("treat_as_public", &self.treat_as_public)
            .finish()
    }
}

impl AnalysisContext {
    /// The ASN of an address from [`AnalysisContext::asn_db`].
    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        self.asn_db.as_ref().and_then(|f| f(ip))
    }

    /// True when `ip` is inside a `treat_as_public` range.
    pub fn is_public_override(&self, ip: IpAddr) -> bool {
        self.treat_as_public.iter().any(|n| n.contains(&ip))
    }
}

/// Fills the classic keys and `x_verdict` of `m`'s test keys from what it
/// measured and its control answer (`test_keys.control`). Never panics on
/// odd input: what cannot be judged stays null / `inconclusive`.
pub fn analyze(m: &mut Measurement, ctx: &AnalysisContext) {
    let Some(target) = m.input.as_deref().and_then(observe::Target::parse) else {
        let tk = &mut m.test_keys;
        tk.x_verdict = Some(Verdict {
            status: VerdictStatus::Inconclusive,
            evidence: vec!["the input is not an http(s) URL with a host".into()],
            ..Verdict::default()
        });
        return;
    };
    let (classic, verdict, (dns_flags, blocking_flags)) = {
        let m: &Measurement = m;
        let control = m.test_keys.control.as_ref().map(|r| observe::Control { r });
        let view = dnscheck::DnsView::build(m, ctx, control, &target.host);
        let outcome = outcome::outcome(m, &target);
        let headline = view.primary.as_ref().map(|p| p.addrs.as_slice());
        let classic_view = outcome::classic_outcome(m, &target, &outcome, headline);
        let mut classic = classic::compute(ctx, &target, &view, &classic_view, control);
        if classic.diff.is_none() {
            classic.diff = classic::page_diff(&outcome, control);
        }
        let inputs = verdict::Inputs {
            m,
            ctx,
            target: &target,
            view: &view,
            outcome: &outcome,
            control,
            diff: classic.diff,
        };
        let flags = flags::compute(m, &target, &view, &outcome, control, classic.diff);
        (classic, verdict::decide(&inputs), flags)
    };
    let tk = &mut m.test_keys;
    tk.dns_consistency = classic.dns_consistency.map(str::to_string);
    let d = classic.diff.unwrap_or_default();
    tk.body_proportion = d.body_proportion;
    tk.body_length_match = d.body_length_match;
    tk.status_code_match = d.status_code_match;
    tk.headers_match = d.headers_match;
    tk.title_match = d.title_match;
    tk.blocking = classic.blocking;
    tk.accessible = classic.accessible;
    tk.x_verdict = Some(verdict);
    tk.x_dns_flags = Some(dns_flags);
    tk.x_blocking_flags = Some(blocking_flags);
}
