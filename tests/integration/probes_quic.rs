//! Tests: probes::quic::handshake against a real quinn server on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::quic::{h3_params, handshake};
use probes::records::TlsHandshake;
use probes::tls::{TlsParams, TrustRoots};
use probes::{Failure, Trace};

use crate::fakes::ca::{self, TestCa};
use crate::quic_fake;

fn params(name: &str, roots: Arc<TrustRoots>, timeout_ms: u64) -> TlsParams {
    let mut p = h3_params(name, roots);
    p.timeout = Duration::from_millis(timeout_ms);
    p
}

async fn run(addr: SocketAddr, p: &TlsParams) -> TlsHandshake {
    let trace = Trace::new();
    let (rec, conn) = handshake(&trace, addr, p).await;
    assert_eq!(conn.is_some(), rec.failure.is_none(), "{rec:?}");
    if let Some(c) = conn {
        c.close().await;
    }
    rec
}

#[tokio::test]
async fn handshake_succeeds_and_records_h3_and_chain() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["www.example.org"]);
    let srv = quic_fake::spawn(&cert).await;
    let rec = run(srv.addr, &params("www.example.org", ca.roots(), 3000)).await;
    assert_eq!(rec.failure, None);
    assert_eq!(rec.network, "udp");
    assert_eq!(rec.address, srv.addr.to_string());
    assert_eq!(rec.server_name, "www.example.org");
    assert_eq!(rec.negotiated_protocol, "h3");
    assert_eq!(rec.tls_version, "TLSv1.3");
    assert_eq!(rec.x_certificate_failure, None);
    assert!(!rec.no_tls_verify);
    assert_eq!(rec.peer_certificates.len(), 1);
    assert_eq!(rec.peer_certificates[0].decode(), cert.leaf_der());
    assert!(rec.t >= rec.t0);
    assert_eq!(srv.sni(), vec!["www.example.org".to_string()]);
}

#[tokio::test]
async fn silent_udp_port_is_a_generic_timeout() {
    let (addr, _hold) = quic_fake::blackhole();
    let rec = run(addr, &params("www.example.org", TrustRoots::webpki(), 400)).await;
    assert_eq!(rec.failure, Some(Failure::GenericTimeout));
    assert!(rec.peer_certificates.is_empty());
    assert_eq!(rec.network, "udp");
}

#[tokio::test]
async fn closed_udp_port_is_a_generic_timeout() {
    // UDP has no refusal quinn reports: a closed port looks like a drop.
    let addr = quic_fake::closed_port();
    let rec = run(addr, &params("www.example.org", TrustRoots::webpki(), 400)).await;
    assert_eq!(rec.failure, Some(Failure::GenericTimeout));
}

#[tokio::test]
async fn untrusted_chain_is_refused_and_recorded() {
    let cert = ca::self_signed(&["www.example.org"]);
    let srv = quic_fake::spawn(&cert).await;
    let rec = run(
        srv.addr,
        &params("www.example.org", TrustRoots::webpki(), 3000),
    )
    .await;
    assert_eq!(rec.failure, Some(Failure::SslUnknownAuthority));
    assert_eq!(
        rec.x_certificate_failure,
        Some(Failure::SslUnknownAuthority)
    );
    assert_eq!(rec.peer_certificates.len(), 1);
    assert_eq!(rec.peer_certificates[0].decode(), cert.leaf_der());
    assert!(srv.sni().is_empty());
}

#[tokio::test]
async fn wrong_name_is_refused_and_recorded() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["other.example.net"]);
    let srv = quic_fake::spawn(&cert).await;
    let rec = run(srv.addr, &params("www.example.org", ca.roots(), 3000)).await;
    assert_eq!(rec.failure, Some(Failure::SslInvalidHostname));
    assert_eq!(rec.x_certificate_failure, Some(Failure::SslInvalidHostname));
    assert!(rec.x_leaf.unwrap().subject.contains("other.example.net"));
}

#[tokio::test]
async fn no_verify_completes_and_keeps_the_verdict() {
    let cert = ca::self_signed(&["www.example.org"]);
    let srv = quic_fake::spawn(&cert).await;
    let mut p = params("www.example.org", TrustRoots::webpki(), 3000);
    p.fail_on_invalid = false;
    let rec = run(srv.addr, &p).await;
    assert_eq!(rec.failure, None);
    assert!(rec.no_tls_verify);
    assert_eq!(
        rec.x_certificate_failure,
        Some(Failure::SslUnknownAuthority)
    );
}

#[tokio::test]
async fn no_common_alpn_is_a_failed_handshake() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["www.example.org"]);
    let srv = quic_fake::spawn_at(
        quic_fake::server_config(&cert, &[b"hq-interop"]),
        "127.0.0.1:0".parse().unwrap(),
    );
    let rec = run(srv.addr, &params("www.example.org", ca.roots(), 3000)).await;
    assert_eq!(rec.failure, Some(Failure::SslFailedHandshake));
}

#[tokio::test]
async fn one_http3_get_over_the_handshake_is_recorded_as_udp_h3() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["www.example.org"]);
    let srv = quic_fake::spawn_h3_at(
        quic_fake::server_config(&cert, &[b"h3"]),
        "127.0.0.1:0".parse().unwrap(),
    );
    let trace = Trace::new();
    let (hs, conn) = handshake(
        &trace,
        srv.addr,
        &params("www.example.org", ca.roots(), 3000),
    )
    .await;
    assert_eq!(hs.failure, None);
    let conn = conn.unwrap();
    let url = url::Url::parse(&format!(
        "https://www.example.org:{}/x?y=1",
        srv.addr.port()
    ))
    .unwrap();
    let mut hp = probes::http::HttpParams::new(url.clone());
    hp.timeout = Duration::from_secs(3);
    let tx = probes::quic::get(&trace, &conn, &hp).await;
    conn.close().await;
    assert_eq!(tx.failure, None, "{tx:?}");
    assert_eq!(tx.network, "udp");
    assert_eq!(tx.alpn, "h3");
    assert_eq!(tx.address, srv.addr.to_string());
    assert_eq!(tx.request.url, url.to_string());
    assert_eq!(tx.request.method, "GET");
    assert_eq!(tx.response.code, 200);
    assert_eq!(tx.response.body.to_bytes(), quic_fake::H3_PAGE.as_bytes());
    assert_eq!(tx.response.x_title.as_deref(), Some("H3 page"));
    assert_eq!(
        tx.response.headers.get("content-type").map(String::as_str),
        Some("text/html")
    );

    // A QUIC server that speaks no HTTP/3 on the connection: a timeout.
    let plain = quic_fake::spawn(&cert).await;
    let (_, conn) = handshake(
        &trace,
        plain.addr,
        &params("www.example.org", ca.roots(), 3000),
    )
    .await;
    let conn = conn.unwrap();
    hp.timeout = Duration::from_millis(500);
    let tx = probes::quic::get(&trace, &conn, &hp).await;
    assert_eq!(tx.failure, Some(Failure::GenericTimeout), "{tx:?}");
    assert_eq!(tx.response.code, 0);
}
