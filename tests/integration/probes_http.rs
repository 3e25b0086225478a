//! Tests: probes::http::get against scripted HTTP servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use probes::http::{default_headers, get, HttpParams, MIN_RATE_WINDOW_S};
use probes::records::{HttpTransaction, MaybeBinary};
use probes::tcp::{connect, TcpOptions};
use probes::tls::{handshake, TlsParams};
use probes::{Failure, Trace};

use crate::fakes::{self, ca::TestCa, http::Behaviour};

fn params(url: &str, timeout_ms: u64, cap: usize) -> HttpParams {
    HttpParams {
        url: url::Url::parse(url).unwrap(),
        host_header: None,
        headers: default_headers(),
        body_cap: cap,
        timeout: Duration::from_millis(timeout_ms),
    }
}

async fn plain(trace: &Trace, addr: SocketAddr, p: &HttpParams) -> HttpTransaction {
    let opts = TcpOptions {
        timeout: Duration::from_secs(2),
        ttl: None,
    };
    let (_, tcp) = connect(trace, addr, &opts).await;
    get(trace, tcp.expect("connect"), addr, "", p).await
}

/// A GET of `http://site.example/` from `addr` (2 s timeout, 1 KiB body
/// cap), on a fresh trace.
async fn get_site(addr: SocketAddr) -> HttpTransaction {
    plain(
        &Trace::new(),
        addr,
        &params("http://site.example/", 2000, 1024),
    )
    .await
}

#[tokio::test]
async fn blockpage_title_and_host_header_independent_of_ip() {
    let srv = fakes::http::spawn(Behaviour::Respond(fakes::http::blockpage(
        "Blocked by the Ministry",
    )))
    .await;
    let trace = Trace::new();
    let mut p = params("http://news.example/path?q=1#frag", 2000, 1 << 20);
    p.host_header = Some("news.example".to_string());
    let tx = plain(&trace, srv.addr, &p).await;
    assert_eq!(tx.failure, None);
    assert_eq!(tx.response.code, 200);
    assert_eq!(
        tx.response.x_title.as_deref(),
        Some("Blocked by the Ministry")
    );
    assert_eq!(
        tx.response.headers.get("content-type").map(String::as_str),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(tx.response.headers_list[0].0, "content-type");
    assert!(!tx.response.body_is_truncated);
    let body = fakes::http::page(
        "Blocked by the Ministry",
        "Access to this website has been blocked.",
    );
    assert_eq!(
        tx.response.body,
        MaybeBinary::Text(String::from_utf8(body.clone()).unwrap())
    );
    assert_eq!(tx.response.x_body_length, body.len() as u64);
    assert_eq!(tx.x_transfer.bytes, body.len() as u64);
    assert_eq!(tx.address, srv.addr.to_string());
    assert_eq!(tx.request.url, "http://news.example/path?q=1#frag");
    assert_eq!(tx.request.method, "GET");
    assert_eq!(
        tx.request.headers.get("Host").map(String::as_str),
        Some("news.example")
    );

    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line, "GET /path?q=1 HTTP/1.1");
    assert_eq!(seen[0].header("host"), Some("news.example"));
    assert!(seen[0]
        .header("user-agent")
        .unwrap()
        .starts_with("Mozilla/5.0"));
    assert!(seen[0].header("accept-language").is_some());

    let events = trace.take_events();
    assert!(events
        .iter()
        .any(|e| e.operation == "write" && e.num_bytes > Some(0)));
    assert!(events
        .iter()
        .any(|e| e.operation == "read" && e.num_bytes > Some(0)));
}

#[tokio::test]
async fn small_quick_body_has_a_nonzero_lower_bound_rate() {
    let srv = fakes::http::spawn(Behaviour::Respond(fakes::http::blockpage("Quick"))).await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, None);
    let t = &tx.x_transfer;
    assert!(t.bytes > 0);
    assert_eq!(t.bytes, tx.response.x_body_length);
    // Exactly bytes / max(body_seconds, 10 ms): the bound when the body was
    // too quick to time, the measured rate otherwise; never 0 with a body.
    assert_eq!(
        t.rate_bps,
        t.bytes as f64 / t.body_seconds.max(MIN_RATE_WINDOW_S)
    );
    assert!(t.rate_bps > 0.0);
}

#[tokio::test]
async fn default_host_header_comes_from_url() {
    let srv = fakes::http::spawn(Behaviour::Respond(fakes::http::response(
        204,
        "No Content",
        &[],
        b"",
    )))
    .await;
    let tx = plain(
        &Trace::new(),
        srv.addr,
        &params("http://site.example:8080/", 2000, 1024),
    )
    .await;
    assert_eq!(tx.failure, None);
    assert_eq!(tx.response.code, 204);
    assert_eq!(tx.response.x_title, None);
    assert_eq!(srv.seen()[0].header("host"), Some("site.example:8080"));
}

#[tokio::test]
async fn redirect_is_reported_not_followed() {
    let srv = fakes::http::spawn(Behaviour::Respond(fakes::http::response(
        302,
        "Found",
        &[("Location", "http://blocked.example/warning")],
        b"",
    )))
    .await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, None);
    assert_eq!(tx.response.code, 302);
    assert_eq!(tx.location(), Some("http://blocked.example/warning"));
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn eof_after_request_is_eof_error() {
    let srv = fakes::http::spawn(Behaviour::CloseAfterRequest).await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, Some(Failure::Eof));
    assert_eq!(tx.response.code, 0);
}

#[tokio::test]
async fn rst_after_request_is_connection_reset() {
    let srv = fakes::http::spawn(Behaviour::ResetAfterRequest).await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, Some(Failure::ConnectionReset));
    assert_eq!(tx.response.code, 0);
}

#[tokio::test]
async fn endless_body_is_truncated_at_cap() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let srv = fakes::http::spawn(Behaviour::Endless { head }).await;
    let cap = 100_000;
    let trace = Trace::new();
    let tx = plain(&trace, srv.addr, &params("http://site.example/", 2000, cap)).await;
    assert_eq!(tx.failure, None);
    assert_eq!(tx.response.code, 200);
    assert!(tx.response.body_is_truncated);
    assert_eq!(tx.response.x_body_length, cap as u64);
    assert_eq!(tx.response.body.to_bytes(), vec![b'x'; cap]);
    assert_eq!(tx.x_transfer.bytes, cap as u64);
    let reads_writes = trace
        .take_events()
        .iter()
        .filter(|e| e.operation == "read" || e.operation == "write")
        .count();
    assert!((2..=probes::metered::DEFAULT_EVENT_CAP).contains(&reads_writes));
}

#[tokio::test]
async fn headers_one_byte_a_second_time_out() {
    let srv = fakes::http::spawn(Behaviour::Dribble {
        bytes: fakes::http::response(200, "OK", &[], b"late"),
        interval: Duration::from_secs(1),
    })
    .await;
    let tx = plain(
        &Trace::new(),
        srv.addr,
        &params("http://site.example/", 1500, 1024),
    )
    .await;
    assert_eq!(tx.failure, Some(Failure::GenericTimeout));
    assert_eq!(tx.response.code, 0);
}

#[tokio::test]
async fn garbage_response_is_http_request_failed() {
    let srv = fakes::http::spawn(Behaviour::Respond(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec())).await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, Some(Failure::HttpRequestFailed));
}

#[tokio::test]
async fn short_body_is_eof_error_and_keeps_partial_body() {
    let srv = fakes::http::spawn(Behaviour::Respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<title>cut</title>".to_vec(),
    ))
    .await;
    let tx = get_site(srv.addr).await;
    assert_eq!(tx.failure, Some(Failure::Eof));
    assert_eq!(tx.response.code, 200);
    assert_eq!(tx.response.body.to_bytes(), b"<title>cut</title>");
    assert_eq!(tx.response.x_title.as_deref(), Some("cut"));
}

#[tokio::test]
async fn get_over_tls_records_alpn() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["secure.example"]);
    let srv = fakes::tls::spawn(
        &cert,
        Behaviour::Respond(fakes::http::response(
            200,
            "OK",
            &[],
            b"<title>Secure</title>",
        )),
    )
    .await;
    let trace = Trace::new();
    let opts = TcpOptions {
        timeout: Duration::from_secs(2),
        ttl: None,
    };
    let (_, tcp) = connect(&trace, srv.addr, &opts).await;
    let tls_params = TlsParams {
        sni: Some("secure.example".to_string()),
        verify_as: "secure.example".to_string(),
        alpn: vec![b"http/1.1".to_vec()],
        roots: ca.roots(),
        timeout: Duration::from_secs(2),
        fail_on_invalid: true,
        clock_offset_secs: 0,
    };
    let (hs, tls) = handshake(&trace, tcp.unwrap(), srv.addr, &tls_params).await;
    assert_eq!(hs.failure, None);
    let tx = get(
        &trace,
        tls.unwrap(),
        srv.addr,
        &hs.negotiated_protocol,
        &params("https://secure.example/", 2000, 1024),
    )
    .await;
    assert_eq!(tx.failure, None);
    assert_eq!(tx.alpn, "http/1.1");
    assert_eq!(tx.response.x_title.as_deref(), Some("Secure"));
    assert_eq!(srv.seen()[0].header("host"), Some("secure.example"));
}
