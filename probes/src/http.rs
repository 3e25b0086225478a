//! HTTP/1.1 GET over a measured stream (plain or TLS), with hyper.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::records::{HttpTransaction, Trace};

/// The default body cap: 512 KiB, as OONI's LTE.
pub const DEFAULT_BODY_CAP: usize = 512 * 1024;

/// How to run one GET.
#[derive(Clone, Debug)]
pub struct HttpParams {
    /// The URL; its path and query are sent.
    pub url: url::Url,
    /// The Host header; `None` uses the URL's host (and port, if explicit).
    pub host_header: Option<String>,
    /// Request headers besides Host (browser-like by default).
    pub headers: Vec<(String, String)>,
    /// Stop reading the body after this many bytes.
    pub body_cap: usize,
    /// Deadline for the whole round trip, body included.
    pub timeout: Duration,
}

/// Browser-like request headers (User-Agent, Accept, Accept-Language).
pub fn default_headers() -> Vec<(String, String)> {
    todo!("probes: headers")
}

/// The `<title>` of an HTML body, at most 512 characters.
pub fn extract_title(body: &[u8]) -> Option<String> {
    let _ = body;
    todo!("probes: title")
}

/// Sends one GET over `stream` (connected to `address`, with ALPN `alpn` or
/// empty) and records the round trip. Redirects are not followed.
pub async fn get<S>(
    trace: &Trace,
    stream: S,
    address: SocketAddr,
    alpn: &str,
    params: &HttpParams,
) -> HttpTransaction
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (trace, stream, address, alpn, params);
    todo!("probes: http get")
}
