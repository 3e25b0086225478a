//! Tests: the HTTP/3 row end to end on loopback: a site with TLS over TCP
//! and a quinn QUIC server on the same port, the real control server
//! (`quic_handshake`, `discovered_h3_endpoint`), `web::measure` and the
//! analysis (`x_quic_verdict`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gatewatch::analysis::{analyze, AnalysisContext};
use gatewatch::control::client::ControlClient;
use gatewatch::control::protocol::{ControlRequest, ControlResponse};
use gatewatch::control::server::serve;
use gatewatch::model::{Measurement, VerdictStatus, WebTestKeys};
use gatewatch::web::{measure, QuicMode, WebSettings};
use probes::Failure;
use tokio::net::TcpListener;

use crate::fakes::ca::TestCa;
use crate::fakes::dns::{self as fdns, Reply, Script};
use crate::quic_fake;

const HOST: &str = "www.example.org";

/// A control server on 127.0.0.1 that treats 127.0.0.1 as public and
/// trusts `ca`; its URL and the task.
async fn control(
    dns: std::net::SocketAddr,
    ca: &TestCa,
    dir: &std::path::Path,
) -> (String, tokio::task::JoinHandle<()>) {
    let mut cfg = crate::control::config(dns, &["127.0.0.1/32"]);
    cfg.ca_files = vec![ca.write_pem(dir)];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        serve(cfg, listener, std::future::pending()).await.unwrap();
    });
    (url, task)
}

fn settings(resolver: std::net::SocketAddr, ca: &TestCa, quic: QuicMode) -> WebSettings {
    WebSettings {
        resolvers: vec![resolver],
        system_resolver: false,
        roots: ca.roots(),
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        listen_after_first: Duration::from_millis(100),
        tls: Duration::from_secs(1),
        quic,
        ..WebSettings::default()
    }
}

fn analysed(url: &str, keys: WebTestKeys) -> Measurement {
    let mut m = Measurement {
        input: Some(url.to_string()),
        test_keys: keys,
        ..Measurement::default()
    };
    let ctx = AnalysisContext {
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        ..AnalysisContext::default()
    };
    analyze(&mut m, &ctx);
    m
}

struct World {
    ca: TestCa,
    _dir: tempfile::TempDir,
    dns: fdns::DnsFake,
    control_url: String,
    _control: tokio::task::JoinHandle<()>,
}

async fn world() -> World {
    let ca = TestCa::new("gatewatch test CA");
    let dir = tempfile::tempdir().unwrap();
    let dns = fdns::spawn(Script::always(Reply::Answer(vec![IpAddr::V4(
        Ipv4Addr::LOCALHOST,
    )])))
    .await;
    let (control_url, task) = control(dns.addr, &ca, dir.path()).await;
    World {
        ca,
        _dir: dir,
        dns,
        control_url,
        _control: task,
    }
}

#[tokio::test]
async fn an_announced_h3_site_is_handshaken_at_both_ends_and_reachable() {
    let w = world().await;
    let site = quic_fake::spawn_h3_site(&w.ca.issue(&[HOST]), true, true).await;
    let port = site.addr.port();
    let url = format!("https://{HOST}:{port}/");
    let client = ControlClient::new(vec![w.control_url.clone()], &[]).unwrap();

    let k = measure(
        &url,
        &settings(w.dns.addr, &w.ca, QuicMode::Discovered),
        Some(&client),
    )
    .await;

    let req = k.x_control_request.as_ref().unwrap();
    assert!(req.x_quic_enabled);
    assert!(!req.x_quic_always);
    let c = k.control.as_ref().expect("control answer");
    assert_eq!(
        c.http_request.discovered_h3_endpoint,
        format!("{HOST}:{port}")
    );
    let key = format!("127.0.0.1:{port}");
    let cq = &c.quic_handshake[&key];
    assert!(cq.status, "{cq:?}");
    assert_eq!(cq.server_name, HOST);
    assert_eq!(k.quic_handshakes.len(), 1, "{:?}", k.quic_handshakes);
    let q = &k.quic_handshakes[0];
    assert_eq!(q.failure, None);
    assert_eq!(q.network, "udp");
    assert_eq!(q.address, key);
    assert_eq!(q.server_name, HOST);
    assert_eq!(q.negotiated_protocol, "h3");
    // The probe's handshake and the control's both reached the server.
    let quic = site.quic.as_ref().unwrap();
    assert_eq!(quic.sni(), vec![HOST.to_string(), HOST.to_string()]);
    // One HTTP/3 GET each.
    assert_eq!(k.x_http3_requests.len(), 1, "{:?}", k.x_http3_requests);
    let h3 = &k.x_http3_requests[0];
    assert_eq!((h3.network.as_str(), h3.alpn.as_str()), ("udp", "h3"));
    assert_eq!(h3.failure, None);
    assert_eq!(h3.response.code, 200);
    assert_eq!(h3.response.x_title.as_deref(), Some("H3 page"));
    let c3 = c.http3_request.as_ref().expect("control http3_request");
    assert_eq!(c3.status_code, 200);
    assert_eq!(c3.title, "H3 page");
    assert_eq!(c3.body_length, quic_fake::H3_PAGE.len() as i64);
    // The TCP page stays the headline request.
    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].network, "tcp");

    let m = analysed(&url, k);
    assert_eq!(
        m.test_keys.x_verdict.as_ref().unwrap().status,
        VerdictStatus::Accessible
    );
    let qv = m.test_keys.x_quic_verdict.as_ref().unwrap();
    assert_eq!(qv.status, VerdictStatus::Accessible, "{qv:?}");
    assert_eq!(qv.layer.as_deref(), Some("quic"));
}

#[tokio::test]
async fn a_site_without_http3_under_quic_is_down_for_quic_and_accessible() {
    let w = world().await;
    let site = quic_fake::spawn_h3_site(&w.ca.issue(&[HOST]), false, false).await;
    let port = site.addr.port();
    let url = format!("https://{HOST}:{port}/");
    let client = ControlClient::new(vec![w.control_url.clone()], &[]).unwrap();

    let k = measure(
        &url,
        &settings(w.dns.addr, &w.ca, QuicMode::Always),
        Some(&client),
    )
    .await;

    assert!(k.x_control_request.as_ref().unwrap().x_quic_always);
    let c = k.control.as_ref().unwrap();
    assert_eq!(c.http_request.discovered_h3_endpoint, "");
    let key = format!("127.0.0.1:{port}");
    assert!(!c.quic_handshake[&key].status);
    assert_eq!(
        c.quic_handshake[&key].failure.as_deref(),
        Some("generic_timeout_error")
    );
    // The site's name timed out, then the harmless name did too.
    let failures: Vec<(String, Option<Failure>)> = k
        .quic_handshakes
        .iter()
        .map(|h| (h.server_name.clone(), h.failure.clone()))
        .collect();
    assert_eq!(
        failures,
        vec![
            (HOST.to_string(), Some(Failure::GenericTimeout)),
            ("example.org".to_string(), Some(Failure::GenericTimeout)),
        ]
    );
    assert!(k.quic_handshakes[1]
        .tags
        .contains(&"quic_control_name".to_string()));

    let m = analysed(&url, k);
    assert_eq!(
        m.test_keys.x_verdict.as_ref().unwrap().status,
        VerdictStatus::Accessible
    );
    let qv = m.test_keys.x_quic_verdict.as_ref().unwrap();
    assert_eq!(qv.status, VerdictStatus::Down, "{qv:?}");
    assert_eq!(qv.mechanism, None);
}

#[tokio::test]
async fn without_alt_svc_no_quic_is_made_by_default() {
    let w = world().await;
    let site = quic_fake::spawn_h3_site(&w.ca.issue(&[HOST]), true, false).await;
    let url = format!("https://{HOST}:{}/", site.addr.port());
    let client = ControlClient::new(vec![w.control_url.clone()], &[]).unwrap();

    let k = measure(
        &url,
        &settings(w.dns.addr, &w.ca, QuicMode::Discovered),
        Some(&client),
    )
    .await;

    let c = k.control.as_ref().unwrap();
    assert_eq!(c.http_request.discovered_h3_endpoint, "");
    assert!(c.quic_handshake.is_empty());
    assert_eq!(c.http3_request, None);
    assert!(k.quic_handshakes.is_empty());
    assert!(k.x_http3_requests.is_empty());
    assert!(site.quic.as_ref().unwrap().sni().is_empty());
    let m = analysed(&url, k);
    assert_eq!(m.test_keys.x_quic_verdict, None);
}

#[tokio::test]
async fn the_control_answers_quic_only_when_asked() {
    let w = world().await;
    let site = quic_fake::spawn_h3_site(&w.ca.issue(&[HOST]), true, true).await;
    let port = site.addr.port();
    let key = format!("127.0.0.1:{port}");
    let ask = |quic: bool| {
        let req = ControlRequest {
            http_request: format!("https://{HOST}:{port}/"),
            tcp_connect: vec![key.clone()],
            x_quic_enabled: quic,
            ..ControlRequest::default()
        };
        let url = w.control_url.clone();
        async move {
            let text = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(&url)
                .json(&req)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<ControlResponse>(&text).unwrap()
        }
    };
    let off = ask(false).await;
    assert_eq!(
        off.http_request.discovered_h3_endpoint,
        format!("{HOST}:{port}")
    );
    assert!(off.quic_handshake.is_empty());
    let on = ask(true).await;
    assert!(on.quic_handshake[&key].status, "{:?}", on.quic_handshake);
    assert_eq!(site.quic.as_ref().unwrap().sni(), vec![HOST.to_string()]);
}

#[tokio::test]
async fn the_control_never_sends_quic_to_a_forbidden_address() {
    // Only 127.0.0.2 is public to this control; a UDP canary on 127.0.0.1
    // must receive nothing, whatever the request says.
    let canary = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = canary.local_addr().unwrap().port();
    let dns = fdns::spawn(Script::always(Reply::Answer(vec![IpAddr::V4(
        Ipv4Addr::LOCALHOST,
    )])))
    .await;
    let cfg = crate::control::config(dns.addr, &["127.0.0.2/32"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        serve(cfg, listener, std::future::pending()).await.unwrap();
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (target, endpoints) in [
        (format!("https://{HOST}:{port}/"), vec![]),
        (
            format!("https://{HOST}:{port}/"),
            vec![
                format!("127.0.0.1:{port}"),
                format!("[::ffff:127.0.0.1]:{port}"),
                format!("[::ffff:7f00:1]:{port}"),
            ],
        ),
        (format!("https://127.0.0.1:{port}/"), vec![]),
        (format!("https://[::ffff:127.0.0.1]:{port}/"), vec![]),
    ] {
        let req = ControlRequest {
            http_request: target.clone(),
            tcp_connect: endpoints,
            x_quic_enabled: true,
            x_quic_always: true,
            ..ControlRequest::default()
        };
        let text = client
            .post(&url)
            .json(&req)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r: ControlResponse = serde_json::from_str(&text).unwrap();
        assert!(
            r.quic_handshake.is_empty(),
            "{target}: {:?}",
            r.quic_handshake
        );
    }
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(300), canary.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the canary on 127.0.0.1 received a datagram");
    task.abort();
}
