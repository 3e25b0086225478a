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
//!    - `evidence`: sentences naming resolvers, addresses and observations;
//!      an `accessible` verdict also names connects that failed in one
//!      address family only where the control connected (e.g. IPv6 only).
//! 3. The HTTP/3 verdict `x_quic_verdict` when QUIC was measured
//!    (`quic.timeout`, `quic.sni_block`, or a site without
//!    HTTP/3 as `down`), beside `x_verdict` and never changing it.
//! 4. OONI LTE's non-exclusive facets `x_dns_flags` and `x_blocking_flags`
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
//! - **A page is judged by what it says** ([`pagetext`], [`lexicon`],
//!   [`cluster`]). Our control sends a text fingerprint of its page
//!   (`x_body_text`: a bottom-k sketch of the visible text's words); text
//!   similarity ≥ 0.25 is the same page (a page whose text changes by 40 %
//!   per request scores 0.35–0.53; a blockpage against its site 0.00; see
//!   [`pagetext`] for the measurements). A cleartext page whose text differs
//!   is a blockpage only with support: the same page served for two or more
//!   unrelated sites in the run (run-wide clustering, `x_verdict.cluster`),
//!   or blocking words (English, Khmer, Thai, Vietnamese, Burmese, Lao) on a
//!   short page (< 120 words) that the control's page lacks. A challenge,
//!   CAPTCHA or geo-restriction page is `server_side`; a page titled like
//!   the site's, sharing an uncommon header, or a full page is another
//!   edition (`accessible`); anything else is `inconclusive`. Server
//!   software, status and length are never enough. Without the control's
//!   text (OONI's helpers), OONI's rule (same status, and a body length
//!   ratio above 0.7, a shared uncommon header, or the same title; but a different
//!   title with no uncommon header in common is another page whatever the
//!   lengths) decides sameness. Framing headers (`content-length`,
//!   `connection`, ...) do not count as shared uncommon headers. A page
//!   matching a blocking fingerprint is a blockpage whatever its size; a
//!   match on an `fp`-scope fingerprint counts against blocking.
//! - **DNS at every hop** (`hopdns.rs`): a redirect target's name gets the
//!   input's judgement. The headline resolver failing for it while the
//!   control resolved it, or answering loopback, a bogon, a fingerprinted
//!   or certificate-refused address, is `blocked`/`dns` naming the hop,
//!   even when another resolver's answer let the fetch continue.
//! - **Diverted names**: an answer sharing no address with the control
//!   whose link to the site is only a verified certificate or the same page
//!   (a middlebox passing the site through) adds `dns.diverted` to
//!   `x_verdict.interference` when ASN data shows it outside the site's
//!   network (status stays `accessible`); with the same ASN (a CDN node)
//!   nothing is added; without ASN data the evidence says it is unknown.
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
//!     clusters: None, // or one shared gatewatch::analysis::cluster::Registry per run
//!     line_rate_bps: None, // the run's line baseline, when known
//!     line_loss: None,     // the run's retried-step share, when known
//! };
//! analyze(m, &ctx);
//! # Ok(()) }
//! ```

mod classic;
pub mod cluster;
pub mod fingerprints;
pub mod flags;
pub mod lexicon;
pub mod lossy;
pub mod pagetext;
pub mod throttling;

mod dnscheck;
mod family;
mod hopdns;
mod httpdiff;
mod interception;
mod observe;
mod outcome;
mod pagecmp;
mod quic;
mod slowbody;
mod sni_layout;
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
    /// The run's registry of probe-side pages, for clustering blockpages
    /// across sites ([`cluster`]); `None` judges each URL alone.
    pub clusters: Option<Arc<cluster::Registry>>,
    /// The line baseline: the median transfer rate (bytes/s) of this run's
    /// large pages finished so far (see [`throttling`]); `None` means no
    /// baseline, and then nothing is judged throttled by its rate.
    pub line_rate_bps: Option<f64>,
    /// The share of retriable steps that needed a retry in this run's URLs
    /// finished so far (see [`lossy`]); `None` before any.
    pub line_loss: Option<f64>,
}

impl Default for AnalysisContext {
    fn default() -> Self {
        AnalysisContext {
            fingerprints: Fingerprints::shipped(),
            asn_db: None,
            probe_cc: "ZZ".into(),
            treat_as_public: Vec::new(),
            clusters: None,
            line_rate_bps: None,
            line_loss: None,
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
            .field("clusters", &self.clusters.is_some())
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
        let page = match &outcome {
            outcome::Outcome::Page { tx, .. } => Some(pagecmp::compare(tx, control.map(|c| c.r))),
            _ => None,
        };
        let inputs = verdict::Inputs {
            page: page.as_ref(),
            m,
            ctx,
            target: &target,
            view: &view,
            outcome: &outcome,
            control,
            diff: classic.diff,
        };
        let flags = flags::compute(m, &target, &view, &outcome, control, classic.diff);
        let mut verdict = verdict::decide(&inputs);
        family::note(m, &mut verdict);
        (classic, verdict, flags)
    };
    let quic_verdict = quic::decide(m, &verdict);
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
    let mut verdict = verdict;
    for q in &tk.queries {
        if q.failure == Some(probes::Failure::ProbeResourceLimit) {
            let note = format!(
                "the {} lookup of {} did not run (x_probe_resource_limit: this probe's own limit), so it is no evidence",
                q.engine, q.hostname
            );
            if !verdict.evidence.contains(&note) {
                verdict.evidence.push(note);
            }
        }
    }
    if verdict.status == VerdictStatus::Inconclusive
        && verdict
            .evidence
            .iter()
            .any(|e| e.contains(interception::CLOCK_MARK))
    {
        // A refusal set aside because of the clock is not OONI's
        // http-failure either.
        tk.blocking = crate::model::Blocking::Undecided;
        tk.accessible = None;
    }
    tk.x_verdict = Some(verdict);
    tk.x_quic_verdict = quic_verdict;
    tk.x_dns_flags = Some(dns_flags);
    tk.x_blocking_flags = Some(blocking_flags);
}
