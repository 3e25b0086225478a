//! Per-URL web measurement, following OONI's Web Connectivity LTE.
//!
//! [`measure`] takes one URL and returns its [`WebTestKeys`]: every DNS
//! lookup (each resolver kept apart), every TCP connect and TLS handshake,
//! the HTTP round trips (one per redirect depth, newest first), the network
//! events, the control's answer and any injection evidence. It never panics
//! and never returns an error: whatever went wrong is a recorded failure.
//!
//! Per depth (depth 0 is the input URL, depth N the N-th redirect target):
//! 1. DNS fan-out in parallel (`dns.rs`): the system resolver, UDP A/AAAA to
//!    each configured resolver, DoH A/AAAA to each DoH server. Flows start
//!    once the system resolver gave a usable address or every lookup ended;
//!    lookups still running (a UDP lookup listens `listen_after_first`
//!    after its first reply, for injected duplicates) are recorded when they
//!    end, and flows start for any new address they bring.
//! 2. Endpoint flows for every resolved address (`endpoints.rs`): TCP to the
//!    URL's port (TLS too for https), plus a TLS-only flow to the https port
//!    for http URLs without an explicit port (to validate the address for
//!    the name). At most [`WebSettings::max_parallel_endpoints`] at once.
//! 3. One GET per depth (`fetch.rs`) over the best connected endpoint: the
//!    system resolver's addresses first, then UDP, then DoH, then addresses
//!    only the control found.
//! 4. A redirect (301/302/303/307/308) starts the next depth
//!    (`probes::flow::next`, the rule the control follows too), with the
//!    cookies the chain has set so far (`cookies.rs`).
//!
//! The endpoint steps, the GET and the redirect rule are `probes::flow`'s,
//! shared with the control server; what is the probe's own here is the
//! address policy (`endpoints::ProbePolicy`), the concurrency, the priority
//! selector and the records kept.
//!
//! At depth 0, as soon as every lookup ended, the control is asked about
//! the URL (`control.rs`) in parallel with the probe's own steps; addresses only the
//! control found are measured too. Classic comparison keys
//! (`dns_consistency`, `blocking`, ...) and `x_verdict` are left for the
//! `analysis` module.
//!
//! Injection evidence (`x_injection`, `injection.rs`): UDP replies to one
//! query that disagree (`dns.duplicate_replies`) or arrive with different
//! IP TTLs (`dns.ttl_mismatch`), and, with
//! [`WebSettings::dns_non_resolver_check`], any answer from an address that
//! runs no DNS server (`dns.non_resolver_answer`).

mod context;
mod control;
mod cookies;
mod dns;
mod endpoints;
mod fetch;
mod injection;
mod limits;
mod quic;
mod resend;
mod tls_retry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use probes::dns::doh::DohServer;
use probes::tls::TrustRoots;

use crate::control::client::ControlClient;
use crate::model::WebTestKeys;

pub use limits::HostLimiter;
pub use quic::{QuicMode, QUIC_CONTROL_NAME};

/// What `x_interrupted` says when the per-URL deadline expired.
pub const INTERRUPTED_DEADLINE: &str = "deadline";
/// What `x_interrupted` says when the input is not a measurable URL.
pub const INTERRUPTED_INVALID_INPUT: &str = "invalid_input";
/// The `http_experiment_failure` after more than `max_redirects` redirects
/// (OONI's exact string).
pub const TOO_MANY_REDIRECTS: &str = probes::flow::redirect::TOO_MANY_REDIRECTS;
/// `control_failure` when no control client was given.
pub const CONTROL_DISABLED: &str = "control_disabled";

/// How to measure one URL. Build it once per run and share it.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// UDP resolvers asked for A and AAAA (each its own `queries[]` entries).
    /// Default: `8.8.8.8:53`.
    pub resolvers: Vec<SocketAddr>,
    /// DoH servers asked for A and AAAA. Default: none.
    pub doh: Vec<DohServer>,
    /// Whether to ask the system resolver (getaddrinfo). Default: true.
    pub system_resolver: bool,
    /// Timeout of each DNS lookup. Default: 4 s.
    pub dns: Duration,
    /// How long a UDP lookup keeps listening after the first reply, to catch
    /// racing (injected) replies. Default: 500 ms.
    pub listen_after_first: Duration,
    /// TCP connect timeout. Default: 10 s.
    pub tcp: Duration,
    /// TLS handshake timeout. Default: 10 s.
    pub tls: Duration,
    /// HTTP round trip (body included) timeout. Default: 10 s.
    pub http: Duration,
    /// The whole URL's deadline; on expiry what was measured is returned with
    /// `x_interrupted = "deadline"`. Default: 60 s.
    pub url_deadline: Duration,
    /// Body bytes kept per response. Default: 512 KiB.
    pub body_cap: usize,
    /// Redirects followed; one more gives [`TOO_MANY_REDIRECTS`]. Default: 10.
    pub max_redirects: u32,
    /// Trust anchors certificates are judged against. Default: webpki-roots.
    pub roots: Arc<TrustRoots>,
    /// Addresses measured even though they are loopback or unspecified
    /// (test labs). Default: none, so `127.0.0.0/8`, `::1`, `0.0.0.0/8` and
    /// `::` answers are recorded but never dialled.
    pub treat_as_public: Vec<IpNet>,
    /// Endpoint flows (TCP, TLS) of one URL running at once. Default: 8.
    pub max_parallel_endpoints: usize,
    /// Limits connections per destination host name across all URLs of a
    /// run (shared by the caller). A permit is taken once a TCP connection
    /// is established and held until it is dropped (TLS handshake and GET
    /// included), at every redirect depth. Connection attempts themselves
    /// are not limited, so a blackholed host does not serialise a URL's
    /// endpoints into one timeout after another. Default: none.
    pub host_limiter: Option<HostLimiter>,
    /// An address that runs no DNS server: when set, an A query for each
    /// URL's host is sent there at depth 0, and any reply is recorded as
    /// `dns.non_resolver_answer` injection evidence. Default: none.
    pub dns_non_resolver_check: Option<SocketAddr>,
    /// The port of `http://` URLs without an explicit port. Default: 80.
    pub http_port: u16,
    /// The port of `https://` URLs without an explicit port, and of the
    /// TLS validation flow of `http://` URLs. Default: 443.
    pub https_port: u16,
    /// When to make QUIC (HTTP/3) handshakes, on the https port over UDP,
    /// with the TLS timeout. Default: [`QuicMode::Discovered`].
    pub quic: QuicMode,
    /// Seconds added to this machine's clock when certificates are judged
    /// (the offset to the reference time measured before the run; see
    /// `run::clock`). Default: 0.
    pub clock_offset_secs: i64,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            resolvers: vec![SocketAddr::from(([8, 8, 8, 8], 53))],
            doh: Vec::new(),
            system_resolver: true,
            dns: Duration::from_secs(4),
            listen_after_first: Duration::from_millis(500),
            tcp: Duration::from_secs(10),
            tls: Duration::from_secs(10),
            http: Duration::from_secs(10),
            url_deadline: Duration::from_secs(60),
            body_cap: probes::http::DEFAULT_BODY_CAP,
            max_redirects: probes::flow::redirect::MAX_REDIRECTS,
            roots: TrustRoots::webpki(),
            treat_as_public: Vec::new(),
            max_parallel_endpoints: 8,
            host_limiter: None,
            dns_non_resolver_check: None,
            http_port: 80,
            https_port: 443,
            quic: QuicMode::Discovered,
            clock_offset_secs: 0,
        }
    }
}

/// Measures one URL (OONI LTE-like; see the module docs).
///
/// Never panics and never fails: an invalid URL gives
/// `x_interrupted = "invalid_input"` and an `http_experiment_failure`
/// naming what was wrong; the per-URL deadline gives what was measured so
/// far with `x_interrupted = "deadline"`. The future may be dropped at any
/// await (Ctrl-C): every task it started is aborted with it, and the caller
/// then records `x_interrupted = "interrupted"` itself.
///
/// `control: None` measures without a control (`control_failure` is
/// [`CONTROL_DISABLED`]). When the control answers, `control.x_client_addr`
/// (the probe's public address) is left in place for the caller, which must
/// take it out before the measurement is written.
pub async fn measure(
    url: &str,
    settings: &WebSettings,
    control: Option<&ControlClient>,
) -> WebTestKeys {
    context::measure(url, settings, control, None).await
}

/// [`measure`], telling `fetched` once the redirect chain, the control and
/// the other depth-0 checks have ended, and only the depths' own flows are
/// left (UDP lookups listening for late and duplicate replies, flows to
/// the addresses those bring, validation handshakes). The keys are
/// returned only when those ended too. `fetched` is dropped untold when
/// the measurement ends otherwise (deadline, invalid input).
pub async fn measure_telling_fetched(
    url: &str,
    settings: &WebSettings,
    control: Option<&ControlClient>,
    fetched: tokio::sync::oneshot::Sender<()>,
) -> WebTestKeys {
    context::measure(url, settings, control, Some(fetched)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn measure_future_is_send() {
        // The run layer spawns one `measure` per URL.
        let settings = WebSettings::default();
        let fut = measure("http://example.com/", &settings, None);
        assert_send(&fut);
    }

    #[test]
    fn defaults() {
        let s = WebSettings::default();
        assert_eq!(s.resolvers, vec!["8.8.8.8:53".parse().unwrap()]);
        assert!(s.system_resolver);
        assert_eq!(s.dns, Duration::from_secs(4));
        assert_eq!(s.tcp, Duration::from_secs(10));
        assert_eq!(s.tls, Duration::from_secs(10));
        assert_eq!(s.http, Duration::from_secs(10));
        assert_eq!(s.url_deadline, Duration::from_secs(60));
        assert_eq!(s.body_cap, 512 * 1024);
        assert_eq!(s.max_redirects, 10);
        assert_eq!((s.http_port, s.https_port), (80, 443));
    }
}
