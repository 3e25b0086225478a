//! Cost of each measurement primitive on loopback: p50/p99 latency of a UDP
//! DNS query (with the listening window set to zero), a TCP connect, a TLS
//! handshake, a QUIC handshake (quinn), and an HTTP GET, each against an
//! in-process server; then the
//! wall time of many UDP queries in parallel. Loopback only.
//!
//!   PROBES_BENCH_N=300 bash bench/probes_bench.sh

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{rdata, RData, Record};
use probes::dns::{udp, DnsOptions, QueryType};
use probes::http::{self, HttpParams};
use probes::tcp::{self, TcpOptions};
use probes::tls::{self, TlsParams, TrustRoots};
use probes::Trace;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

fn main() {
    let n: usize = std::env::var("PROBES_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let dns = dns_server().await;
    let web = http_server().await;
    let tls_srv = tls_server().await;
    let dns_opts = DnsOptions {
        timeout: Duration::from_secs(2),
        listen_after_first: Duration::ZERO,
    };
    let tcp_opts = TcpOptions {
        timeout: Duration::from_secs(2),
        ttl: None,
    };

    let mut t = Vec::new();
    for _ in 0..n {
        let s = Instant::now();
        let q = udp::query(&Trace::new(), dns, "bench.example", QueryType::A, &dns_opts).await;
        assert!(q.failure.is_none());
        t.push(s.elapsed());
    }
    report("dns::udp::query (listen_after_first=0)", &mut t);

    for _ in 0..n {
        let s = Instant::now();
        let (r, _) = tcp::connect(&Trace::new(), web, &tcp_opts).await;
        assert!(r.status.success);
        t.push(s.elapsed());
    }
    report("tcp::connect", &mut t);

    let roots = TrustRoots::webpki();
    for _ in 0..n {
        let trace = Trace::new();
        let (_, s) = tcp::connect(&trace, tls_srv, &tcp_opts).await;
        let p = TlsParams {
            fail_on_invalid: false,
            ..TlsParams::for_host("bench.example", Arc::clone(&roots))
        };
        let start = Instant::now();
        let (r, _) = tls::handshake(&trace, s.unwrap(), tls_srv, &p).await;
        assert!(r.failure.is_none());
        t.push(start.elapsed());
    }
    report("tls::handshake (TLS 1.3, P-256 leaf)", &mut t);

    let quic_srv = quic_server();
    for _ in 0..n {
        let p = TlsParams {
            fail_on_invalid: false,
            ..probes::quic::h3_params("bench.example", Arc::clone(&roots))
        };
        let start = Instant::now();
        let (r, conn) = probes::quic::handshake(&Trace::new(), quic_srv.0, &p).await;
        assert!(r.failure.is_none(), "{:?}", r.failure);
        t.push(start.elapsed());
        if let Some(c) = conn {
            c.close().await;
        }
    }
    report("quic::handshake (ALPN h3, P-256 leaf)", &mut t);

    let params = HttpParams::new(url::Url::parse("http://bench.example/").unwrap());
    for _ in 0..n {
        let trace = Trace::new();
        let (_, s) = tcp::connect(&trace, web, &tcp_opts).await;
        let start = Instant::now();
        let tx = http::get(&trace, s.unwrap(), web, "", &params).await;
        assert_eq!(tx.response.code, 200);
        t.push(start.elapsed());
    }
    report("http::get (10 KiB body)", &mut t);

    for parallel in [100usize, 1000] {
        let start = Instant::now();
        let tasks: Vec<_> = (0..parallel)
            .map(|_| {
                let o = dns_opts.clone();
                tokio::spawn(async move {
                    udp::query(&Trace::new(), dns, "bench.example", QueryType::A, &o).await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap().failure.is_none() {
                ok += 1;
            }
        }
        println!(
            "{parallel} parallel dns::udp::query: {:.1} ms wall, {ok}/{parallel} answered",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

fn report(name: &str, t: &mut Vec<Duration>) {
    t.sort();
    let p = |q: f64| t[((t.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{name}: n={} p50={:.3} ms p99={:.3} ms",
        t.len(),
        p(0.5),
        p(0.99)
    );
    t.clear();
}

async fn dns_server() -> SocketAddr {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::response(q.metadata.id, OpCode::Query);
            let question = q.queries[0].clone();
            let name = question.name().clone();
            m.add_query(question);
            m.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(rdata::A("192.0.2.1".parse().unwrap())),
            ));
            let _ = sock.send_to(&m.to_vec().unwrap(), from).await;
        }
    });
    addr
}

async fn http_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = vec![b'a'; 10 * 1024];
    let mut resp =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    resp.extend_from_slice(&body);
    let resp = Arc::new(resp);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let resp = Arc::clone(&resp);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&resp).await;
            });
        }
    });
    addr
}

/// A quinn server completing handshakes (ALPN h3); keep the endpoint.
fn quic_server() -> (SocketAddr, quinn::Endpoint) {
    let ck = rcgen::generate_simple_self_signed(vec!["bench.example".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let ep = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = ep.local_addr().unwrap();
    let server = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    (addr, ep)
}

async fn tls_server() -> SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec!["bench.example".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut buf = [0u8; 64];
                    let _ = tls.read(&mut buf).await;
                }
            });
        }
    });
    addr
}
