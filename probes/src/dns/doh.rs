//! DNS-over-HTTPS (RFC 8484, POST of the wire message).
//!
//! The connection is our own measured chain — [`crate::tcp::connect`],
//! [`crate::tls::handshake`] (SNI and verification against the URL's
//! host, certificate errors abort) — then one HTTP/1.1 POST with hyper.
//! The connect and TLS network events land on the trace like any other.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::{self, WireQuery};
use super::{start_query, DnsOptions, QueryType};
use crate::failure::Failure;
use crate::records::{DnsQuery, Trace};
use crate::tcp::{self, TcpOptions};
use crate::tls::{self, TlsParams, TrustRoots};

/// The largest DoH response body we accept.
const MAX_DOH_BODY: usize = 65535;

/// Where a DoH server is and how to reach it.
#[derive(Clone, Debug)]
pub struct DohServer {
    /// The DoH URL, e.g. `https://dns.example/dns-query`.
    pub url: String,
    /// The address to connect to (the URL's host is used for SNI and Host).
    /// `None`: resolve the URL's host with the system resolver.
    pub addr: Option<SocketAddr>,
}

/// Queries `host`/`qtype` over DoH (engine `doh`, `resolver_address` the
/// URL).
///
/// The query uses id 0 (RFC 8484 §4.1). Failures: those of TCP connect and
/// the TLS handshake (e.g. `connection_refused`, `ssl_unknown_authority`),
/// `generic_timeout_error` when `opts.timeout` (bounding the whole
/// exchange) expires, `unknown_failure: doh: HTTP status N` for a non-200
/// answer, and the rcode mapping of the DNS reply.
pub async fn query(
    trace: &Trace,
    server: &DohServer,
    host: &str,
    qtype: QueryType,
    roots: &TrustRoots,
    opts: &DnsOptions,
) -> DnsQuery {
    let (mut q, wq) = start_query(trace, "doh", server.url.clone(), host, qtype, Some(0));
    let Some(wq) = wq else {
        return q;
    };
    let roots = Arc::new(TrustRoots {
        store: Arc::clone(&roots.store),
    });
    match tokio::time::timeout(opts.timeout, exchange(trace, server, &wq, roots, opts)).await {
        Err(_) => q.failure = Some(Failure::GenericTimeout),
        Ok(Err(f)) => q.failure = Some(f),
        Ok(Ok(bytes)) => wire::record_single_reply(&mut q, wire::read_reply(&bytes, &wq)),
    }
    q.t = trace.clock.now();
    q
}

/// Connect, handshake, POST; the DNS reply's bytes.
async fn exchange(
    trace: &Trace,
    server: &DohServer,
    wq: &WireQuery,
    roots: Arc<TrustRoots>,
    opts: &DnsOptions,
) -> Result<Vec<u8>, Failure> {
    let url = url::Url::parse(&server.url)
        .map_err(|e| Failure::Unknown(format!("bad DoH URL {:?}: {e}", server.url)))?;
    let host = url
        .host_str()
        .ok_or_else(|| Failure::Unknown(format!("DoH URL without host: {}", server.url)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addr = match server.addr {
        Some(a) => a,
        None => {
            let sys = super::system::lookup(trace, &host, opts.timeout).await;
            if let Some(f) = sys.failure {
                return Err(f);
            }
            let ip = sys.addrs().into_iter().next().ok_or(Failure::DnsNoAnswer)?;
            SocketAddr::new(ip, port)
        }
    };
    let tcp_opts = TcpOptions {
        timeout: opts.timeout,
        ttl: None,
    };
    let (connect, stream) = tcp::connect(trace, addr, &tcp_opts).await;
    let stream = match stream {
        Some(s) => s,
        None => return Err(connect.status.failure.unwrap_or(Failure::GenericTimeout)),
    };
    let params = TlsParams {
        timeout: opts.timeout,
        ..TlsParams::for_host(&host, roots)
    };
    let (hs, tls) = tls::handshake(trace, stream, addr, &params).await;
    let tls = match tls {
        Some(t) => t,
        None => return Err(hs.failure.unwrap_or(Failure::SslFailedHandshake)),
    };
    let host_header = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
        None => url.host_str().unwrap_or(&host).to_string(),
    };
    let path = match url.query() {
        Some(qs) => format!("{}?{qs}", url.path()),
        None => url.path().to_string(),
    };
    post(tls, &host_header, &path, wq.bytes.clone()).await
}

/// One POST of `body` as `application/dns-message`; the response body.
async fn post<S>(stream: S, host: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::from_hyper(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/dns-message")
            .header(hyper::header::ACCEPT, "application/dns-message")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Unknown(format!("bad DoH request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::from_hyper(&e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Failure::Unknown(format!("doh: HTTP status {status}")));
        }
        let bytes = Limited::new(resp.into_body(), MAX_DOH_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast_ref::<hyper::Error>() {
                Some(h) => Failure::from_hyper(h),
                None => Failure::Unknown(format!("doh: {e}")),
            })?
            .to_bytes();
        Ok(bytes.to_vec())
    }
    .await;
    driver.abort();
    result
}
