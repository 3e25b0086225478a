//! Tests: the probe (`web::measure`) and the control server's measurement
//! (`control::server::measure::Measurer`) measure with one flow
//! (`probes::flow`). The same loopback fake site, measured by both, gives
//! the same records for every failure class: the TCP, TLS and HTTP
//! failure strings, the status code and the Location, and the control's
//! legacy test-helper strings derived from the same `Failure`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatewatch::control::protocol::{ControlRequest, ControlResponse};
use gatewatch::control::server::measure::{validate, Measurer, StepTimeouts};
use gatewatch::control::server::resolver::ResolverSpec;
use gatewatch::control::server::ssrf::AddressPolicy;
use gatewatch::model::WebTestKeys;
use gatewatch::web::{measure, WebSettings};
use probes::tls::TrustRoots;
use probes::Failure;

use crate::fakes::ca::{self_signed, TestCa};
use crate::fakes::http::{self as fhttp, response, Behaviour};
use crate::fakes::{tcp as ftcp, tls as ftls};

/// Every step's timeout, on both sides.
const STEP: Duration = Duration::from_secs(1);

/// What one path recorded for the site's one endpoint and one hop.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// The TCP connect's failure, in the legacy helper's words.
    tcp: Option<String>,
    /// The TLS handshake's failure, when one was made.
    tls: Option<Option<String>>,
    /// The response's status code, -1 when there was none.
    code: i64,
    /// The redirect's Location.
    location: Option<String>,
    /// Why the hop failed (OONI's string).
    failure: Option<String>,
    /// The same failure in the legacy helper's `http_request` words.
    helper: Option<String>,
}

fn probe_settings(roots: Arc<TrustRoots>) -> WebSettings {
    WebSettings {
        resolvers: Vec::new(),
        system_resolver: false,
        roots,
        treat_as_public: vec!["127.0.0.1/32".parse().unwrap()],
        tcp: STEP,
        tls: STEP,
        http: STEP,
        ..WebSettings::default()
    }
}

fn control(roots: Arc<TrustRoots>) -> Arc<Measurer> {
    Arc::new(Measurer {
        policy: AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]),
        // IP-literal URLs only: no lookup is made (port 9 of the discard
        // service on loopback, never a real resolver).
        resolver: ResolverSpec::Udp("127.0.0.1:9".parse().unwrap()),
        roots,
        body_cap: probes::http::DEFAULT_BODY_CAP,
        steps: StepTimeouts {
            dns: STEP,
            connect: STEP,
            tls: STEP,
            http: STEP,
        },
        geo: None,
    })
}

fn probe_seen(k: &WebTestKeys, addr: SocketAddr) -> Seen {
    let key = addr.to_string();
    let tcp = k
        .tcp_connect
        .iter()
        .find(|c| c.ip == addr.ip().to_string() && c.port == addr.port())
        .expect("a tcp_connect record");
    let req = k.requests.first();
    Seen {
        tcp: tcp
            .status
            .failure
            .as_ref()
            .map(|f| f.helper_tcp().to_string()),
        tls: k
            .tls_handshakes
            .iter()
            .find(|h| h.address == key)
            .map(|h| h.failure.as_ref().map(Failure::to_string)),
        code: req.map_or(-1, |r| {
            if r.response.code > 0 {
                r.response.code
            } else {
                -1
            }
        }),
        location: req.and_then(|r| r.location().map(str::to_string)),
        failure: k.http_experiment_failure.clone(),
        helper: k
            .http_experiment_failure
            .as_deref()
            .map(|s| Failure::parse(s).helper_http().to_string()),
    }
}

fn control_seen(r: &ControlResponse, addr: SocketAddr) -> Seen {
    let key = addr.to_string();
    let hop = &r.x_redirect_chain[0];
    // The endpoint measurement and the fetch's own connect agree.
    assert_eq!(r.tcp_connect[&key], hop.tcp_connect[&key]);
    Seen {
        tcp: hop.tcp_connect[&key].failure.clone(),
        tls: hop.tls_handshake.get(&key).map(|t| t.failure.clone()),
        code: hop.status_code,
        location: hop.location.clone(),
        failure: hop.failure.clone(),
        helper: r.http_request.failure.clone(),
    }
}

/// Measures `url` (whose only endpoint is `addr`) by both paths, trusting
/// `roots`, and returns what each saw.
async fn both(url: &str, addr: SocketAddr, roots: Arc<TrustRoots>) -> (Seen, Seen) {
    let keys = measure(url, &probe_settings(Arc::clone(&roots)), None).await;
    let req = ControlRequest {
        http_request: url.to_string(),
        tcp_connect: vec![addr.to_string()],
        ..ControlRequest::default()
    };
    let parsed = validate(&req).expect("a valid request");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let resp = control(roots).measure(req, parsed, deadline).await;
    (probe_seen(&keys, addr), control_seen(&resp, addr))
}

/// Asserts both paths saw `expected` (trusting Mozilla's roots).
async fn same(url: &str, addr: SocketAddr, expected: Seen) {
    same_trusting(url, addr, TrustRoots::webpki(), expected).await;
}

/// Asserts both paths, trusting `roots`, saw `expected`.
async fn same_trusting(url: &str, addr: SocketAddr, roots: Arc<TrustRoots>, expected: Seen) {
    let (probe, control) = both(url, addr, roots).await;
    assert_eq!(probe, control, "{url}: probe vs control");
    assert_eq!(probe, expected, "{url}");
}

fn seen(tcp: Option<&str>, tls: Option<Option<&str>>, code: i64, failure: Option<&str>) -> Seen {
    Seen {
        tcp: tcp.map(str::to_string),
        tls: tls.map(|t| t.map(str::to_string)),
        code,
        location: None,
        failure: failure.map(str::to_string),
        helper: failure.map(|f| Failure::parse(f).helper_http().to_string()),
    }
}

/// The connect failed with `failure` (`legacy` in the helper's words).
fn tcp_failed(legacy: &str, failure: &str) -> Seen {
    seen(Some(legacy), None, -1, Some(failure))
}

/// The handshake failed with `failure`.
fn tls_failed(failure: &str) -> Seen {
    seen(None, Some(Some(failure)), -1, Some(failure))
}

#[tokio::test]
async fn ok_page() {
    let page = response(200, "OK", &[("Content-Type", "text/html")], b"<p>hi</p>");
    let site = fhttp::spawn(Behaviour::Respond(page)).await;
    let url = format!("http://{}/", site.addr);
    same(&url, site.addr, seen(None, None, 200, None)).await;
}

#[tokio::test]
async fn connection_refused() {
    let addr = ftcp::closed_port();
    let url = format!("http://{addr}/");
    let want = tcp_failed("connection_refused_error", "connection_refused");
    assert_eq!(want.helper.as_deref(), Some("connection_refused_error"));
    same(&url, addr, want).await;
}

#[tokio::test]
async fn reset_after_client_hello() {
    let addr = ftcp::reset_after_first_read().await;
    let url = format!("https://{addr}/");
    let want = tls_failed("connection_reset");
    assert_eq!(want.helper.as_deref(), Some("unknown_error"));
    same(&url, addr, want).await;
}

#[tokio::test]
async fn blackhole_timeout() {
    let hole = ftcp::blackhole();
    let url = format!("http://{}/", hole.addr);
    let want = tcp_failed("generic_timeout_error", "generic_timeout_error");
    same(&url, hole.addr, want).await;
}

#[tokio::test]
async fn untrusted_certificate() {
    let cert = self_signed(&["127.0.0.1"]);
    let site = ftls::spawn(&cert, Behaviour::Respond(b"never sent".to_vec())).await;
    let url = format!("https://{}/", site.addr);
    let want = tls_failed("ssl_unknown_authority");
    same(&url, site.addr, want).await;
    assert!(site.seen().is_empty(), "no GET over an untrusted chain");
}

#[tokio::test]
async fn eof_after_the_request() {
    let site = fhttp::spawn(Behaviour::CloseAfterRequest).await;
    let url = format!("http://{}/", site.addr);
    same(&url, site.addr, seen(None, None, -1, Some("eof_error"))).await;
}

#[tokio::test]
async fn redirects_to_bad_locations() {
    for (location, failure) in [
        ("http://", "http_invalid_redirect_location_host"),
        (
            "ftp://files.example/",
            "unknown_failure: unsupported redirect scheme \"ftp\"",
        ),
    ] {
        let reply = response(302, "Found", &[("Location", location)], b"");
        let site = fhttp::spawn(Behaviour::Respond(reply)).await;
        let url = format!("http://{}/", site.addr);
        let want = Seen {
            location: Some(location.to_string()),
            ..seen(None, None, 302, Some(failure))
        };
        assert_eq!(want.helper.as_deref(), Some("unknown_error"));
        same(&url, site.addr, want).await;
    }
}

#[tokio::test]
async fn https_ok_and_expired_certificate() {
    let ca = TestCa::new("one flow CA");
    let page = response(200, "OK", &[("Content-Type", "text/html")], b"<p>hi</p>");
    let good = ftls::spawn(&ca.issue(&["127.0.0.1"]), Behaviour::Respond(page)).await;
    let url = format!("https://{}/", good.addr);
    let want = seen(None, Some(None), 200, None);
    same_trusting(&url, good.addr, ca.roots(), want).await;

    let expired = ca.issue_expired(&["127.0.0.1"]);
    let old = ftls::spawn(&expired, Behaviour::Respond(b"never sent".to_vec())).await;
    let url = format!("https://{}/", old.addr);
    let want = tls_failed("ssl_invalid_certificate");
    same_trusting(&url, old.addr, ca.roots(), want).await;
    assert!(old.seen().is_empty(), "no GET over an expired chain");
}
