//! HTTP/1.1 GET over a measured stream (plain or TLS), with hyper.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

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
    [
        ("User-Agent", USER_AGENT),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The User-Agent of [`default_headers`]: a current desktop browser, as
/// OONI sends, so servers and middleboxes treat us like a visitor.
pub const USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The longest title [`extract_title`] returns, in characters.
pub const MAX_TITLE_CHARS: usize = 512;

/// The `<title>` of an HTML body, at most 512 characters.
///
/// The tag name is matched case-insensitively, attributes are allowed, the
/// text is read as (lossy) UTF-8 with runs of whitespace collapsed to one
/// space. An empty title gives `None`.
pub fn extract_title(body: &[u8]) -> Option<String> {
    static TITLE: OnceLock<Regex> = OnceLock::new();
    let re = TITLE.get_or_init(|| {
        Regex::new(r"(?is)<title(?:\s[^>]*)?>(.*?)</title\s*>").expect("title regex")
    });
    let text = String::from_utf8_lossy(body);
    let caps = re.captures(&text)?;
    let words: Vec<&str> = caps.get(1)?.as_str().split_whitespace().collect();
    let title: String = words.join(" ").chars().take(MAX_TITLE_CHARS).collect();
    if title.is_empty() {
        None
    } else {
        Some(title)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(
            extract_title(b"<html><HEAD><Title lang=en>\n  Blocked \n by order </TITLE>"),
            Some("Blocked by order".to_string())
        );
        assert_eq!(extract_title(b"<title></title>"), None);
        assert_eq!(extract_title(b"<titles>x</titles>"), None);
        assert_eq!(extract_title(b"no title here"), None);
        let long = format!("<title>{}</title>", "a".repeat(2000));
        assert_eq!(
            extract_title(long.as_bytes()).unwrap().len(),
            MAX_TITLE_CHARS
        );
    }

    #[test]
    fn browser_like_headers() {
        let h = default_headers();
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["User-Agent", "Accept", "Accept-Language"]);
    }
}
