//! Tests: the control server (`gatewatch control serve`, started in-process
//! on 127.0.0.1) against real local targets, the control client against
//! the server over HTTP and HTTPS, and the SSRF guarantees: a canary server
//! on 127.0.0.1 must never be contacted however its address is disguised.
//!
//! Allowed targets live on 127.0.0.2 and the server treats only
//! 127.0.0.2/32 as public; everything else on loopback is forbidden to it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatewatch::control::client::{ControlClient, ControlError};
use gatewatch::control::protocol::{ControlRequest, ControlResponse};
use gatewatch::control::server::measure::StepTimeouts;
use gatewatch::control::server::resolver::ResolverSpec;
use gatewatch::control::server::{serve, ServerConfig};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{rdata, RData, Record, RecordType};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------- tests --

#[tokio::test]
async fn measures_an_allowed_http_site() {
    let dns = FakeDns::start(&[("site.test", "127.0.0.2")]).await;
    let site = Site::start("127.0.0.2", None, None).await;
    let control = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;
    let p = site.addr.port();

    let r = control
        .ask(&request(
            &format!("http://site.test:{p}/"),
            &[&format!("127.0.0.2:{p}")],
        ))
        .await;

    assert_eq!(r.dns.failure, None);
    assert_eq!(r.dns.addrs, vec!["127.0.0.2".to_string()]);
    let key = format!("127.0.0.2:{p}");
    assert_eq!(r.tcp_connect.len(), 1, "{:?}", r.tcp_connect);
    assert!(r.tcp_connect[&key].status);
    assert_eq!(r.tcp_connect[&key].failure, None);
    assert!(r.tls_handshake.is_empty());
    assert_eq!(r.http_request.failure, None);
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(r.http_request.body_length, PAGE.len() as i64);
    assert_eq!(r.http_request.title, "Allowed site");
    assert_eq!(
        r.http_request
            .headers
            .get("content-type")
            .map(String::as_str),
        Some("text/html")
    );
    assert_eq!(r.ip_info["127.0.0.2"].flags, 1 | 2);
    let body = r.x_body.expect("x_body");
    assert_eq!(body.length, PAGE.len() as i64);
    assert_eq!(body.sha256, hex::encode(Sha256::digest(PAGE.as_bytes())));
    assert_eq!(body.prefix, PAGE.chars().take(256).collect::<String>());
    assert_eq!(r.x_redirect_chain.len(), 1);
    assert_eq!(r.x_redirect_chain[0].status_code, 200);
    assert_eq!(
        r.x_redirect_chain[0].dns.addrs,
        vec!["127.0.0.2".to_string()]
    );
    assert_eq!(r.x_client_addr.as_deref(), Some("127.0.0.1"));
    assert!(r.x_refused.is_empty(), "{:?}", r.x_refused);
    // A small loopback page arrives too fast to time: the rate is the
    // documented lower bound, not 0 ("unknown").
    assert!(r.x_transfer_rate_bps.is_some_and(|bps| bps > 0.0));
}

#[tokio::test]
async fn follows_redirects_with_fresh_steps_per_hop() {
    let dns = FakeDns::start(&[("a.test", "127.0.0.2"), ("b.test", "127.0.0.2")]).await;
    let b = Site::start("127.0.0.2", None, None).await;
    let a = Site::start(
        "127.0.0.2",
        None,
        Some(format!("http://b.test:{}/", b.addr.port())),
    )
    .await;
    let control = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;

    let r = control
        .ask(&request(
            &format!("http://a.test:{}/go", a.addr.port()),
            &[],
        ))
        .await;

    assert_eq!(r.x_redirect_chain.len(), 2, "{:?}", r.x_redirect_chain);
    let (h0, h1) = (&r.x_redirect_chain[0], &r.x_redirect_chain[1]);
    assert_eq!(h0.status_code, 302);
    assert_eq!(
        h0.location.as_deref(),
        Some(format!("http://b.test:{}/", b.addr.port()).as_str())
    );
    assert!(h0.tcp_connect[&format!("127.0.0.2:{}", a.addr.port())].status);
    assert_eq!(h1.url, format!("http://b.test:{}/", b.addr.port()));
    assert_eq!(h1.dns.addrs, vec!["127.0.0.2".to_string()]);
    assert!(h1.tcp_connect[&format!("127.0.0.2:{}", b.addr.port())].status);
    assert_eq!(h1.status_code, 200);
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(r.http_request.title, "Allowed site");
    assert_eq!(b.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn reports_refused_connections_and_dns_errors_in_ooni_terms() {
    let dns = FakeDns::start(&[]).await;
    let control = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;
    let closed = closed_port("127.0.0.2").await;

    let r = control
        .ask(&request(&format!("http://127.0.0.2:{closed}/"), &[]))
        .await;
    let key = format!("127.0.0.2:{closed}");
    assert!(!r.tcp_connect[&key].status);
    assert_eq!(
        r.tcp_connect[&key].failure.as_deref(),
        Some("connection_refused_error")
    );
    assert_eq!(
        r.http_request.failure.as_deref(),
        Some("connection_refused_error")
    );
    assert_eq!(r.http_request.status_code, -1);
    assert_eq!(r.http_request.body_length, -1);
    assert_eq!(r.dns.addrs, vec!["127.0.0.2".to_string()]);

    let r = control
        .ask(&request(&format!("http://missing.test:{closed}/"), &[]))
        .await;
    assert_eq!(r.dns.failure.as_deref(), Some("dns_name_error"));
    assert!(r.dns.addrs.is_empty());
    assert_eq!(r.http_request.failure.as_deref(), Some("dns_lookup_error"));
    assert!(r.tcp_connect.is_empty());
}

#[tokio::test]
async fn verifies_tls_with_the_url_host_as_sni() {
    let pki = Pki::new(&["site.test"]);
    let dns = FakeDns::start(&[("site.test", "127.0.0.2"), ("other.test", "127.0.0.2")]).await;
    let site = Site::start("127.0.0.2", Some(pki.acceptor()), None).await;
    let mut cfg = config(dns.addr, &["127.0.0.2/32"]);
    cfg.ca_files = vec![pki.ca_path.clone()];
    let control = Control::start(cfg).await;
    let p = site.addr.port();
    let key = format!("127.0.0.2:{p}");

    let r = control
        .ask(&request(&format!("https://site.test:{p}/"), &[&key]))
        .await;
    let tls = &r.tls_handshake[&key];
    assert_eq!(tls.server_name, "site.test");
    assert!(tls.status, "{tls:?}");
    assert_eq!(tls.failure, None);
    assert_eq!(r.x_tls_leaf_sha256[&key], pki.leaf_sha256);
    assert!(r.x_tls_handshake_time.contains_key(&key));
    assert_eq!(r.ip_info["127.0.0.2"].flags, 1 | 2 | 8);
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(r.http_request.title, "Allowed site");
    assert!(r.x_redirect_chain[0].tls_handshake[&key].status);

    // Same server, a name its certificate does not cover.
    let r = control
        .ask(&request(&format!("https://other.test:{p}/"), &[]))
        .await;
    let tls = &r.tls_handshake[&key];
    assert_eq!(tls.server_name, "other.test");
    assert!(!tls.status);
    assert_eq!(tls.failure.as_deref(), Some("ssl_invalid_hostname"));
    assert_eq!(r.x_tls_leaf_sha256[&key], pki.leaf_sha256);
    assert_eq!(r.ip_info["127.0.0.2"].flags, 2);
    assert_eq!(r.http_request.failure.as_deref(), Some("unknown_error"));
    assert_eq!(r.http_request.status_code, -1);
}

#[tokio::test]
async fn resolves_through_tcp_and_doh_resolvers() {
    use crate::fakes::{ca::TestCa, dns, doh};
    let site = Site::start("127.0.0.2", None, None).await;
    let url = format!("http://site.test:{}/", site.addr.port());
    let answer = dns::Reply::Answer(vec!["127.0.0.2".parse().unwrap()]);

    // Plain DNS over TCP (the fake stays silent over UDP).
    let tcp = dns::spawn(dns::Script {
        udp: vec![],
        tcp: Some(answer.clone()),
    })
    .await;
    let mut cfg = config(tcp.addr, &["127.0.0.2/32"]);
    cfg.resolver = ResolverSpec::Tcp(tcp.addr);
    let control = Control::start(cfg).await;
    let r = control.ask(&request(&url, &[])).await;
    assert_eq!(r.dns.addrs, vec!["127.0.0.2".to_string()]);
    assert_eq!(r.http_request.status_code, 200);
    assert!(tcp.tcp_queries.load(Ordering::SeqCst) >= 1);
    assert_eq!(tcp.udp_queries.load(Ordering::SeqCst), 0);

    // DNS-over-HTTPS, trusted through --ca-file.
    let ca = TestCa::new("gatewatch DoH test CA");
    let dir = tempfile::tempdir().unwrap();
    let doh = doh::spawn(&ca.issue(&["127.0.0.1"]), "127.0.0.1", answer).await;
    let mut cfg = config(tcp.addr, &["127.0.0.2/32"]);
    cfg.resolver = doh.url.parse().unwrap();
    cfg.ca_files = vec![ca.write_pem(dir.path())];
    let control = Control::start(cfg).await;
    let r = control.ask(&request(&url, &[])).await;
    assert_eq!(r.dns.failure, None);
    assert_eq!(r.dns.addrs, vec!["127.0.0.2".to_string()]);
    assert_eq!(r.http_request.status_code, 200);
}

#[tokio::test]
async fn client_talks_to_the_server_over_http_and_https() {
    let pki = Pki::new(&["127.0.0.1"]);
    let dns = FakeDns::start(&[]).await;
    let site = Site::start("127.0.0.2", None, None).await;
    let plain = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;
    let mut cfg = config(dns.addr, &["127.0.0.2/32"]);
    cfg.tls = Some((pki.cert_path.clone(), pki.key_path.clone()));
    let tls = Control::start(cfg).await;
    let https_url = format!("https://127.0.0.1:{}/", tls.addr.port());
    let req = request(&format!("http://127.0.0.2:{}/", site.addr.port()), &[]);

    let client = ControlClient::new(vec![plain.url.clone()], &[]).unwrap();
    let r = client.query(&req).await.unwrap();
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(r.x_client_addr.as_deref(), Some("127.0.0.1"));

    let client =
        ControlClient::new(vec![https_url.clone()], std::slice::from_ref(&pki.ca_path)).unwrap();
    let r = client.query(&req).await.unwrap();
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(r.http_request.title, "Allowed site");

    // Without the test CA the control's certificate is not trusted.
    let client = ControlClient::new(vec![https_url], &[]).unwrap();
    match client.query(&req).await {
        Err(ControlError::Unreachable { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected an untrusted-certificate failure, got {other:?}"),
    }
}

#[tokio::test]
async fn client_fails_over_and_names_what_went_wrong() {
    let dns = FakeDns::start(&[]).await;
    let site = Site::start("127.0.0.2", None, None).await;
    let live = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;
    let req = request(&format!("http://127.0.0.2:{}/", site.addr.port()), &[]);
    let dead = format!("http://127.0.0.1:{}/", closed_port("127.0.0.1").await);

    // The first control refuses connections: the second answers.
    let client = ControlClient::new(vec![dead.clone(), live.url.clone()], &[])
        .unwrap()
        .with_timing(Duration::from_secs(30), Duration::from_secs(30));
    assert_eq!(
        client.query(&req).await.unwrap().http_request.status_code,
        200
    );

    // The first control accepts but never answers: the hedge starts the
    // second one.
    let silent = Silent::start().await;
    let client = ControlClient::new(vec![silent.url.clone(), live.url.clone()], &[])
        .unwrap()
        .with_timing(Duration::from_millis(300), Duration::from_secs(30));
    assert_eq!(
        client.query(&req).await.unwrap().http_request.status_code,
        200
    );
    assert_eq!(silent.accepted.load(Ordering::SeqCst), 1);

    // Everything fails: each failure is named.
    let not_json = Fixed::start(200, "this is not json").await;
    let overloaded = Fixed::start(503, "overloaded: try later\nsecond line").await;
    // (A 503 is waited out and asked again until the deadline, then named.)
    let client = ControlClient::new(
        vec![dead.clone(), not_json.url.clone(), overloaded.url.clone()],
        &[],
    )
    .unwrap()
    .with_timing(Duration::from_secs(3), Duration::from_secs(4));
    match client.query(&req).await {
        Err(ControlError::AllFailed(errors)) => {
            assert_eq!(errors.len(), 3, "{errors:?}");
            assert!(errors.iter().any(|e| matches!(e,
                ControlError::Unreachable { url, .. } if *url == dead)));
            assert!(errors.iter().any(|e| matches!(e,
                ControlError::InvalidJson { reason, .. } if reason.contains("expected"))));
            assert!(errors.iter().any(|e| matches!(e,
                ControlError::HttpStatus { status: 503, reason, .. }
                    if reason == "overloaded: try later")));
        }
        other => panic!("expected AllFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn client_reads_an_ooni_test_helper_answer() {
    // Shaped like oohelperd's answer when DNS failed: Go writes empty maps
    // and slices as null, and knows none of our x_ fields.
    let ooni = Fixed::start(
        200,
        r#"{"tcp_connect":{},"tls_handshake":null,"quic_handshake":{},
            "http_request":{"body_length":-1,"discovered_h3_endpoint":"",
              "failure":"dns_lookup_error","title":"","headers":null,"status_code":-1},
            "http3_request":null,
            "dns":{"failure":"dns_name_error","addrs":null},
            "ip_info":null}"#,
    )
    .await;
    let client = ControlClient::new(vec![ooni.url.clone()], &[]).unwrap();
    let r = client
        .query(&request("http://missing.example/", &[]))
        .await
        .unwrap();
    assert_eq!(r.dns.failure.as_deref(), Some("dns_name_error"));
    assert!(r.dns.addrs.is_empty());
    assert_eq!(r.http_request.failure.as_deref(), Some("dns_lookup_error"));
    assert_eq!(r.http_request.body_length, -1);
    assert!(r.http_request.headers.is_empty());
    assert!(r.ip_info.is_empty() && r.tls_handshake.is_empty());
    assert!(r.x_body.is_none() && r.x_redirect_chain.is_empty());
}

#[tokio::test]
async fn never_connects_to_special_purpose_addresses() {
    let canary = Canary::start().await;
    let c = canary.port;
    let dns = FakeDns::start(&[
        ("canary.test", "127.0.0.1"),
        ("site.test", "127.0.0.2"),
        ("meta.test", "169.254.169.254"),
    ])
    .await;
    let site = Site::start(
        "127.0.0.2",
        None,
        Some(format!("http://127.0.0.1:{c}/stolen")),
    )
    .await;
    let s = site.addr.port();
    let control = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;

    // URLs whose host is a forbidden address, however spelled.
    for (url, endpoint) in [
        (format!("http://127.0.0.1:{c}/"), format!("127.0.0.1:{c}")),
        (format!("http://[::1]:{c}/"), format!("[::1]:{c}")),
        (format!("http://0.0.0.0:{c}/"), format!("0.0.0.0:{c}")),
        (
            format!("http://169.254.169.254:{c}/latest/meta-data/"),
            format!("169.254.169.254:{c}"),
        ),
        (format!("http://2130706433:{c}/"), format!("127.0.0.1:{c}")),
        (format!("http://0x7f000001:{c}/"), format!("127.0.0.1:{c}")),
        (format!("http://0177.0.0.1:{c}/"), format!("127.0.0.1:{c}")),
        (format!("http://127.1:{c}/"), format!("127.0.0.1:{c}")),
        (
            format!("http://[::ffff:127.0.0.1]:{c}/"),
            format!("127.0.0.1:{c}"),
        ),
    ] {
        let r = control.ask(&request(&url, &[])).await;
        assert_eq!(
            r.http_request.failure.as_deref(),
            Some("unknown_error"),
            "{url}"
        );
        assert_eq!(r.http_request.status_code, -1, "{url}");
        let tcp = r.tcp_connect.get(&endpoint).unwrap_or_else(|| {
            panic!(
                "{url}: no tcp_connect entry {endpoint}: {:?}",
                r.tcp_connect
            )
        });
        assert!(!tcp.status, "{url}");
        assert_eq!(tcp.failure.as_deref(), Some("connect_error"), "{url}");
        assert!(r.x_refused[&endpoint].contains("special-purpose"), "{url}");
        assert!(r.ip_info.values().all(|i| i.flags & 4 == 4), "{url}");
    }

    // Names that resolve to forbidden addresses.
    for name in ["canary.test", "meta.test"] {
        let r = control
            .ask(&request(&format!("http://{name}:{c}/"), &[]))
            .await;
        assert_eq!(r.dns.failure, None, "{name}");
        assert_eq!(r.dns.addrs.len(), 1, "{name}");
        assert_eq!(r.ip_info[&r.dns.addrs[0]].flags, 2 | 4, "{name}");
        assert_eq!(
            r.http_request.failure.as_deref(),
            Some("dns_lookup_error"),
            "{name}"
        );
        assert!(r.tcp_connect.values().all(|t| !t.status), "{name}");
    }

    // An allowed site redirecting to the canary: the first hop is fetched,
    // the second refused.
    let r = control
        .ask(&request(&format!("http://site.test:{s}/go"), &[]))
        .await;
    assert_eq!(r.x_redirect_chain.len(), 2, "{:?}", r.x_redirect_chain);
    assert_eq!(r.x_redirect_chain[0].status_code, 302);
    let hop = &r.x_redirect_chain[1];
    assert_eq!(hop.failure.as_deref(), Some("x_refused_by_control_policy"));
    assert_eq!(
        hop.tcp_connect[&format!("127.0.0.1:{c}")]
            .failure
            .as_deref(),
        Some("connect_error")
    );
    assert_eq!(r.http_request.failure.as_deref(), Some("unknown_error"));
    assert_eq!(site.hits.load(Ordering::SeqCst), 1);

    // tcp_connect entries for private and disguised addresses.
    let entries = [
        format!("127.0.0.1:{c}"),
        format!("[::1]:{c}"),
        format!("[::ffff:127.0.0.1]:{c}"),
        format!("2130706433:{c}"),
        format!("0x7f.1:{c}"),
        "10.0.0.1:80".to_string(),
        "192.168.1.1:443".to_string(),
        "100.64.0.1:80".to_string(),
        "169.254.169.254:80".to_string(),
        "[fe80::1]:443".to_string(),
        "[fc00::1]:80".to_string(),
    ];
    let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
    let r = control
        .ask(&request(&format!("http://site.test:{s}/"), &refs))
        .await;
    for e in &entries {
        let t = &r.tcp_connect[e];
        assert!(!t.status, "{e}");
        assert_eq!(t.failure.as_deref(), Some("connect_error"), "{e}");
        assert!(r.x_refused.contains_key(e), "{e}");
    }
    assert_eq!(r.ip_info["10.0.0.1"].flags, 1 | 4);
    // The allowed site itself was measured normally.
    assert!(r.tcp_connect[&format!("127.0.0.2:{s}")].status);
    assert_eq!(r.http_request.status_code, 200);

    // A port that is neither the URL's nor 80/443, on an allowed address.
    let r = control
        .ask(&request(
            &format!("http://site.test:{s}/"),
            &["127.0.0.2:22"],
        ))
        .await;
    assert!(r.x_refused["127.0.0.2:22"].contains("port 22"));
    assert!(!r.tcp_connect["127.0.0.2:22"].status);

    assert_eq!(
        canary.hits.load(Ordering::SeqCst),
        0,
        "the canary on 127.0.0.1 was contacted"
    );
}

#[tokio::test]
async fn bad_requests_get_a_one_line_4xx_and_the_server_keeps_answering() {
    let dns = FakeDns::start(&[]).await;
    let site = Site::start("127.0.0.2", None, None).await;
    let control = Control::start(config(dns.addr, &["127.0.0.2/32"])).await;
    let http = plain_http();
    let json = "application/json";

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (http.put(&control.url).body("{}"), 405, "method not allowed"),
        (http.delete(&control.url), 405, "method not allowed"),
        (
            http.post(&control.url)
                .header("content-type", "text/plain")
                .body(r#"{"http_request":"http://127.0.0.2/"}"#),
            415,
            "content type",
        ),
        (
            http.post(&control.url)
                .header("content-type", json)
                .body("{not json"),
            400,
            "invalid JSON",
        ),
        (
            http.post(&control.url)
                .header("content-type", json)
                .body(r#"{"tcp_connect":[]}"#),
            400,
            "invalid JSON: missing field `http_request`",
        ),
        (
            http.post(&control.url)
                .header("content-type", json)
                .body(r#"{"http_request":"ftp://127.0.0.2/"}"#),
            400,
            "http or https",
        ),
        (
            http.post(&control.url)
                .header("content-type", json)
                .body(r#"{"http_request":"not a url"}"#),
            400,
            "not a URL",
        ),
        (
            http.post(&control.url).header("content-type", json).body(
                serde_json::to_vec(&request("http://127.0.0.2/", &vec!["192.0.2.1:80"; 65]))
                    .unwrap(),
            ),
            400,
            "too many tcp_connect",
        ),
        (
            http.post(&control.url)
                .header("content-type", json)
                .body(vec![b' '; 2 * 1024 * 1024]),
            413,
            "too large",
        ),
        (
            http.get(format!("{}nowhere", control.url)),
            404,
            "not found",
        ),
    ];
    for (rb, status, needle) in cases {
        let resp = rb.send().await.expect("the server answered");
        assert_eq!(resp.status().as_u16(), status, "{needle}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{needle}: {text:?}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
    }

    // Still alive and measuring.
    let health: serde_json::Value = http
        .get(&control.url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(health["message"].as_str().is_some_and(|m| !m.is_empty()));
    let r = control
        .ask(&request(
            &format!("http://127.0.0.2:{}/", site.addr.port()),
            &[],
        ))
        .await;
    assert_eq!(r.http_request.status_code, 200);
}

#[tokio::test]
async fn sheds_load_above_max_in_flight() {
    let dns = FakeDns::start(&[]).await;
    let mut site = Site::start("127.0.0.2", None, None).await;
    let mut cfg = config(dns.addr, &["127.0.0.2/32"]);
    cfg.max_in_flight = 1;
    let control = Control::start(cfg).await;
    let p = site.addr.port();

    let first = {
        let http = plain_http();
        let url = control.url.clone();
        let body =
            serde_json::to_vec(&request(&format!("http://127.0.0.2:{p}/hold"), &[])).unwrap();
        tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    site.held
        .recv()
        .await
        .expect("the first measurement reached the site");

    let second = control
        .post(&request(&format!("http://127.0.0.2:{p}/"), &[]))
        .await;
    assert_eq!(second.status().as_u16(), 503);
    assert!(second.headers().contains_key("retry-after"));

    site.release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
    let third = control
        .post(&request(&format!("http://127.0.0.2:{p}/"), &[]))
        .await;
    assert_eq!(third.status().as_u16(), 200);
}

#[tokio::test]
async fn rate_limits_each_client() {
    let dns = FakeDns::start(&[]).await;
    let site = Site::start("127.0.0.2", None, None).await;
    let mut cfg = config(dns.addr, &["127.0.0.2/32"]);
    cfg.rate_per_minute = 1;
    cfg.rate_burst = 2;
    let control = Control::start(cfg).await;
    let req = request(&format!("http://127.0.0.2:{}/", site.addr.port()), &[]);

    assert_eq!(control.post(&req).await.status().as_u16(), 200);
    assert_eq!(control.post(&req).await.status().as_u16(), 200);
    let third = control.post(&req).await;
    assert_eq!(third.status().as_u16(), 429);
    assert!(third.text().await.unwrap().contains("too many requests"));
    // Health checks are not limited.
    let health = plain_http().get(&control.url).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn stops_on_the_shutdown_signal_and_rejects_a_bad_tls_identity() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(ServerConfig::default(), listener, async move {
        let _ = rx.await;
    }));
    let health = plain_http().get(&url).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    tx.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve returned after the signal");
    assert!(stopped.unwrap().is_ok());
    assert!(plain_http().get(&url).send().await.is_err());

    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        tls: Some((
            dir.path().join("missing.pem"),
            dir.path().join("missing.key"),
        )),
        ..ServerConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = serve(cfg, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

// ------------------------------------------------------------ helpers --

const PAGE: &str = "<html><head><title>Allowed site</title></head>\
<body><p>Hello from the allowed site on 127.0.0.2.</p></body></html>";

/// A control server configuration for loopback tests: resolver `dns`, the
/// networks in `allow` treated as public, no rate limit, short step timeouts.
/// verdicts.rs starts its control world from it too.
pub(crate) fn config(dns: SocketAddr, allow: &[&str]) -> ServerConfig {
    ServerConfig {
        resolver: ResolverSpec::Udp(dns),
        treat_as_public: allow.iter().map(|c| c.parse().unwrap()).collect(),
        rate_per_minute: 0,
        deadline: Duration::from_secs(20),
        steps: StepTimeouts {
            dns: Duration::from_secs(3),
            connect: Duration::from_secs(3),
            tls: Duration::from_secs(3),
            http: Duration::from_secs(10),
        },
        ..ServerConfig::default()
    }
}

fn request(url: &str, tcp_connect: &[&str]) -> ControlRequest {
    ControlRequest {
        http_request: url.to_string(),
        tcp_connect: tcp_connect.iter().map(|s| s.to_string()).collect(),
        ..ControlRequest::default()
    }
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A port on `ip` where nothing listens.
async fn closed_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

/// A control server in this process.
struct Control {
    addr: SocketAddr,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    async fn start(cfg: ServerConfig) -> Control {
        let tls = cfg.tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            serve(cfg, listener, std::future::pending()).await.unwrap();
        });
        let scheme = if tls { "https" } else { "http" };
        Control {
            addr,
            url: format!("{scheme}://127.0.0.1:{}/", addr.port()),
            task,
        }
    }

    async fn post(&self, req: &ControlRequest) -> reqwest::Response {
        plain_http()
            .post(&self.url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(req).unwrap())
            .send()
            .await
            .unwrap()
    }

    async fn ask(&self, req: &ControlRequest) -> ControlResponse {
        let resp = self.post(req).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status.as_u16(), 200, "{}: {text}", req.http_request);
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A test CA and a leaf certificate for `names`, written to PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    leaf_sha256: String,
}

impl Pki {
    fn new(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gatewatch test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("leaf.pem");
        let key_path = dir.path().join("leaf.key");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        Pki {
            leaf_sha256: hex::encode(Sha256::digest(leaf.der())),
            _dir: dir,
            ca_path,
            cert_path,
            key_path,
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        gatewatch::control::server::listener::acceptor(&self.cert_path, &self.key_path).unwrap()
    }
}

/// An HTTP(S) site: `/` serves [`PAGE`], `/go` redirects to `location`,
/// `/hold` reports its arrival and answers when released.
struct Site {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    held: mpsc::Receiver<()>,
    release: Arc<Notify>,
}

impl Site {
    async fn start(ip: &str, tls: Option<TlsAcceptor>, location: Option<String>) -> Site {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (held_tx, held) = mpsc::channel(4);
        let (h, r) = (Arc::clone(&hits), Arc::clone(&release));
        let handler = move |req: Request<Incoming>| {
            let (hits, release, held_tx, location) = (
                Arc::clone(&h),
                Arc::clone(&r),
                held_tx.clone(),
                location.clone(),
            );
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                match req.uri().path() {
                    "/go" => Response::builder()
                        .status(302)
                        .header("location", location.unwrap_or_default())
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                    path => {
                        if path == "/hold" {
                            let _ = held_tx.send(()).await;
                            release.notified().await;
                        }
                        Response::builder()
                            .header("content-type", "text/html")
                            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
                            .unwrap()
                    }
                }
            }
        };
        tokio::spawn(serve_http(listener, tls, handler));
        Site {
            addr,
            hits,
            held,
            release,
        }
    }
}

/// A server answering every request with `status` and `body`.
struct Fixed {
    url: String,
}

impl Fixed {
    async fn start(status: u16, body: &'static str) -> Fixed {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(serve_http(listener, None, move |_req| async move {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap()
        }));
        Fixed { url }
    }
}

async fn serve_http<F, Fut>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acc) => {
                    if let Ok(s) = acc.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// Accepts connections and never answers.
struct Silent {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                keep.push(s);
            }
        });
        Silent { url, accepted }
    }
}

/// A TCP listener on 127.0.0.1 (and [::1] on the same port when possible)
/// counting every connection it gets.
struct Canary {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Canary {
    async fn start() -> Canary {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let mut listeners = vec![v4];
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        for l in listeners {
            let h = Arc::clone(&hits);
            tokio::spawn(async move {
                while let Ok((_s, _)) = l.accept().await {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        Canary { port, hits }
    }
}

/// A UDP DNS server on 127.0.0.1: A answers from its table, empty AAAA
/// answers for known names, NXDOMAIN for the rest.
struct FakeDns {
    addr: SocketAddr,
}

impl FakeDns {
    async fn start(table: &[(&str, &str)]) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let table: HashMap<String, IpAddr> = table
            .iter()
            .map(|(n, ip)| (format!("{n}."), ip.parse().unwrap()))
            .collect();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries.first().cloned() else {
                    continue;
                };
                let mut m = Message::response(q.metadata.id, OpCode::Query);
                m.metadata.recursion_desired = q.metadata.recursion_desired;
                m.metadata.recursion_available = true;
                m.add_query(query.clone());
                let name = query.name().to_ascii().to_ascii_lowercase();
                match table.get(&name) {
                    None => m.metadata.response_code = ResponseCode::NXDomain,
                    Some(ip) => match (ip, query.query_type()) {
                        (IpAddr::V4(a), RecordType::A) => {
                            m.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::A(rdata::A(*a)),
                            ));
                        }
                        (IpAddr::V6(a), RecordType::AAAA) => {
                            m.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::AAAA(rdata::AAAA(*a)),
                            ));
                        }
                        _ => {}
                    },
                }
                if let Ok(wire) = m.to_vec() {
                    let _ = sock.send_to(&wire, from).await;
                }
            }
        });
        FakeDns { addr }
    }
}

/// Issue 16: a name answering 300 addresses costs the control at most
/// `MAX_ADDRS_PER_NAME` of its own connects (the cap the probe uses too),
/// and a request with more than `MAX_TCP_CONNECT` endpoints is refused.
#[tokio::test]
async fn many_addresses_are_capped_like_the_probe() {
    use crate::fakes::dns;
    use gatewatch::control::protocol::{MAX_ADDRS_PER_NAME, MAX_TCP_CONNECT};
    let site = Site::start("127.0.0.2", None, None).await;
    let port = site.addr.port();
    let mut addrs: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap()];
    addrs.extend(
        (0..299u32).map(|i| IpAddr::from([127, 0, 5 + (i / 200) as u8, (i % 200) as u8 + 1])),
    );
    let fake = dns::spawn(dns::Script::always(dns::Reply::Answer(addrs))).await;
    let control = Control::start(config(
        fake.addr,
        &["127.0.0.2/32", "127.0.5.0/24", "127.0.6.0/24"],
    ))
    .await;
    let url = format!("http://many.test:{port}/");

    let r = control.ask(&request(&url, &[])).await;
    assert_eq!(r.dns.addrs.len(), 300);
    let mut ips: Vec<&str> = r
        .tcp_connect
        .keys()
        .map(|k| k.rsplit_once(':').unwrap().0)
        .collect();
    ips.sort();
    ips.dedup();
    assert!(
        !ips.is_empty() && ips.len() <= MAX_ADDRS_PER_NAME,
        "{ips:?}"
    );
    assert_eq!(r.http_request.status_code, 200);

    let too_many: Vec<String> = (0..=MAX_TCP_CONNECT)
        .map(|i| format!("127.0.5.{}:{port}", i + 1))
        .collect();
    let body = ControlRequest {
        http_request: url.clone(),
        tcp_connect: too_many,
        ..ControlRequest::default()
    };
    let resp = plain_http()
        .post(&control.url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

/// Issue 16: a reply whose only records are for a name nobody asked about
/// (`notasked.example`) gives the control no address, so a forged reply
/// cannot steer it to a server of the forger's choosing.
#[tokio::test]
async fn records_for_another_name_do_not_steer_the_control() {
    use crate::fakes::dns;
    let canary = Site::start("127.0.0.2", None, None).await;
    let fake = dns::spawn(dns::Script::always(dns::Reply::Unasked(
        "notasked.example".into(),
        vec!["127.0.0.2".parse().unwrap()],
    )))
    .await;
    let control = Control::start(config(fake.addr, &["127.0.0.2/32"])).await;
    let url = format!("http://site.test:{}/", canary.addr.port());

    let r = control.ask(&request(&url, &[])).await;
    assert!(r.dns.addrs.is_empty(), "{:?}", r.dns);
    assert!(r.tcp_connect.is_empty(), "{:?}", r.tcp_connect);
    assert_eq!(
        canary.hits.load(Ordering::SeqCst),
        0,
        "the canary was contacted"
    );
}
