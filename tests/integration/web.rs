//! Tests: the per-URL web measurement (`gatewatch::web::measure`) against
//! real servers on 127.0.0.1: the shared fakes (test CA, HTTP and TLS
//! sites, scripted DNS, DoH, refused/blackholed/resetting ports) plus two
//! private ones at the end: a DNS server answering per name that can race
//! a forged reply with another IP TTL, and a JSON control.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gatewatch::control::client::ControlClient;
use gatewatch::model::WebTestKeys;
use gatewatch::web::{measure, HostLimiter, WebSettings, TOO_MANY_REDIRECTS};
use probes::dns::doh::DohServer;
use probes::records::TlsHandshake;

use self::private::NamedDns;
use crate::fakes::ca::TestCa;
use crate::fakes::dns::{self as fdns, Reply as DnsReply, Script};
use crate::fakes::http::{self as fhttp, response, Behaviour, HttpFake, SeenRequest};
use crate::fakes::{doh as fdoh, tcp as ftcp, tls as ftls};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Settings using only `resolver` (UDP), trusting `ca`, measuring loopback.
fn settings(resolver: SocketAddr, ca: &TestCa) -> WebSettings {
    WebSettings {
        resolvers: vec![resolver],
        system_resolver: false,
        roots: ca.roots(),
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        listen_after_first: Duration::from_millis(100),
        ..WebSettings::default()
    }
}

/// A DNS server answering 127.0.0.1 to every A query.
async fn localhost_dns() -> fdns::DnsFake {
    fdns::spawn(Script::always(DnsReply::Answer(vec![LOCALHOST]))).await
}

fn handler(f: impl Fn(&SeenRequest) -> Vec<u8> + Send + Sync + 'static) -> Behaviour {
    Behaviour::Handle(Arc::new(f))
}

fn ok(body: &str) -> Vec<u8> {
    response(200, "OK", &[("Content-Type", "text/html")], body.as_bytes())
}

fn redirect(location: &str) -> Vec<u8> {
    response(302, "Found", &[("Location", location)], b"")
}

/// The Host header of every request a fake served.
fn hosts(f: &HttpFake) -> Vec<String> {
    f.seen()
        .iter()
        .map(|r| r.header("host").unwrap_or_default().to_string())
        .collect()
}

fn tags(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn failure<T: ToString>(f: &Option<T>) -> Option<String> {
    f.as_ref().map(|f| f.to_string())
}

/// One TCP connect, failed with `f`, no HTTP request, and `f` as the
/// experiment's failure.
fn assert_only_connect_failed(k: &WebTestKeys, f: &str) {
    assert_eq!(k.tcp_connect.len(), 1);
    assert_eq!(
        failure(&k.tcp_connect[0].status.failure).as_deref(),
        Some(f)
    );
    assert!(k.requests.is_empty());
    assert_eq!(k.http_experiment_failure.as_deref(), Some(f));
}

fn body_text(k: &WebTestKeys, i: usize) -> String {
    String::from_utf8(k.requests[i].response.body.to_bytes()).unwrap()
}

fn handshake_to(k: &WebTestKeys, addr: SocketAddr) -> &TlsHandshake {
    k.tls_handshakes
        .iter()
        .find(|h| h.address == addr.to_string())
        .unwrap_or_else(|| panic!("no handshake to {addr}: {:?}", k.tls_handshakes))
}

#[tokio::test]
async fn plain_http_site_is_fully_recorded() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(handler(|r| {
        let host = r.header("host").unwrap_or_default();
        ok(&format!("<title>Plain site</title>{host} {}", r.target()))
    }))
    .await;
    let tls = ftls::spawn(&ca.issue(&["plain.example"]), Behaviour::Respond(ok("tls"))).await;
    let dns = localhost_dns().await;
    let s = WebSettings {
        http_port: http.addr.port(),
        https_port: tls.addr.port(),
        ..settings(dns.addr, &ca)
    };

    let k = measure("http://plain.example/page", &s, None).await;

    assert_eq!(k.agent, "redirect");
    assert_eq!(k.x_interrupted, None);
    assert_eq!(k.control_failure.as_deref(), Some("control_disabled"));
    assert_eq!(k.x_control_request, None);
    assert_eq!(k.dns_experiment_failure, None);
    assert_eq!(k.http_experiment_failure, None);

    // One UDP lookup per query type, to the fake resolver, kept apart.
    let resolver = dns.addr.to_string();
    let qs: Vec<(&str, &str, &str)> = k
        .queries
        .iter()
        .map(|q| {
            (
                q.engine.as_str(),
                q.query_type.as_str(),
                q.resolver_address.as_str(),
            )
        })
        .collect();
    assert_eq!(
        qs,
        vec![
            ("udp", "A", resolver.as_str()),
            ("udp", "AAAA", resolver.as_str())
        ]
    );
    assert_eq!(k.queries[0].failure, None);
    assert_eq!(k.queries[0].addrs(), vec![LOCALHOST]);
    assert_eq!(
        failure(&k.queries[1].failure).as_deref(),
        Some("dns_no_answer")
    );
    assert_eq!(tags(&k.queries[0].tags), vec!["depth=0"]);

    // The cleartext port (fetch) and the https port (TLS validation only).
    let mut eps: Vec<(u16, bool, Vec<&str>)> = k
        .tcp_connect
        .iter()
        .map(|c| (c.port, c.status.success, tags(&c.tags)))
        .collect();
    eps.sort();
    let mut want = vec![
        (http.addr.port(), true, vec!["depth=0", "fetch_body=true"]),
        (tls.addr.port(), true, vec!["depth=0", "fetch_body=false"]),
    ];
    want.sort();
    assert_eq!(eps, want);
    let hs = handshake_to(&k, tls.addr);
    assert_eq!(hs.failure, None);
    assert_eq!(hs.x_certificate_failure, None);
    assert_eq!(hs.server_name, "plain.example");
    assert_eq!(hs.peer_certificates.len(), 1);
    assert!(tls.seen().is_empty(), "the validation flow fetches nothing");

    // One GET, over the cleartext endpoint, with the URL's Host.
    assert_eq!(k.requests.len(), 1);
    let r = &k.requests[0];
    assert_eq!(r.failure, None);
    assert_eq!(r.address, http.addr.to_string());
    assert_eq!(r.request.url, "http://plain.example/page");
    assert_eq!(r.response.code, 200);
    assert_eq!(r.response.x_title.as_deref(), Some("Plain site"));
    assert_eq!(
        body_text(&k, 0),
        "<title>Plain site</title>plain.example /page"
    );
    assert_eq!(tags(&r.tags), vec!["depth=0", "fetch_body=true"]);
    assert_eq!(hosts(&http), vec!["plain.example".to_string()]);
    let fetch_flow = k
        .tcp_connect
        .iter()
        .find(|c| c.port == http.addr.port())
        .unwrap();
    assert_eq!(r.transaction_id, fetch_flow.transaction_id);

    // Transaction ids are unique per lookup and per flow.
    let mut ids: Vec<u64> = k.queries.iter().map(|q| q.transaction_id).collect();
    ids.extend(k.tcp_connect.iter().map(|c| c.transaction_id));
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);

    // Network events are sorted by time.
    assert!(!k.network_events.is_empty());
    assert!(k.network_events.windows(2).all(|w| w[0].t <= w[1].t));
    assert!(k.x_injection.is_empty());
}

#[tokio::test]
async fn https_site_with_a_valid_certificate() {
    let ca = TestCa::new("gatewatch test CA");
    let tls = ftls::spawn(
        &ca.issue(&["secure.example"]),
        Behaviour::Respond(ok("secure page")),
    )
    .await;
    let dns = localhost_dns().await;
    let s = WebSettings {
        https_port: tls.addr.port(),
        ..settings(dns.addr, &ca)
    };

    let k = measure("https://secure.example/", &s, None).await;

    assert_eq!(k.http_experiment_failure, None);
    assert_eq!(k.tcp_connect.len(), 1);
    assert_eq!(k.tls_handshakes.len(), 1);
    let hs = &k.tls_handshakes[0];
    assert_eq!(hs.failure, None);
    assert_eq!(hs.x_certificate_failure, None);
    assert!(!hs.no_tls_verify);
    assert_eq!(hs.server_name, "secure.example");
    assert_eq!(hs.x_verify_as, "secure.example");
    assert_eq!(tags(&hs.tags), vec!["depth=0", "fetch_body=true"]);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].response.code, 200);
    assert_eq!(k.requests[0].alpn, "http/1.1");
    assert_eq!(body_text(&k, 0), "secure page");
    assert_eq!(k.requests[0].transaction_id, hs.transaction_id);
    assert_eq!(hosts(&tls), vec!["secure.example".to_string()]);
}

#[tokio::test]
async fn http_to_https_redirect_chain() {
    let ca = TestCa::new("gatewatch test CA");
    let tls = ftls::spawn(
        &ca.issue(&["final.example"]),
        Behaviour::Respond(ok("final")),
    )
    .await;
    let target = format!("https://final.example:{}/landing", tls.addr.port());
    let http = fhttp::spawn(Behaviour::Respond(redirect(&target))).await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://start.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.http_experiment_failure, None);
    assert_eq!(k.requests.len(), 2);
    // Newest first: the final response, then the redirect.
    let last = &k.requests[0];
    assert_eq!(last.request.url, target);
    assert_eq!(last.response.code, 200);
    assert_eq!(tags(&last.tags), vec!["depth=1", "fetch_body=true"]);
    let first = &k.requests[1];
    assert_eq!(first.request.url, url);
    assert_eq!(first.response.code, 302);
    assert_eq!(tags(&first.tags), vec!["depth=0", "fetch_body=true"]);
    // Fresh DNS per hop: A and AAAA for each host.
    let looked_up: Vec<(String, Vec<&str>)> = k
        .queries
        .iter()
        .map(|q| (format!("{} {}", q.hostname, q.query_type), tags(&q.tags)))
        .collect();
    assert_eq!(
        looked_up,
        vec![
            ("start.example A".to_string(), vec!["depth=0"]),
            ("start.example AAAA".to_string(), vec!["depth=0"]),
            ("final.example A".to_string(), vec!["depth=1"]),
            ("final.example AAAA".to_string(), vec!["depth=1"]),
        ]
    );
    let hs = handshake_to(&k, tls.addr);
    assert_eq!(hs.failure, None);
    assert_eq!(hs.server_name, "final.example");
    assert_eq!(tags(&hs.tags), vec!["depth=1", "fetch_body=true"]);
}

#[tokio::test]
async fn twelve_redirects_stop_after_ten() {
    let ca = TestCa::new("gatewatch test CA");
    // /r/N redirects to /r/N-1; /r/0 is a page.
    let http = fhttp::spawn(handler(|r| {
        let n: u32 = r.target().trim_start_matches("/r/").parse().unwrap_or(0);
        if n == 0 {
            ok("end")
        } else {
            redirect(&format!("/r/{}", n - 1))
        }
    }))
    .await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://hops.example:{}/r/12", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some("unknown_failure: stopped after too many redirects")
    );
    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some(TOO_MANY_REDIRECTS)
    );
    // Depths 0..=10 fetched: 11 requests, newest (depth 10, /r/2) first.
    assert_eq!(k.requests.len(), 11);
    for (i, r) in k.requests.iter().enumerate() {
        let depth = 10 - i;
        assert_eq!(tags(&r.tags)[0], format!("depth={depth}"));
        assert_eq!(
            r.request.url,
            format!("http://hops.example:{}/r/{}", http.addr.port(), 12 - depth)
        );
        assert_eq!(r.response.code, 302);
    }
    assert_eq!(http.seen().len(), 11);
    assert_eq!(k.queries.len(), 22, "fresh A and AAAA lookups per hop");
}

#[tokio::test]
async fn broken_location_is_an_invalid_redirect_host() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(redirect("http://"))).await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://broken.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some("http_invalid_redirect_location_host")
    );
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].response.code, 302);
    assert_eq!(
        k.requests[0]
            .response
            .headers
            .get("location")
            .map(String::as_str),
        Some("http://")
    );
}

#[tokio::test]
async fn racing_forged_dns_reply_is_injection_evidence() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("genuine"))).await;
    // The forged answer (127.0.0.2, IP TTL 200) wins the race; the genuine
    // one (127.0.0.1, IP TTL 64) follows.
    let dns = NamedDns::start(
        &[("forged.example", Ipv4Addr::LOCALHOST)],
        &[("forged.example", Ipv4Addr::new(127, 0, 0, 2))],
    )
    .await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://forged.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    let a = &k.queries[0];
    assert_eq!(a.query_type, "A");
    assert_eq!(a.addrs(), vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
    let ttls: Vec<Option<u8>> = a.x_replies.iter().map(|r| r.ip_ttl).collect();
    assert_eq!(ttls, vec![Some(200), Some(64)]);
    let kinds: Vec<&str> = k.x_injection.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["dns.duplicate_replies", "dns.ttl_mismatch"]);
    let target = format!("forged.example A @{}", dns.addr);
    assert_eq!(k.x_injection[0].target, target);
    assert_eq!(k.x_injection[1].target, target);
    assert!(k.x_injection[0]
        .detail
        .starts_with("2 replies with 2 different answers: [127.0.0.2] rcode 0"));
    assert!(k.x_injection[1]
        .detail
        .starts_with("replies arrived with IP TTLs {64, 200}: "));
    // Nothing serves the forged address.
    assert_only_connect_failed(&k, "connection_refused");
    assert_eq!(k.tcp_connect[0].ip, "127.0.0.2");
}

#[tokio::test]
async fn untrusted_certificate_is_recorded_and_not_fetched() {
    let ca = TestCa::new("gatewatch test CA");
    let rogue = TestCa::new("rogue interception CA");
    let cert = rogue.issue(&["mitm.example"]);
    let tls = ftls::spawn(&cert, Behaviour::Respond(ok("intercepted"))).await;
    let dns = localhost_dns().await;
    let s = WebSettings {
        https_port: tls.addr.port(),
        ..settings(dns.addr, &ca)
    };

    let k = measure("https://mitm.example/", &s, None).await;

    assert_eq!(k.tls_handshakes.len(), 1);
    let hs = &k.tls_handshakes[0];
    assert_eq!(
        failure(&hs.failure).as_deref(),
        Some("ssl_unknown_authority")
    );
    assert_eq!(
        failure(&hs.x_certificate_failure).as_deref(),
        Some("ssl_unknown_authority")
    );
    assert_eq!(hs.peer_certificates.len(), 1);
    assert_eq!(hs.peer_certificates[0].decode(), cert.leaf_der());
    assert!(k.requests.is_empty());
    assert!(tls.seen().is_empty(), "no GET over an invalid chain");
    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some("ssl_unknown_authority")
    );
}

#[tokio::test]
async fn reset_after_client_hello_is_the_http_failure() {
    let ca = TestCa::new("gatewatch test CA");
    let reset = ftcp::reset_after_first_read().await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("https://sni-filtered.example:{}/", reset.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.tcp_connect.len(), 1);
    assert!(k.tcp_connect[0].status.success);
    assert_eq!(k.tls_handshakes.len(), 1);
    assert_eq!(
        failure(&k.tls_handshakes[0].failure).as_deref(),
        Some("connection_reset")
    );
    assert!(k.tls_handshakes[0].peer_certificates.is_empty());
    assert!(k.requests.is_empty());
    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some("connection_reset")
    );
}

#[tokio::test]
async fn connect_timeout_is_recorded() {
    let ca = TestCa::new("gatewatch test CA");
    let hole = ftcp::blackhole();
    let dns = localhost_dns().await;
    let s = WebSettings {
        tcp: Duration::from_millis(300),
        ..settings(dns.addr, &ca)
    };
    let url = format!("http://blackholed.example:{}/", hole.addr.port());

    let k = measure(&url, &s, None).await;

    assert_only_connect_failed(&k, "generic_timeout_error");
}

#[tokio::test]
async fn loopback_answers_are_refused_without_treat_as_public() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("should not be reached"))).await;
    let dns = localhost_dns().await;
    let s = WebSettings {
        treat_as_public: Vec::new(),
        ..settings(dns.addr, &ca)
    };
    let url = format!("http://local.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.x_skipped, vec!["refused_address:127.0.0.1".to_string()]);
    assert!(k.tcp_connect.is_empty());
    assert!(k.requests.is_empty());
    assert!(http.seen().is_empty());
    assert_eq!(k.http_experiment_failure, None);
}

#[tokio::test]
async fn ip_literal_skips_dns() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("by address"))).await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://{}/", http.addr);

    let k = measure(&url, &s, None).await;

    assert!(k.queries.is_empty());
    assert_eq!(dns.udp_queries.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(body_text(&k, 0), "by address");
    assert_eq!(
        tags(&k.requests[0].tags),
        vec!["depth=0", "fetch_body=true"]
    );
    assert_eq!(hosts(&http), vec![http.addr.to_string()]);
}

#[tokio::test]
async fn invalid_input_is_recorded_not_crashed() {
    let ca = TestCa::new("gatewatch test CA");
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    for (input, why) in [
        ("not a url", "relative URL without a base"),
        (
            "ftp://files.example/",
            "unsupported scheme \"ftp\" (only http and https)",
        ),
    ] {
        let k = measure(input, &s, None).await;
        assert_eq!(k.x_interrupted.as_deref(), Some("invalid_input"));
        assert_eq!(
            k.http_experiment_failure,
            Some(format!("unknown_failure: invalid input URL: {why}"))
        );
        assert!(k.queries.is_empty() && k.requests.is_empty());
    }
}

#[tokio::test]
async fn deadline_keeps_what_was_measured() {
    let ca = TestCa::new("gatewatch test CA");
    // Answers one byte every 10 s: the GET is still running at the deadline.
    let slow = fhttp::spawn(Behaviour::Dribble {
        bytes: ok("slow"),
        interval: Duration::from_secs(10),
    })
    .await;
    let dns = localhost_dns().await;
    let s = WebSettings {
        url_deadline: Duration::from_secs(1),
        ..settings(dns.addr, &ca)
    };
    let url = format!("http://slow.example:{}/", slow.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.x_interrupted.as_deref(), Some("deadline"));
    assert_eq!(k.queries.len(), 2);
    assert_eq!(k.tcp_connect.len(), 1);
    assert!(k.tcp_connect[0].status.success);
    assert!(k.requests.is_empty());
    assert_eq!(slow.seen().len(), 1, "the GET was sent");
}

#[tokio::test]
async fn nxdomain_everywhere_gives_the_dns_failure() {
    let ca = TestCa::new("gatewatch test CA");
    let dns = fdns::spawn(Script::always(DnsReply::Rcode(3))).await;
    let s = settings(dns.addr, &ca);

    let k = measure("http://missing.example/", &s, None).await;

    assert!(k.tcp_connect.is_empty());
    let fails: Vec<Option<String>> = k.queries.iter().map(|q| failure(&q.failure)).collect();
    assert_eq!(
        fails,
        vec![
            Some("dns_nxdomain_error".to_string()),
            Some("dns_nxdomain_error".to_string())
        ]
    );
    assert_eq!(
        k.http_experiment_failure.as_deref(),
        Some("dns_nxdomain_error")
    );
}

#[tokio::test]
async fn doh_answers_are_kept_apart_and_used() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("via doh"))).await;
    // The UDP resolver says NXDOMAIN; DoH has the address.
    let udp = fdns::spawn(Script::always(DnsReply::Rcode(3))).await;
    let doh = fdoh::spawn(
        &ca.issue(&["doh.example"]),
        "doh.example",
        DnsReply::Answer(vec![LOCALHOST]),
    )
    .await;
    let s = WebSettings {
        doh: vec![DohServer {
            url: doh.url.clone(),
            addr: Some(doh.addr),
        }],
        ..settings(udp.addr, &ca)
    };
    let url = format!("http://censored.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    let qs: Vec<(&str, &str, &str, Option<String>)> = k
        .queries
        .iter()
        .map(|q| {
            (
                q.engine.as_str(),
                q.query_type.as_str(),
                q.resolver_address.as_str(),
                failure(&q.failure),
            )
        })
        .collect();
    let (u, d) = (udp.addr.to_string(), doh.url.clone());
    assert_eq!(
        qs,
        vec![
            ("udp", "A", u.as_str(), Some("dns_nxdomain_error".into())),
            ("udp", "AAAA", u.as_str(), Some("dns_nxdomain_error".into())),
            ("doh", "A", d.as_str(), None),
            ("doh", "AAAA", d.as_str(), Some("dns_no_answer".into())),
        ]
    );
    assert_eq!(k.http_experiment_failure, None);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(body_text(&k, 0), "via doh");
}

#[tokio::test]
async fn fetch_prefers_udp_addresses_over_doh() {
    let ca = TestCa::new("gatewatch test CA");
    // The same port on two loopback addresses, each its own site.
    let (a, b, port) = private::twin_sites(
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(127, 0, 0, 3),
        Behaviour::Respond(ok("from the doh address")),
        Behaviour::Respond(ok("from the udp address")),
    )
    .await;
    let udp = fdns::spawn(Script::always(DnsReply::Answer(vec![IpAddr::V4(
        Ipv4Addr::new(127, 0, 0, 3),
    )])))
    .await;
    let doh = fdoh::spawn(
        &ca.issue(&["doh.example"]),
        "doh.example",
        DnsReply::Answer(vec![LOCALHOST]),
    )
    .await;
    let s = WebSettings {
        doh: vec![DohServer {
            url: doh.url.clone(),
            addr: Some(doh.addr),
        }],
        ..settings(udp.addr, &ca)
    };
    let url = format!("http://twin.example:{port}/");

    let k = measure(&url, &s, None).await;

    let mut connected: Vec<(String, bool)> = k
        .tcp_connect
        .iter()
        .map(|c| (c.ip.clone(), c.status.success))
        .collect();
    connected.sort();
    assert_eq!(
        connected,
        vec![
            ("127.0.0.1".to_string(), true),
            ("127.0.0.3".to_string(), true)
        ]
    );
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].address, format!("127.0.0.3:{port}"));
    assert_eq!(body_text(&k, 0), "from the udp address");
    assert!(a.lock().unwrap().is_empty());
    assert_eq!(b.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn cookies_set_by_a_redirect_are_sent_on_the_next_hop() {
    let ca = TestCa::new("gatewatch test CA");
    // /start sets a cookie and redirects to /check, which loops back to
    // /start unless the cookie came back.
    let http = fhttp::spawn(handler(|r| match (r.target(), r.header("cookie")) {
        ("/check", Some("session=abc")) => ok("welcome"),
        ("/check", _) => redirect("/start"),
        _ => response(
            302,
            "Found",
            &[
                ("Location", "/check"),
                ("Set-Cookie", "session=abc; Path=/"),
            ],
            b"",
        ),
    }))
    .await;
    let dns = localhost_dns().await;
    let s = settings(dns.addr, &ca);
    let url = format!("http://cookie.example:{}/start", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.http_experiment_failure, None);
    assert_eq!(k.requests.len(), 2);
    assert_eq!(body_text(&k, 0), "welcome");
    assert_eq!(
        k.requests[0]
            .request
            .headers
            .get("Cookie")
            .map(String::as_str),
        Some("session=abc")
    );
    assert_eq!(k.requests[1].request.headers.get("Cookie"), None);
}

#[tokio::test]
async fn non_resolver_answer_is_injection_evidence() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("page"))).await;
    let dns = localhost_dns().await;
    // Stands for an address that runs no DNS server, yet something answers
    // there (as an on-path injector would).
    let injector = fdns::spawn(Script::always(DnsReply::Answer(vec![IpAddr::V4(
        Ipv4Addr::new(127, 0, 0, 9),
    )])))
    .await;
    let quiet = fdns::spawn(Script::default()).await;
    let url = format!("http://watched.example:{}/", http.addr.port());

    let s = WebSettings {
        dns_non_resolver_check: Some(injector.addr),
        ..settings(dns.addr, &ca)
    };
    let k = measure(&url, &s, None).await;
    assert_eq!(k.x_injection.len(), 1);
    let ev = &k.x_injection[0];
    assert_eq!(ev.kind, "dns.non_resolver_answer");
    assert_eq!(ev.target, "watched.example");
    assert!(ev.detail.starts_with(&format!(
        "{}, which runs no DNS server, answered: [127.0.0.9] rcode 0",
        injector.addr
    )));
    // The check is no lookup of the site: not in queries, not dialled.
    assert_eq!(k.queries.len(), 2);
    assert!(k.tcp_connect.iter().all(|c| c.ip == "127.0.0.1"));

    let s = WebSettings {
        dns_non_resolver_check: Some(quiet.addr),
        dns: Duration::from_millis(300),
        ..settings(dns.addr, &ca)
    };
    let k = measure(&url, &s, None).await;
    assert!(k.x_injection.is_empty());
    assert_eq!(
        quiet.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn system_resolver_addresses_are_classic() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("classic"))).await;
    // `localhost` resolves from /etc/hosts: no packet leaves the machine.
    let s = WebSettings {
        system_resolver: true,
        resolvers: Vec::new(),
        ..settings(SocketAddr::from(([127, 0, 0, 1], 9)), &ca)
    };
    let url = format!("http://localhost:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.queries.len(), 1);
    let q = &k.queries[0];
    assert_eq!(
        (q.engine.as_str(), q.query_type.as_str()),
        ("getaddrinfo", "ANY")
    );
    assert_eq!(q.failure, None);
    assert!(q.addrs().contains(&LOCALHOST));
    assert_eq!(tags(&q.tags), vec!["depth=0", "classic"]);
    assert_eq!(k.dns_experiment_failure, None);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].address, http.addr.to_string());
    assert_eq!(
        tags(&k.requests[0].tags),
        vec!["depth=0", "classic", "fetch_body=true"]
    );
    assert_eq!(
        hosts(&http),
        vec![format!("localhost:{}", http.addr.port())]
    );
}

#[tokio::test]
async fn unreachable_control_is_a_control_failure() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("page"))).await;
    let dns = localhost_dns().await;
    let dead = format!("http://{}/", ftcp::closed_port());
    let client = ControlClient::new(vec![dead.clone()], &[]).unwrap();
    let s = settings(dns.addr, &ca);
    let url = format!("http://site.example:{}/", http.addr.port());

    let k = measure(&url, &s, Some(&client)).await;

    let req = k
        .x_control_request
        .clone()
        .expect("the request is recorded");
    assert_eq!(req.http_request, url);
    assert_eq!(
        req.tcp_connect,
        vec![format!("127.0.0.1:{}", http.addr.port())]
    );
    let headers: Vec<&str> = req
        .http_request_headers
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(headers, vec!["Accept", "Accept-Language", "User-Agent"]);
    assert_eq!(k.control, None);
    let why = k.control_failure.clone().expect("control_failure");
    assert!(
        why.starts_with(&format!("control {dead} unreachable: ")),
        "{why}"
    );
    assert_eq!(why, client.query(&req).await.unwrap_err().to_string());
    // The probe's own steps are unaffected.
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.http_experiment_failure, None);
}

#[tokio::test]
async fn control_answer_is_kept_and_its_extra_addresses_measured() {
    let ca = TestCa::new("gatewatch test CA");
    let (probe_site, th_site, port) = private::twin_sites(
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(127, 0, 0, 3),
        Behaviour::Respond(ok("<title>Twin</title>")),
        Behaviour::Respond(ok("<title>Twin</title>")),
    )
    .await;
    // The probe's resolver knows one address; the control's, two.
    let probe_dns = localhost_dns().await;
    let control_dns = fdns::spawn(Script::always(DnsReply::Answer(vec![
        LOCALHOST,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
    ])))
    .await;
    let control = private::Control::start(control_dns.addr).await;
    let client = ControlClient::new(vec![control.url.clone()], &[]).unwrap();
    let s = settings(probe_dns.addr, &ca);
    let url = format!("http://twin.example:{port}/");

    let k = measure(&url, &s, Some(&client)).await;

    assert_eq!(k.control_failure, None);
    let req = k.x_control_request.as_ref().unwrap();
    assert_eq!(req.tcp_connect, vec![format!("127.0.0.1:{port}")]);
    let c = k.control.as_ref().expect("control answer");
    assert_eq!(
        c.dns.addrs,
        vec!["127.0.0.1".to_string(), "127.0.0.3".to_string()]
    );
    assert_eq!(c.http_request.status_code, 200);
    assert_eq!(c.http_request.title, "Twin");
    assert!(c.tcp_connect[&format!("127.0.0.1:{port}")].status);
    // Left for the run layer, which takes it out before writing.
    assert_eq!(c.x_client_addr.as_deref(), Some("127.0.0.1"));

    // The address only the control found is measured too (not classic).
    let th = k
        .tcp_connect
        .iter()
        .find(|t| t.ip == "127.0.0.3")
        .expect("a flow to the control's extra address");
    assert!(th.status.success);
    assert_eq!(th.port, port);
    assert_eq!(tags(&th.tags), vec!["depth=0", "fetch_body=true"]);
    // The page is fetched once, over the probe's own address.
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].address, format!("127.0.0.1:{port}"));
    // One GET from the probe, one from the control (over either address).
    let (a, b) = (
        probe_site.lock().unwrap().len(),
        th_site.lock().unwrap().len(),
    );
    assert_eq!(a + b, 2);
    assert!(a >= 1);
}

#[tokio::test]
async fn one_connection_per_host_still_completes() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("page"))).await;
    let tls = ftls::spawn(
        &ca.issue(&["narrow.example"]),
        Behaviour::Respond(ok("tls")),
    )
    .await;
    let dns = localhost_dns().await;
    let limiter = HostLimiter::new(1);
    let s = WebSettings {
        http_port: http.addr.port(),
        https_port: tls.addr.port(),
        host_limiter: Some(limiter.clone()),
        ..settings(dns.addr, &ca)
    };

    // Two URLs of the same host at once, one connection at a time.
    let (k1, k2) = tokio::join!(
        measure("http://narrow.example/a", &s, None),
        measure("http://narrow.example/b", &s, None)
    );

    for k in [&k1, &k2] {
        assert_eq!(k.x_interrupted, None);
        assert_eq!(k.http_experiment_failure, None);
        assert_eq!(k.tcp_connect.len(), 2);
        assert_eq!(k.tls_handshakes.len(), 1);
        assert_eq!(k.tls_handshakes[0].failure, None);
        assert_eq!(k.requests.len(), 1);
    }
    let mut paths: Vec<String> = http.seen().iter().map(|r| r.target().to_string()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/a".to_string(), "/b".to_string()]);
}

#[tokio::test]
async fn the_page_does_not_wait_for_slower_resolvers() {
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("fast"))).await;
    // The UDP resolver answers after a second; `localhost` comes from
    // /etc/hosts at once.
    let slow = fdns::spawn(Script {
        udp: vec![(Duration::from_secs(1), DnsReply::Answer(vec![LOCALHOST]))],
        tcp: None,
    })
    .await;
    let s = WebSettings {
        system_resolver: true,
        ..settings(slow.addr, &ca)
    };
    let url = format!("http://localhost:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    let engines: Vec<(&str, &str)> = k
        .queries
        .iter()
        .map(|q| (q.engine.as_str(), q.query_type.as_str()))
        .collect();
    assert_eq!(
        engines,
        vec![("getaddrinfo", "ANY"), ("udp", "A"), ("udp", "AAAA")]
    );
    assert_eq!(k.queries[1].addrs(), vec![LOCALHOST]);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].failure, None);
    // The GET ran before the UDP lookups ended, and they are still recorded.
    assert!(k.requests[0].t < k.queries[1].t);
    assert!(k.requests[0].t < k.queries[2].t);
}

/// Fakes only these tests need.
mod private {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};

    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    use tokio::net::{TcpListener, UdpSocket};

    use gatewatch::control::server::resolver::ResolverSpec;
    use gatewatch::control::server::{serve, ServerConfig};

    use crate::fakes::http::{self as fhttp, Behaviour, SeenRequest};

    /// Two HTTP sites on the same port of two loopback addresses; the
    /// request logs of each and the port.
    pub async fn twin_sites(
        ip_a: Ipv4Addr,
        ip_b: Ipv4Addr,
        a: Behaviour,
        b: Behaviour,
    ) -> (
        Arc<Mutex<Vec<SeenRequest>>>,
        Arc<Mutex<Vec<SeenRequest>>>,
        u16,
    ) {
        let (la, lb) = loop {
            let la = TcpListener::bind((ip_a, 0)).await.unwrap();
            let port = la.local_addr().unwrap().port();
            if let Ok(lb) = TcpListener::bind((ip_b, port)).await {
                break (la, lb);
            }
        };
        let port = la.local_addr().unwrap().port();
        let logs = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        for (l, b, log) in [(la, a, Arc::clone(&logs.0)), (lb, b, Arc::clone(&logs.1))] {
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    tokio::spawn(fhttp::serve(s, b.clone(), Arc::clone(&log)));
                }
            });
        }
        (logs.0, logs.1, port)
    }

    /// The real control server (`gatewatch control serve`) in this
    /// process, resolving with `dns` and allowed to reach loopback.
    pub struct Control {
        pub url: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Control {
        pub async fn start(dns: SocketAddr) -> Control {
            let cfg = ServerConfig {
                resolver: ResolverSpec::Udp(dns),
                treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
                rate_per_minute: 0,
                ..ServerConfig::default()
            };
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                let _ = serve(cfg, listener, std::future::pending()).await;
            });
            Control { url, task }
        }
    }

    impl Drop for Control {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A UDP DNS server on 127.0.0.1 answering per name: A records from
    /// `zone` (NXDOMAIN for other names, an empty NOERROR for other types);
    /// for names in `forged`, a forged A reply is sent first with IP TTL
    /// 200, then the genuine one with IP TTL 64.
    pub struct NamedDns {
        pub addr: SocketAddr,
    }

    impl NamedDns {
        pub async fn start(zone: &[(&str, Ipv4Addr)], forged: &[(&str, Ipv4Addr)]) -> NamedDns {
            let zone: HashMap<String, Ipv4Addr> =
                zone.iter().map(|(n, a)| (n.to_string(), *a)).collect();
            let forged: HashMap<String, Ipv4Addr> =
                forged.iter().map(|(n, a)| (n.to_string(), *a)).collect();
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = sock.local_addr().unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                    let Ok(q) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(query) = q.queries.first().cloned() else {
                        continue;
                    };
                    let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
                    let answer = |ip: Option<Ipv4Addr>, known: bool| {
                        let mut m = Message::response(q.metadata.id, OpCode::Query);
                        m.metadata.recursion_desired = q.metadata.recursion_desired;
                        m.metadata.recursion_available = true;
                        m.add_query(query.clone());
                        if !known {
                            m.metadata.response_code = ResponseCode::NXDomain;
                        }
                        if let Some(ip) = ip {
                            m.add_answer(Record::from_rdata(
                                query.name().clone(),
                                300,
                                RData::A(A(ip)),
                            ));
                        }
                        m.to_vec().unwrap()
                    };
                    let known = zone.contains_key(&name);
                    let is_a = query.query_type() == RecordType::A;
                    if let (true, Some(f)) = (is_a, forged.get(&name)) {
                        let _ = sock.set_ttl(200);
                        let _ = sock.send_to(&answer(Some(*f), true), from).await;
                        let _ = sock.set_ttl(64);
                    }
                    let ip = if is_a { zone.get(&name).copied() } else { None };
                    let _ = sock.send_to(&answer(ip, known), from).await;
                }
            });
            NamedDns { addr }
        }
    }
}

/// Issue 16, bounded work per URL: a name answering 500 addresses, the
/// first one a working site and 12 of the next ones dropping SYNs. At most
/// `MAX_ADDRS_PER_NAME` addresses are dialled (the rest noted in
/// `x_skipped`), and once the page is fetched the connects still hanging
/// are cancelled after one flow's budget: the URL finishes, it does not run
/// into its deadline (so `--resume` does not measure it again).
#[tokio::test]
async fn many_addresses_are_capped_and_a_fetched_url_is_finished() {
    use gatewatch::control::protocol::MAX_ADDRS_PER_NAME;
    let ca = TestCa::new("gatewatch test CA");
    let http = fhttp::spawn(Behaviour::Respond(ok("<title>Many</title>fine"))).await;
    let port = http.addr.port();
    let _holes: Vec<ftcp::Blackhole> = (1..=12)
        .map(|i| ftcp::blackhole_at(SocketAddr::from(([127, 0, 2, i], port))))
        .collect();
    let mut addrs = vec![LOCALHOST];
    addrs.extend((1..=12).map(|i| IpAddr::from([127, 0, 2, i])));
    addrs.extend(
        (0..487u32).map(|i| IpAddr::from([127, 0, 3 + (i / 250) as u8, (i % 250) as u8 + 1])),
    );
    assert_eq!(addrs.len(), 500);
    let dns = fdns::spawn(Script::always(DnsReply::Answer(addrs))).await;
    let s = WebSettings {
        http_port: port,
        https_port: ftcp::closed_port().port(),
        tcp: Duration::from_secs(5),
        tls: Duration::from_secs(1),
        // Two flows at a time: the 12 blackholed connects alone would take
        // 6 × 5 s, past the deadline, if the URL waited for them.
        max_parallel_endpoints: 2,
        url_deadline: Duration::from_secs(30),
        ..settings(dns.addr, &ca)
    };

    let k = measure("http://many.example/", &s, None).await;

    assert_eq!(k.x_interrupted, None, "skipped: {:?}", k.x_skipped);
    assert_eq!(k.http_experiment_failure, None);
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].response.code, 200);
    // Every answer is recorded; only the first addresses are dialled.
    assert_eq!(
        k.queries.iter().map(|q| q.addrs().len()).sum::<usize>(),
        500
    );
    let mut dialled: Vec<IpAddr> = k
        .tcp_connect
        .iter()
        .map(|c| c.ip.parse().unwrap())
        .collect();
    dialled.sort();
    dialled.dedup();
    assert!(dialled.len() <= MAX_ADDRS_PER_NAME, "{dialled:?}");
    assert!(dialled.contains(&LOCALHOST));
    assert!(
        k.x_skipped
            .iter()
            .any(|s| s.starts_with("addresses_capped:depth=0:484 ")),
        "{:?}",
        k.x_skipped
    );
    assert!(
        k.x_skipped
            .iter()
            .any(|s| s.starts_with("endpoint_flows_cancelled_after_fetch: ")),
        "{:?}",
        k.x_skipped
    );
    // A cancelled connect is not recorded as a failure.
    assert!(k.tcp_connect.iter().all(|c| c
        .status
        .failure
        .as_ref()
        .is_none_or(|f| f.to_string() != "interrupted")));
}

/// Issue 16: records for a name we did not ask about are no answer: the
/// probe dials nothing (the canary at that address is never contacted) and
/// the records stay in `x_replies[].x_unasked`.
#[tokio::test]
async fn records_for_another_name_are_not_dialled() {
    let ca = TestCa::new("gatewatch test CA");
    let canary = fhttp::spawn(Behaviour::Respond(ok("canary"))).await;
    let dns = fdns::spawn(Script::always(DnsReply::Unasked(
        "notasked.example".into(),
        vec![LOCALHOST],
    )))
    .await;
    let s = WebSettings {
        http_port: canary.addr.port(),
        ..settings(dns.addr, &ca)
    };

    let k = measure("http://asked.example/", &s, None).await;

    assert!(k.tcp_connect.is_empty(), "{:?}", k.tcp_connect);
    assert!(canary.seen().is_empty());
    assert_eq!(k.dns_experiment_failure, None);
    assert_eq!(k.http_experiment_failure.as_deref(), Some("dns_no_answer"));
    let unasked: Vec<&String> = k
        .queries
        .iter()
        .flat_map(|q| &q.x_replies)
        .flat_map(|r| &r.x_unasked)
        .collect();
    assert_eq!(unasked, vec!["notasked.example. A 127.0.0.1"]);
}
