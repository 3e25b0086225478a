//! A real QUIC server (quinn, rustls with aws-lc-rs) for the QUIC tests:
//! on loopback, or at any address inside a lab namespace. It completes
//! handshakes, remembers the SNI each client sent, and holds every
//! connection open until the client closes it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::fakes::ca::TestCert;

/// A running QUIC server.
pub struct QuicFake {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    /// The SNI of every handshake that completed, in order.
    pub seen_sni: Arc<Mutex<Vec<String>>>,
    endpoint: quinn::Endpoint,
}

impl QuicFake {
    /// The SNIs seen so far.
    pub fn sni(&self) -> Vec<String> {
        self.seen_sni.lock().unwrap().clone()
    }
}

impl Drop for QuicFake {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"");
    }
}

/// A quinn server config presenting `cert`, TLS 1.3, offering `alpn`.
pub fn server_config(cert: &TestCert, alpn: &[&[u8]]) -> quinn::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .expect("server cert");
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    quinn::ServerConfig::with_crypto(Arc::new(crypto))
}

/// Starts a QUIC server on 127.0.0.1 offering ALPN `h3`.
pub async fn spawn(cert: &TestCert) -> QuicFake {
    spawn_at(
        server_config(cert, &[b"h3"]),
        "127.0.0.1:0".parse().unwrap(),
    )
}

/// Starts a QUIC server with this config on `bind` (inside the current
/// tokio runtime, which must have time and I/O enabled).
pub fn spawn_at(config: quinn::ServerConfig, bind: SocketAddr) -> QuicFake {
    try_spawn_at(config, bind).expect("bind QUIC server")
}

/// [`spawn_at`], with the bind error returned.
pub fn try_spawn_at(config: quinn::ServerConfig, bind: SocketAddr) -> std::io::Result<QuicFake> {
    try_spawn(config, bind, false)
}

/// [`spawn_at`] that also answers HTTP/3 requests with [`H3_PAGE`].
pub fn spawn_h3_at(config: quinn::ServerConfig, bind: SocketAddr) -> QuicFake {
    try_spawn(config, bind, true).expect("bind QUIC server")
}

/// The page an HTTP/3 fake serves (200, `text/html`).
pub const H3_PAGE: &str = "<title>H3 page</title>served over HTTP/3";

/// Answers every HTTP/3 request on `conn` with [`H3_PAGE`].
async fn serve_h3(conn: quinn::Connection) {
    let Ok(mut h3c) =
        h3::server::Connection::<_, bytes::Bytes>::new(h3_quinn::Connection::new(conn)).await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3c.accept().await {
        tokio::spawn(async move {
            let Ok((_req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "text/html")
                .body(())
                .unwrap();
            if stream.send_response(resp).await.is_ok()
                && stream
                    .send_data(bytes::Bytes::from_static(H3_PAGE.as_bytes()))
                    .await
                    .is_ok()
            {
                let _ = stream.finish().await;
            }
        });
    }
}

/// A QUIC server on `bind`; with `h3`, it answers HTTP/3 requests too.
pub fn try_spawn(
    config: quinn::ServerConfig,
    bind: SocketAddr,
    h3: bool,
) -> std::io::Result<QuicFake> {
    let endpoint = quinn::Endpoint::server(config, bind)?;
    let addr = endpoint.local_addr().expect("addr");
    let seen_sni = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen_sni);
    let ep = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let sni = conn
                    .handshake_data()
                    .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                    .and_then(|d| d.server_name)
                    .unwrap_or_default();
                log.lock().unwrap().push(sni);
                if h3 {
                    serve_h3(conn).await;
                } else {
                    conn.closed().await;
                }
            });
        }
    });
    Ok(QuicFake {
        addr,
        seen_sni,
        endpoint,
    })
}

/// A UDP socket that reads and never answers (a path that drops the
/// replies, or a firewall that drops UDP/443). Keep it alive.
pub fn blackhole() -> (SocketAddr, std::net::UdpSocket) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    (s.local_addr().unwrap(), s)
}

/// A loopback UDP port with nothing bound.
pub fn closed_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().unwrap()
}

/// An https site on 127.0.0.1: TLS over TCP serving a page, optionally
/// announcing HTTP/3 with `Alt-Svc: h3=":port"`, and optionally a QUIC
/// server on the same UDP port.
pub struct H3Site {
    /// The TCP (and UDP) address.
    pub addr: SocketAddr,
    /// The QUIC server, when there is one.
    pub quic: Option<QuicFake>,
}

/// Starts an [`H3Site`] presenting `cert` (a free port for both TCP and UDP
/// is searched for).
pub async fn spawn_h3_site(cert: &TestCert, quic: bool, alt_svc: bool) -> H3Site {
    use crate::fakes::http::{self, Behaviour};
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = udp.local_addr().unwrap();
        drop(udp);
        let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
            continue;
        };
        let server = if quic {
            match try_spawn(server_config(cert, &[b"h3"]), addr, true) {
                Ok(q) => Some(q),
                Err(_) => continue,
            }
        } else {
            None
        };
        let alt = format!("h3=\":{}\"; ma=60", addr.port());
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "text/html")];
        if alt_svc {
            headers.push(("Alt-Svc", alt.as_str()));
        }
        let page = http::response(200, "OK", &headers, b"<title>H3 site</title>hello");
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::fakes::tls::server_config(cert));
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (acceptor, page, log) = (acceptor.clone(), page.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        http::serve(tls, Behaviour::Respond(page), log).await;
                    }
                });
            }
        });
        return H3Site { addr, quic: server };
    }
    panic!("no free TCP+UDP port pair on 127.0.0.1");
}
