//! HTTP/1.1 GET over a measured stream (plain or TLS), with hyper.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use regex::Regex;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::failure::Failure;
use crate::metered::{self, MeteredStream};
use crate::records::{
    HttpRequestRecord, HttpResponseRecord, HttpTransaction, MaybeBinary, Trace, TransferStats,
};

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

impl HttpParams {
    /// A GET of `url` with the URL's host as Host, [`default_headers`],
    /// [`DEFAULT_BODY_CAP`] and a 10 s deadline.
    pub fn new(url: url::Url) -> HttpParams {
        HttpParams {
            url,
            host_header: None,
            headers: default_headers(),
            body_cap: DEFAULT_BODY_CAP,
            timeout: Duration::from_secs(10),
        }
    }
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
///
/// The Host header is `params.host_header`, independent of `address`. The
/// body is read up to `params.body_cap` bytes; a longer body is cut there
/// and `body_is_truncated` set. `params.timeout` bounds the whole round trip
/// including the body: when it expires the failure is
/// `generic_timeout_error` and whatever arrived is kept. Other failures:
/// `connection_reset`, `eof_error` (the peer closed before a complete
/// response), `http_request_failed` (an unparseable response). Reads and
/// writes are recorded as network events (at most
/// [`metered::DEFAULT_EVENT_CAP`](crate::metered::DEFAULT_EVENT_CAP)).
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
    let t0 = trace.clock.now();
    let deadline = tokio::time::Instant::now() + params.timeout;
    let request = request_record(params);
    let metered = MeteredStream::new(
        stream,
        trace.clone(),
        address.to_string(),
        metered::DEFAULT_EVENT_CAP,
    );
    let first_read = metered.first_read_handle();
    let mut progress = Progress::default();
    let mut driver = None;
    let result = tokio::time::timeout_at(
        deadline,
        round_trip(
            trace,
            metered,
            &request,
            params.body_cap,
            &mut progress,
            &mut driver,
        ),
    )
    .await;
    if let Some(task) = driver {
        task.abort();
    }
    let failure = match result {
        Err(_) => Some(Failure::GenericTimeout),
        Ok(Err(f)) => Some(f),
        Ok(Ok(())) => None,
    };
    let body = progress.body;
    let ttfb = first_read
        .get()
        .map(|t| (t - progress.t_request).max(0.0))
        .unwrap_or(0.0);
    let body_seconds = match (progress.t_first_body, progress.t_last_body) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let raw_len = body.len() as u64;
    let rate_bps = rate_lower_bound(raw_len, body_seconds);
    let response = match progress.head {
        Some((code, headers_list)) => {
            let (body, truncated) =
                decode_body(&headers_list, body, progress.truncated, params.body_cap);
            HttpResponseRecord {
                body: MaybeBinary::from_bytes(&body),
                body_is_truncated: truncated,
                code,
                headers: first_values(&headers_list),
                headers_list,
                x_body_length: body.len() as u64,
                x_body_sha256: hex::encode(Sha256::digest(&body)),
                x_title: extract_title(&body),
            }
        }
        None => HttpResponseRecord::default(),
    };
    HttpTransaction {
        network: "tcp".to_string(),
        address: address.to_string(),
        alpn: alpn.to_string(),
        failure,
        request,
        response,
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        x_transfer: TransferStats {
            ttfb,
            body_seconds,
            bytes: raw_len,
            rate_bps,
        },
    }
}

/// The body as the page is, as OONI stores it: a `gzip`, `x-gzip` or
/// `deflate` content encoding is undone, keeping at most `cap` decoded
/// bytes (more is truncation; this also bounds a compression bomb). A
/// compressed body cut at the cap, or one that stops decoding, keeps what
/// decoded and is marked truncated; the compressed bytes are never stored
/// (they would hide the page, and the probe's address in it, from
/// analysis and scrubbing). A body that is not compressed at all despite
/// the header is kept as received. Other encodings (`br`, `zstd`) are kept as
/// received. Returns the body and whether it is truncated.
pub fn decode_body(
    headers: &[(String, String)],
    body: Vec<u8>,
    truncated: bool,
    cap: usize,
) -> (Vec<u8>, bool) {
    use std::io::Read;
    let encoding = headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    let Some(encoding) = encoding else {
        return (body, truncated);
    };
    if body.is_empty() {
        return (body, truncated);
    }
    let read_all = |mut r: Box<dyn Read + '_>| -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, false),
                Ok(n) => {
                    let room = cap.saturating_sub(out.len());
                    if n > room {
                        out.extend_from_slice(&buf[..room]);
                        return (out, true);
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                Err(_) => return (out, true),
            }
        }
    };
    let (out, cut) = match encoding.as_str() {
        "gzip" | "x-gzip" => read_all(Box::new(flate2::read::MultiGzDecoder::new(&body[..]))),
        "deflate" => {
            // Usually zlib-wrapped; some servers send raw deflate.
            let (out, cut) = read_all(Box::new(flate2::read::ZlibDecoder::new(&body[..])));
            if out.is_empty() && cut {
                read_all(Box::new(flate2::read::DeflateDecoder::new(&body[..])))
            } else {
                (out, cut)
            }
        }
        _ => return (body, truncated),
    };
    if out.is_empty() && cut {
        // Nothing decoded. Text that does not start like the encoding is
        // not compressed at all despite the header: keep what came. Else
        // it is compressed data too short or too broken to decode, which
        // is not kept (nothing in it could be read, or scrubbed).
        let gzip_magic = body.starts_with(&[0x1f, 0x8b]);
        let zlib_header = body.len() >= 2
            && body[0] & 0x0f == 8
            && (u16::from(body[0]) * 256 + u16::from(body[1])) % 31 == 0;
        if !gzip_magic && !zlib_header && std::str::from_utf8(&body).is_ok() {
            return (body, truncated);
        }
    }
    (out, truncated || cut)
}

/// The shortest body transfer (seconds) a rate is computed over: a body that
/// arrives faster than this (often in one read, `body_seconds` 0) is rated
/// as if it took this long, so its `rate_bps` is a lower bound.
pub const MIN_RATE_WINDOW_S: f64 = 0.01;

/// `bytes / max(body_seconds, MIN_RATE_WINDOW_S)`, or 0 without a body.
///
/// Exact when the body took at least [`MIN_RATE_WINDOW_S`]; below that the
/// clock cannot tell the rate and the result is a lower bound (never above
/// the true rate).
pub fn rate_lower_bound(bytes: u64, body_seconds: f64) -> f64 {
    if bytes == 0 {
        return 0.0;
    }
    bytes as f64 / body_seconds.max(MIN_RATE_WINDOW_S)
}

/// What a round trip got before it ended (kept when the deadline cuts it).
#[derive(Default)]
struct Progress {
    t_request: f64,
    head: Option<(i64, Vec<(String, String)>)>,
    body: Vec<u8>,
    truncated: bool,
    t_first_body: Option<f64>,
    t_last_body: Option<f64>,
}

async fn round_trip<S>(
    trace: &Trace,
    stream: MeteredStream<S>,
    request: &HttpRequestRecord,
    body_cap: usize,
    progress: &mut Progress,
    driver: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::from_hyper(&e))?;
    *driver = Some(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let uri = origin_form(&request.url);
    let mut builder = hyper::Request::get(uri);
    for (k, v) in &request.headers_list {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let req = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Unknown(format!("bad request: {e}")))?;
    progress.t_request = trace.clock.now();
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::from_hyper(&e))?;
    let headers_list: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    progress.head = Some((i64::from(response.status().as_u16()), headers_list));
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::from_hyper(&e))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        let now = trace.clock.now();
        progress.t_first_body.get_or_insert(now);
        progress.t_last_body = Some(now);
        let room = body_cap.saturating_sub(progress.body.len());
        if data.len() > room {
            progress.body.extend_from_slice(&data[..room]);
            progress.truncated = true;
            break;
        }
        progress.body.extend_from_slice(&data);
    }
    Ok(())
}

/// The request as it will be sent: Host first, then the other headers.
fn request_record(params: &HttpParams) -> HttpRequestRecord {
    let host = params.host_header.clone().unwrap_or_else(|| {
        let host = params.url.host_str().unwrap_or_default();
        match params.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    });
    let mut headers_list = vec![("Host".to_string(), host)];
    headers_list.extend(
        params
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .cloned(),
    );
    HttpRequestRecord {
        body: MaybeBinary::default(),
        body_is_truncated: false,
        headers: first_values(&headers_list),
        headers_list,
        method: "GET".to_string(),
        url: params.url.to_string(),
    }
}

/// `/path?query` of a URL (the fragment is never sent).
fn origin_form(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        },
        Err(_) => "/".to_string(),
    }
}

fn first_values(list: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (k, v) in list {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn encoded_bodies_are_decoded_and_capped() {
        let page = b"<title>t</title>Your address is 203.0.113.99".repeat(50);
        let h = |v: &str| vec![("content-encoding".to_string(), v.to_string())];
        let (b, t) = decode_body(&h("gzip"), gz(&page), false, 1 << 20);
        assert_eq!((b.as_slice(), t), (page.as_slice(), false));
        // Cut at the cap: what decoded, marked truncated.
        let (b, t) = decode_body(&h("gzip"), gz(&page), false, 100);
        assert_eq!((b.as_slice(), t), (&page[..100], true));
        // The compressed bytes were cut: the decodable start, truncated.
        let z = gz(&page);
        let (b, t) = decode_body(&h("x-gzip"), z[..z.len() * 3 / 4].to_vec(), true, 1 << 20);
        assert!(
            t && !b.is_empty() && page.starts_with(&b),
            "{} {t} {:?}",
            b.len(),
            String::from_utf8_lossy(&b)
        );
        // deflate (zlib-wrapped and raw).
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, &page).unwrap();
        let (b, _) = decode_body(&h("deflate"), e.finish().unwrap(), false, 1 << 20);
        assert_eq!(b, page);
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, &page).unwrap();
        let (b, _) = decode_body(&h("deflate"), e.finish().unwrap(), false, 1 << 20);
        assert_eq!(b, page);
        // A false header, an unknown encoding, no header: kept as received.
        assert_eq!(
            decode_body(&h("gzip"), page.clone(), false, 1 << 20).0,
            page
        );
        assert_eq!(decode_body(&h("br"), b"xyz".to_vec(), false, 10).0, b"xyz");
        // Compressed but too short to decode anything: not kept.
        assert_eq!(
            decode_body(&h("gzip"), z[..12].to_vec(), true, 10),
            (Vec::new(), true)
        );
        assert_eq!(
            decode_body(&[], b"xyz".to_vec(), true, 10),
            (b"xyz".to_vec(), true)
        );
    }

    #[test]
    fn rate_is_a_lower_bound_below_the_window() {
        assert_eq!(rate_lower_bound(0, 0.0), 0.0);
        assert_eq!(rate_lower_bound(0, 2.0), 0.0);
        assert_eq!(rate_lower_bound(1000, 0.0), 100_000.0);
        assert_eq!(rate_lower_bound(1000, 0.004), 100_000.0);
        assert_eq!(rate_lower_bound(1000, 0.5), 2000.0);
    }

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
