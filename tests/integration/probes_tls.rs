//! Tests: probes::tls::handshake against real TLS servers with rcgen
//! certificates on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::records::TlsHandshake;
use probes::tcp::{connect, TcpOptions};
use probes::tls::{handshake, TlsParams, TrustRoots};
use probes::{Failure, Trace};

use crate::fakes::{self, ca::TestCa, http::Behaviour};

fn params(sni: &str, roots: Arc<TrustRoots>, fail_on_invalid: bool) -> TlsParams {
    TlsParams {
        sni: Some(sni.to_string()),
        verify_as: sni.to_string(),
        alpn: vec![b"http/1.1".to_vec()],
        roots,
        timeout: Duration::from_secs(2),
        fail_on_invalid,
        clock_offset_secs: 0,
    }
}

async fn run(trace: &Trace, addr: SocketAddr, p: &TlsParams) -> (TlsHandshake, bool) {
    let opts = TcpOptions {
        timeout: Duration::from_secs(2),
        ttl: None,
    };
    let (_, tcp) = connect(trace, addr, &opts).await;
    let (rec, tls) = handshake(trace, tcp.expect("tcp connect"), addr, p).await;
    (rec, tls.is_some())
}

fn respond_ok() -> Behaviour {
    Behaviour::Respond(fakes::http::response(200, "OK", &[], b"hello"))
}

#[tokio::test]
async fn trusted_chain_succeeds_and_records_details() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["www.example.org"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let trace = Trace::new();
    let (rec, ok) = run(
        &trace,
        srv.addr,
        &params("www.example.org", ca.roots(), true),
    )
    .await;
    assert!(ok);
    assert_eq!(rec.failure, None);
    assert_eq!(rec.x_certificate_failure, None);
    assert_eq!(rec.tls_version, "TLSv1.3");
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&rec.cipher_suite.as_str()),
        "{}",
        rec.cipher_suite
    );
    assert_eq!(rec.negotiated_protocol, "http/1.1");
    assert_eq!(rec.server_name, "www.example.org");
    assert_eq!(rec.x_verify_as, "www.example.org");
    assert_eq!(rec.address, srv.addr.to_string());
    assert!(!rec.no_tls_verify);
    assert_eq!(rec.peer_certificates.len(), 1);
    assert_eq!(rec.peer_certificates[0].decode(), cert.leaf_der());
    let leaf = rec.x_leaf.expect("leaf summary");
    assert_eq!(leaf.subject, "CN=www.example.org");
    assert_eq!(leaf.issuer, "CN=gatewatch test CA");
    assert_eq!(leaf.sha256.len(), 64);
    let ops: Vec<String> = trace
        .take_events()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        ops,
        ["connect", "tls_handshake_start", "tls_handshake_done"]
    );
}

#[tokio::test]
async fn tls12_server_records_version_and_suite() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["old-tls.example"]);
    let cfg = fakes::tls::server_config_tls12(&cert);
    let srv = fakes::tls::spawn_with_config(cfg, respond_ok()).await;
    let (rec, ok) = run(
        &Trace::new(),
        srv.addr,
        &params("old-tls.example", ca.roots(), true),
    )
    .await;
    assert!(ok);
    assert_eq!(rec.failure, None);
    assert_eq!(rec.tls_version, "TLSv1.2");
    assert!(
        rec.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        rec.cipher_suite
    );
}

#[tokio::test]
async fn self_signed_is_unknown_authority_with_chain_kept() {
    let cert = fakes::ca::self_signed(&["self.example"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let trace = Trace::new();
    let (rec, ok) = run(
        &trace,
        srv.addr,
        &params("self.example", TrustRoots::webpki(), true),
    )
    .await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::SslUnknownAuthority));
    assert_eq!(
        rec.x_certificate_failure,
        Some(Failure::SslUnknownAuthority)
    );
    assert_eq!(rec.peer_certificates.len(), 1);
    assert_eq!(rec.peer_certificates[0].decode(), cert.leaf_der());
    assert_eq!(rec.tls_version, "");
    let done = trace
        .take_events()
        .into_iter()
        .find(|e| e.operation == "tls_handshake_done")
        .unwrap();
    assert_eq!(done.failure, Some(Failure::SslUnknownAuthority));
}

#[tokio::test]
async fn expired_is_invalid_certificate() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue_expired(&["old.example"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let (rec, ok) = run(
        &Trace::new(),
        srv.addr,
        &params("old.example", ca.roots(), true),
    )
    .await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::SslInvalidCertificate));
    assert_eq!(rec.peer_certificates.len(), 1);
}

#[tokio::test]
async fn wrong_name_is_invalid_hostname() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["other.example"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let (rec, ok) = run(
        &Trace::new(),
        srv.addr,
        &params("www.example.org", ca.roots(), true),
    )
    .await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::SslInvalidHostname));
    assert_eq!(
        rec.x_leaf.map(|l| l.subject),
        Some("CN=other.example".to_string())
    );
}

#[tokio::test]
async fn not_failing_on_invalid_completes_and_records_verdict() {
    let cert = fakes::ca::self_signed(&["self.example"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let (rec, ok) = run(
        &Trace::new(),
        srv.addr,
        &params("self.example", TrustRoots::webpki(), false),
    )
    .await;
    assert!(ok);
    assert_eq!(rec.failure, None);
    assert!(rec.no_tls_verify);
    assert_eq!(
        rec.x_certificate_failure,
        Some(Failure::SslUnknownAuthority)
    );
    assert_eq!(rec.tls_version, "TLSv1.3");
}

#[tokio::test]
async fn verify_as_differs_from_sni() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["control.example"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let mut p = params("blocked.example", ca.roots(), true);
    p.verify_as = "control.example".to_string();
    let (rec, ok) = run(&Trace::new(), srv.addr, &p).await;
    assert!(ok);
    assert_eq!(rec.failure, None);
    assert_eq!(rec.server_name, "blocked.example");
    assert_eq!(rec.x_verify_as, "control.example");
}

#[tokio::test]
async fn no_sni_records_empty_server_name() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["www.example.org"]);
    let srv = fakes::tls::spawn(&cert, respond_ok()).await;
    let mut p = params("www.example.org", ca.roots(), true);
    p.sni = None;
    let (rec, ok) = run(&Trace::new(), srv.addr, &p).await;
    assert!(ok);
    assert_eq!(rec.server_name, "");
}

#[tokio::test]
async fn rst_after_client_hello_is_connection_reset() {
    let addr = fakes::tcp::reset_after_first_read().await;
    let trace = Trace::new();
    let (rec, ok) = run(
        &trace,
        addr,
        &params("blocked.example", TrustRoots::webpki(), true),
    )
    .await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::ConnectionReset));
    assert!(rec.peer_certificates.is_empty());
}

#[tokio::test]
async fn silent_server_is_generic_timeout() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let mut p = params("slow.example", TrustRoots::webpki(), true);
    p.timeout = Duration::from_millis(300);
    let (rec, ok) = run(&Trace::new(), addr, &p).await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::GenericTimeout));
}

#[tokio::test]
async fn close_after_client_hello_is_eof() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut s, _)) = l.accept().await {
            // Drain the whole ClientHello so closing sends a FIN, not a RST.
            let mut buf = [0u8; 8192];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
            }
            drop(s);
        }
    });
    let (rec, ok) = run(
        &Trace::new(),
        addr,
        &params("fin.example", TrustRoots::webpki(), true),
    )
    .await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::Eof));
}

#[tokio::test]
async fn non_tls_answer_is_failed_handshake() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let p = TlsParams::for_host("plain.example", TrustRoots::webpki());
    let (rec, ok) = run(&Trace::new(), addr, &p).await;
    assert!(!ok);
    assert_eq!(rec.failure, Some(Failure::SslFailedHandshake));
}

#[test]
fn pem_loading_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("empty.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let err = TrustRoots::with_pem_files(std::slice::from_ref(&bad)).unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
    let missing = dir.path().join("missing.pem");
    assert!(TrustRoots::with_pem_files(&[missing]).is_err());
    let webpki = TrustRoots::webpki();
    assert!(webpki.store.len() > 100);
    assert!(Arc::ptr_eq(&webpki, &TrustRoots::webpki()));
}
