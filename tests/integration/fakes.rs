//! Shared in-process fake servers on 127.0.0.1 that really misbehave the
//! way censors and broken servers do. Every fake is a real socket server
//! started on an ephemeral loopback port and stopped when its tokio runtime
//! ends (each `#[tokio::test]` has its own), so tests stay hermetic.
//!
//! - [`ca`]: a test certificate authority and leaf certificates (rcgen):
//!   valid, expired, wrong-name, self-signed.
//! - [`tcp`]: a closed port (refused), a blackhole (connect timeout), a
//!   server that resets right after the first bytes (RST after ClientHello).
//! - [`http`]: a scripted HTTP/1.1 server: fixed response, block page, EOF
//!   after the request, RST after the request, endless body, headers one
//!   byte at a time, or any handler; it records the requests it saw.
//! - [`tls`]: the same HTTP behaviours behind TLS with a chosen certificate.
//! - [`dns`]: a scripted UDP+TCP DNS server (forged then genuine reply,
//!   NXDOMAIN, truncated UDP, wrong id, silence).
//! - [`doh`]: a DNS-over-HTTPS server answering from a script.
//!
//! Other helpers may add their own fakes at the end, in a separate section.

#![allow(dead_code)]

/// A test certificate authority and leaf certificates.
pub mod ca {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use probes::tls::TrustRoots;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A certificate chain (leaf first) and the leaf's private key, ready
    /// for a TLS server.
    #[derive(Debug)]
    pub struct TestCert {
        /// Leaf first, then intermediates (none here).
        pub chain: Vec<CertificateDer<'static>>,
        /// The leaf's key (PKCS#8).
        pub key: PrivateKeyDer<'static>,
    }

    impl Clone for TestCert {
        fn clone(&self) -> Self {
            TestCert {
                chain: self.chain.clone(),
                key: self.key.clone_key(),
            }
        }
    }

    impl TestCert {
        /// The leaf's DER.
        pub fn leaf_der(&self) -> &[u8] {
            self.chain[0].as_ref()
        }
    }

    /// A CA that issues leaf certificates for tests.
    pub struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        /// The CA certificate (DER).
        pub cert_der: CertificateDer<'static>,
        /// The CA certificate (PEM).
        pub cert_pem: String,
    }

    impl TestCa {
        /// A new CA whose subject CN is `name`.
        pub fn new(name: &str) -> TestCa {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, name);
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().expect("ca key");
            let cert = params.self_signed(&key).expect("ca cert");
            TestCa {
                cert_der: cert.der().clone(),
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// A leaf for `names` valid from 2020 to 2099.
        pub fn issue(&self, names: &[&str]) -> TestCert {
            self.issue_valid(
                names,
                rcgen::date_time_ymd(2020, 1, 1),
                rcgen::date_time_ymd(2099, 1, 1),
            )
        }

        /// A leaf for `names` that expired in 2021.
        pub fn issue_expired(&self, names: &[&str]) -> TestCert {
            self.issue_valid(
                names,
                rcgen::date_time_ymd(2020, 1, 1),
                rcgen::date_time_ymd(2021, 1, 1),
            )
        }

        /// A leaf for `names` valid between the two dates.
        pub fn issue_valid(
            &self,
            names: &[&str],
            not_before: time::OffsetDateTime,
            not_after: time::OffsetDateTime,
        ) -> TestCert {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                names.first().cloned().unwrap_or_default(),
            );
            params.distinguished_name = dn;
            params.not_before = not_before;
            params.not_after = not_after;
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
            TestCert {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            }
        }

        /// Writes the CA certificate as PEM into `dir`; the file's path.
        pub fn write_pem(&self, dir: &Path) -> PathBuf {
            let path = dir.join("test-ca.pem");
            std::fs::write(&path, &self.cert_pem).expect("write CA PEM");
            path
        }

        /// Mozilla's roots plus this CA, loaded the way users load extra
        /// CAs: through [`TrustRoots::with_pem_files`].
        pub fn roots(&self) -> Arc<TrustRoots> {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = self.write_pem(dir.path());
            TrustRoots::with_pem_files(&[path]).expect("load test CA")
        }
    }

    /// A self-signed leaf for `names` (no CA anyone trusts).
    pub fn self_signed(names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("self-signed");
        TestCert {
            chain: vec![ck.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
        }
    }
}

/// TCP-level fakes: refused, blackholed, reset.
pub mod tcp {
    use std::net::SocketAddr;
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A loopback port with nothing listening (connect → RST →
    /// `connection_refused`).
    pub fn closed_port() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    /// A listener whose accept queue is full, so further SYNs are dropped
    /// and connects time out. Keep it alive for the test's duration.
    pub struct Blackhole {
        /// Where to connect.
        pub addr: SocketAddr,
        _listener: Socket,
        _fillers: Vec<std::net::TcpStream>,
    }

    /// Starts a [`Blackhole`]: `listen(0)` and never accept, then connect
    /// fillers until one no longer completes.
    pub fn blackhole() -> Blackhole {
        blackhole_at("127.0.0.1:0".parse().unwrap())
    }

    /// A [`Blackhole`] on `at` (a loopback address; port 0 picks one).
    pub fn blackhole_at(at: SocketAddr) -> Blackhole {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.bind(&at.into()).expect("bind");
        s.listen(0).expect("listen");
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(c) => fillers.push(c),
                Err(_) => break,
            }
        }
        Blackhole {
            addr,
            _listener: s,
            _fillers: fillers,
        }
    }

    /// A server that reads the client's first bytes (e.g. a TLS
    /// ClientHello), then aborts the connection with a RST
    /// (`SO_LINGER` 0), as SNI-filtering middleboxes do.
    pub async fn reset_after_first_read() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.set_zero_linger();
                    drop(s);
                });
            }
        });
        addr
    }
}

/// A scripted HTTP/1.1 server.
pub mod http {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A request as the fake saw it.
    #[derive(Clone, Debug, Default)]
    pub struct SeenRequest {
        /// The request line, e.g. `GET /x HTTP/1.1`.
        pub request_line: String,
        /// Header names (as sent) and values, in order.
        pub headers: Vec<(String, String)>,
    }

    impl SeenRequest {
        /// The first value of a header (name case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The request target (path and query).
        pub fn target(&self) -> &str {
            self.request_line.split(' ').nth(1).unwrap_or("")
        }
    }

    /// Builds a response from a request.
    pub type Handler = Arc<dyn Fn(&SeenRequest) -> Vec<u8> + Send + Sync>;

    /// What the server does with each connection, after reading the
    /// request head.
    #[derive(Clone)]
    pub enum Behaviour {
        /// Writes these bytes, then closes.
        Respond(Vec<u8>),
        /// Writes what the handler returns, then closes.
        Handle(Handler),
        /// Closes without answering (`eof_error`).
        CloseAfterRequest,
        /// Aborts with a RST without answering (`connection_reset`); plain
        /// TCP only (behind TLS it closes).
        ResetAfterRequest,
        /// Writes `head` (status line and headers, ending in a blank line)
        /// then body bytes forever.
        Endless {
            /// The response head.
            head: Vec<u8>,
        },
        /// Writes these bytes one at a time, `interval` apart.
        Dribble {
            /// What to send.
            bytes: Vec<u8>,
            /// The pause between bytes.
            interval: Duration,
        },
    }

    /// A running fake.
    pub struct HttpFake {
        /// Where it listens.
        pub addr: SocketAddr,
        /// Every request head it read, in order.
        pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    }

    impl HttpFake {
        /// The requests seen so far.
        pub fn seen(&self) -> Vec<SeenRequest> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// A complete response with `Content-Length` and `Connection: close`.
    pub fn response(code: u16, reason: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// An HTML page with this `<title>` and a paragraph of text.
    pub fn page(title: &str, text: &str) -> Vec<u8> {
        format!("<!DOCTYPE html><html><head><title>{title}</title></head><body><p>{text}</p></body></html>")
            .into_bytes()
    }

    /// A 200 block page in the style of ISP block pages.
    pub fn blockpage(title: &str) -> Vec<u8> {
        response(
            200,
            "OK",
            &[("Content-Type", "text/html; charset=utf-8")],
            &page(title, "Access to this website has been blocked."),
        )
    }

    /// Starts the server on 127.0.0.1.
    pub async fn spawn(behaviour: Behaviour) -> HttpFake {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let b = behaviour.clone();
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    if matches!(b, Behaviour::ResetAfterRequest) {
                        let mut s = s;
                        if let Some(req) = read_head(&mut s).await {
                            log.lock().unwrap().push(req);
                        }
                        let _ = s.set_zero_linger();
                        return;
                    }
                    serve(s, b, log).await;
                });
            }
        });
        HttpFake { addr, requests }
    }

    /// Serves one connection (plain or TLS) with `behaviour`.
    pub async fn serve<S>(mut s: S, behaviour: Behaviour, log: Arc<Mutex<Vec<SeenRequest>>>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(req) = read_head(&mut s).await else {
            return;
        };
        log.lock().unwrap().push(req.clone());
        match behaviour {
            Behaviour::Respond(bytes) => {
                let _ = s.write_all(&bytes).await;
            }
            Behaviour::Handle(h) => {
                let _ = s.write_all(&h(&req)).await;
            }
            Behaviour::CloseAfterRequest | Behaviour::ResetAfterRequest => {}
            Behaviour::Endless { head } => {
                if s.write_all(&head).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 16 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
                return;
            }
            Behaviour::Dribble { bytes, interval } => {
                for b in bytes {
                    if s.write_all(&[b]).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            }
        }
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    }

    /// Reads up to the blank line ending a request head.
    async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<SeenRequest> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if buf.len() > 64 * 1024 || s.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = text.split("\r\n");
        let request_line = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(SeenRequest {
            request_line,
            headers,
        })
    }
}

/// The HTTP behaviours behind TLS.
pub mod tls {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::ca::TestCert;
    use super::http::{self, Behaviour, HttpFake};

    /// A rustls server config presenting `cert`, offering ALPN `http/1.1`.
    pub fn server_config(cert: &TestCert) -> Arc<rustls::ServerConfig> {
        config_with_versions(cert, rustls::DEFAULT_VERSIONS)
    }

    /// The same as [`server_config`] but TLS 1.2 only (an old server or
    /// middlebox).
    pub fn server_config_tls12(cert: &TestCert) -> Arc<rustls::ServerConfig> {
        config_with_versions(cert, &[&rustls::version::TLS12])
    }

    /// Starts a TLS server presenting `cert` that then behaves as
    /// [`http::spawn`] would. Handshake failures (the client refusing the
    /// certificate) just end that connection.
    pub async fn spawn(cert: &TestCert, behaviour: Behaviour) -> HttpFake {
        spawn_with_config(server_config(cert), behaviour).await
    }

    /// Like [`spawn`] with a server config of your own.
    pub async fn spawn_with_config(
        config: Arc<rustls::ServerConfig>,
        behaviour: Behaviour,
    ) -> HttpFake {
        let acceptor = TlsAcceptor::from(config);
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = l.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let b = behaviour.clone();
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        http::serve(tls, b, log).await;
                    }
                });
            }
        });
        HttpFake { addr, requests }
    }

    /// A server config presenting `cert` with these protocol versions,
    /// offering ALPN `http/1.1`.
    fn config_with_versions(
        cert: &TestCert,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(cert.chain.clone(), cert.key.clone_key())
            .expect("server cert");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// A scripted DNS server (UDP and TCP on the same loopback port).
pub mod dns {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UdpSocket};

    /// One reply the fake sends to a query.
    #[derive(Clone, Debug)]
    pub enum Reply {
        /// NOERROR with these addresses (those of the asked family), TTL 300.
        Answer(Vec<IpAddr>),
        /// NOERROR with these addresses and this TTL.
        AnswerTtl(Vec<IpAddr>, u32),
        /// A CNAME to the target, then the addresses under the target.
        Cname(String, Vec<IpAddr>),
        /// An error response with this rcode and no answers.
        Rcode(u16),
        /// An empty NOERROR response with the TC bit set.
        Truncated,
        /// Like `Answer` but with the wrong message id.
        WrongId(Vec<IpAddr>),
        /// These bytes as they are.
        Raw(Vec<u8>),
        /// NOERROR whose answers are addresses for another name (hostile:
        /// records nobody asked for).
        Unasked(String, Vec<IpAddr>),
        /// Another reply's bytes, edited (a hostile or broken server).
        Edited(Box<Reply>, fn(Vec<u8>) -> Vec<u8>),
    }

    /// What the fake does per query.
    #[derive(Clone, Debug, Default)]
    pub struct Script {
        /// Replies to each UDP query, each after its delay from the query's
        /// arrival, in order. Empty: stay silent.
        pub udp: Vec<(Duration, Reply)>,
        /// The reply to each TCP query; `None` closes the connection.
        pub tcp: Option<Reply>,
    }

    impl Script {
        /// The same immediate reply over UDP and TCP.
        pub fn always(reply: Reply) -> Script {
            Script {
                udp: vec![(Duration::ZERO, reply.clone())],
                tcp: Some(reply),
            }
        }
    }

    /// A running fake.
    pub struct DnsFake {
        /// The UDP and TCP address.
        pub addr: SocketAddr,
        /// UDP queries received.
        pub udp_queries: Arc<AtomicUsize>,
        /// TCP queries received.
        pub tcp_queries: Arc<AtomicUsize>,
    }

    /// Starts the fake on 127.0.0.1 (UDP and TCP, same port).
    pub async fn spawn(script: Script) -> DnsFake {
        spawn_dropping(script, 0).await
    }

    /// Like [`spawn`], but the first `drop_first` UDP queries are counted
    /// and ignored, as if lost on the way (a lossy link, deterministically).
    pub async fn spawn_dropping(script: Script, drop_first: usize) -> DnsFake {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let udp = Arc::new(udp);
        let (count, s) = (Arc::clone(&udp_queries), script.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if count.fetch_add(1, Ordering::SeqCst) < drop_first {
                    continue;
                }
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let (sock, replies) = (Arc::clone(&udp), s.udp.clone());
                tokio::spawn(async move {
                    for (delay, reply) in replies {
                        tokio::time::sleep(delay).await;
                        let _ = sock.send_to(&reply_bytes(&query, &reply), from).await;
                    }
                });
            }
        });
        let (count, s) = (Arc::clone(&tcp_queries), script);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = tcp.accept().await {
                let count = Arc::clone(&count);
                let reply = s.tcp.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if c.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let (Ok(query), Some(reply)) = (Message::from_vec(&q), reply) else {
                        return;
                    };
                    let bytes = reply_bytes(&query, &reply);
                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    let _ = c.write_all(&framed).await;
                });
            }
        });
        DnsFake {
            addr,
            udp_queries,
            tcp_queries,
        }
    }

    /// Encodes `reply` as the answer to `query` (same id and question).
    pub fn reply_bytes(query: &Message, reply: &Reply) -> Vec<u8> {
        let q = query.queries.first().cloned();
        let (name, qtype) = q
            .as_ref()
            .map(|q| (q.name().clone(), q.query_type()))
            .unwrap_or_else(|| (Name::root(), RecordType::A));
        let mut m = Message::response(query.metadata.id, OpCode::Query);
        m.metadata.message_type = MessageType::Response;
        m.metadata.recursion_desired = query.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        if let Some(q) = q {
            m.add_query(q);
        }
        let add_addrs = |m: &mut Message, owner: &Name, ips: &[IpAddr], ttl: u32| {
            for ip in ips {
                let data = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(rdata::A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(rdata::AAAA(*v6)),
                    _ => continue,
                };
                m.add_answer(Record::from_rdata(owner.clone(), ttl, data));
            }
        };
        match reply {
            Reply::Raw(bytes) => return bytes.clone(),
            Reply::Edited(inner, edit) => return edit(reply_bytes(query, inner)),
            Reply::Unasked(other, ips) => {
                let other = Name::from_ascii(other).expect("other name");
                add_addrs(&mut m, &other, ips, 300);
            }
            Reply::Answer(ips) => add_addrs(&mut m, &name, ips, 300),
            Reply::AnswerTtl(ips, ttl) => add_addrs(&mut m, &name, ips, *ttl),
            Reply::WrongId(ips) => {
                m.metadata.id = query.metadata.id.wrapping_add(1);
                add_addrs(&mut m, &name, ips, 300);
            }
            Reply::Cname(target, ips) => {
                let t = Name::from_ascii(target).expect("cname target");
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    300,
                    RData::CNAME(rdata::CNAME(t.clone())),
                ));
                add_addrs(&mut m, &t, ips, 300);
            }
            Reply::Rcode(rc) => m.metadata.response_code = <ResponseCode as From<u16>>::from(*rc),
            Reply::Truncated => m.metadata.truncation = true,
        }
        m.to_vec().expect("encode reply")
    }
}

/// A DNS-over-HTTPS server (RFC 8484 POST) answering from a script.
pub mod doh {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use hickory_proto::op::Message;
    use http_body_util::{BodyExt, Full};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::ca::TestCert;
    use super::dns::{reply_bytes, Reply};

    /// A running DoH fake.
    pub struct DohFake {
        /// Where it listens.
        pub addr: SocketAddr,
        /// The URL to query, with `host` as the authority
        /// (`https://host:port/dns-query`).
        pub url: String,
    }

    /// Starts the fake with `cert` (which should name `host`); POSTs of a
    /// DNS message to `/dns-query` get `reply`, anything else 404.
    pub async fn spawn(cert: &TestCert, host: &str, reply: Reply) -> DohFake {
        let acceptor = TlsAcceptor::from(super::tls::server_config(cert));
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().unwrap();
        let reply = Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let reply = Arc::clone(&reply);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: Request<_>| {
                        let reply = Arc::clone(&reply);
                        async move { Ok::<_, Infallible>(answer(req, &reply).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        DohFake {
            addr,
            url: format!("https://{host}:{}/dns-query", addr.port()),
        }
    }

    async fn answer(req: Request<hyper::body::Incoming>, reply: &Reply) -> Response<Full<Bytes>> {
        let ok = req.method() == hyper::Method::POST && req.uri().path() == "/dns-query";
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        match (ok, body.ok().and_then(|b| Message::from_vec(&b).ok())) {
            (true, Some(query)) => Response::builder()
                .header("content-type", "application/dns-message")
                .body(Full::new(Bytes::from(reply_bytes(&query, reply))))
                .unwrap(),
            _ => Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        }
    }
}
