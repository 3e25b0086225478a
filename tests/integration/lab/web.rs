//! The lab's web servers: the genuine sites (internet namespace, HTTP on
//! :80 and HTTPS on :443 of each site's own address) and the censor's boxes
//! (censor namespace: blockpage server, EOF box, TLS-interception box).
//! A deliberately small HTTP/1.1 server: read the request head, answer with
//! `Connection: close`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::netns::{Ns, Service};
use super::scenarios::Site;
use super::topology::addr;

/// The title of the censor's blockpage.
pub const BLOCKPAGE_TITLE: &str = "Access to this website has been blocked";

/// One genuine site.
#[derive(Clone, Debug)]
pub struct SiteSpec {
    /// Its host name.
    pub host: String,
    /// Its own address.
    pub ip: Ipv4Addr,
    /// How it behaves.
    pub site: Site,
    /// A second address it also serves on (another node of the site).
    pub also: Option<Ipv4Addr>,
    /// Its IPv6 address, in a dual-stack lab.
    pub ip6: Option<Ipv6Addr>,
}

/// Starts every site (except [`Site::Down`] and [`Site::NoSuchName`], which
/// have no server) on one in-namespace runtime.
pub fn sites(ns: &Ns, list: Vec<SiteSpec>, tls: Arc<ServerConfig>) -> io::Result<Service> {
    ns.serve(
        move || {
            let mut bound = Vec::new();
            for s in list
                .into_iter()
                .filter(|s| !matches!(s.site, Site::Down | Site::NoSuchName))
            {
                let s = Arc::new(s);
                let v4 = std::iter::once(s.ip).chain(s.also).map(IpAddr::V4);
                for ip in v4.chain(s.ip6.map(IpAddr::V6)) {
                    let plain = listen((ip, 80).into())?;
                    let secure = listen((ip, 443).into())?;
                    bound.push((Arc::clone(&s), plain, secure));
                }
            }
            Ok(bound)
        },
        move |bound, stop| async move {
            let acceptor = TlsAcceptor::from(tls);
            let counter = Arc::new(AtomicU64::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for (site, plain, secure) in bound {
                let (s, c) = (site.clone(), counter.clone());
                tasks.spawn(accept_loop(plain, stop.clone(), move |conn, peer| {
                    let (s, c) = (s.clone(), c.clone());
                    async move { answer(conn, &s, false, peer, &c).await }
                }));
                let (s, c, a) = (site, counter.clone(), acceptor.clone());
                tasks.spawn(accept_loop(secure, stop.clone(), move |conn, peer| {
                    let (s, c, a) = (s.clone(), c.clone(), a.clone());
                    async move {
                        if let Ok(tls) = a.accept(conn).await {
                            answer(tls, &s, true, peer, &c).await;
                        }
                    }
                }));
            }
            stop.cancelled().await;
        },
    )
}

/// Starts the censor's boxes: the blockpage server (on the sinkhole address
/// :80 and on [`addr::BLOCKPAGE_PORT`] for redirected traffic), the EOF box
/// ([`addr::EOF_PORT`]) and the TLS-interception box ([`addr::MITM_PORT`],
/// certificate from the untrusted censor CA).
pub fn censor_boxes(
    ns: &Ns,
    mitm: Arc<ServerConfig>,
    divert_to: Option<Ipv4Addr>,
) -> io::Result<Service> {
    ns.serve(
        move || {
            let proxy = match divert_to {
                Some(site) => vec![
                    (listen((addr::PROXY, 80).into())?, (site, 80)),
                    (listen((addr::PROXY, 443).into())?, (site, 443)),
                ],
                None => Vec::new(),
            };
            Ok((
                proxy,
                [
                    listen((addr::SINKHOLE, 80).into())?,
                    listen((Ipv4Addr::UNSPECIFIED, addr::BLOCKPAGE_PORT).into())?,
                    listen((Ipv4Addr::UNSPECIFIED, addr::EOF_PORT).into())?,
                    listen((Ipv4Addr::UNSPECIFIED, addr::MITM_PORT).into())?,
                    listen((Ipv4Addr::UNSPECIFIED, addr::LOOKALIKE_PORT).into())?,
                    listen((Ipv4Addr::UNSPECIFIED, addr::NOTICE_PORT).into())?,
                ],
            ))
        },
        move |(proxy, [sinkhole, redirected, eof, mitm_l, lookalike, notice]), stop| async move {
            let mut tasks = tokio::task::JoinSet::new();
            tasks.spawn(accept_loop(
                notice,
                stop.clone(),
                |mut conn, _| async move {
                    if read_head(&mut conn).await.is_some() {
                        let _ = conn.write_all(&notice_page()).await;
                        let _ = conn.shutdown().await;
                    }
                },
            ));
            // The transparent proxy: each connection spliced to the site.
            for (l, to) in proxy {
                tasks.spawn(accept_loop(
                    l,
                    stop.clone(),
                    move |mut conn, _| async move {
                        let to = SocketAddr::from(to);
                        if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                        }
                    },
                ));
            }
            tasks.spawn(accept_loop(
                lookalike,
                stop.clone(),
                |mut conn, _| async move {
                    if read_head(&mut conn).await.is_some() {
                        let _ = conn.write_all(&lookalike_blockpage()).await;
                        let _ = conn.shutdown().await;
                    }
                },
            ));
            for l in [sinkhole, redirected] {
                tasks.spawn(accept_loop(l, stop.clone(), |mut conn, _| async move {
                    if read_head(&mut conn).await.is_some() {
                        let _ = conn.write_all(&blockpage()).await;
                        let _ = conn.shutdown().await;
                    }
                }));
            }
            tasks.spawn(accept_loop(eof, stop.clone(), |mut conn, _| async move {
                // Read the request, then close without a byte of answer.
                let _ = read_head(&mut conn).await;
                let _ = conn.shutdown().await;
            }));
            let acceptor = TlsAcceptor::from(mitm);
            tasks.spawn(accept_loop(mitm_l, stop.clone(), move |conn, _| {
                let a = acceptor.clone();
                async move {
                    if let Ok(mut tls) = a.accept(conn).await {
                        if read_head(&mut tls).await.is_some() {
                            let _ = tls.write_all(&blockpage()).await;
                            let _ = tls.shutdown().await;
                        }
                    }
                }
            }));
            stop.cancelled().await;
        },
    )
}

/// A captive portal's web server in `ns`: every request on `port` gets
/// `page` (a login form), whatever its Host.
pub fn portal_box(ns: &Ns, port: u16, page: &'static str) -> io::Result<Service> {
    ns.serve(
        move || listen((Ipv4Addr::UNSPECIFIED, port).into()),
        move |l, stop| async move {
            accept_loop(l, stop.clone(), move |mut conn, _| async move {
                if read_head(&mut conn).await.is_some() {
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                }
            })
            .await;
        },
    )
}

fn listen(at: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(at)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

async fn accept_loop<F, Fut>(l: TcpListener, stop: CancellationToken, handle: F)
where
    F: Fn(tokio::net::TcpStream, IpAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = l.accept() => if let Ok((conn, peer)) = r {
                tokio::spawn(handle(conn, peer.ip()));
            }
        }
    }
}

/// Reads up to the end of the request head; returns the head.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The `Host` header of a request head (lower case, without a port).
fn host_of(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("host")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .map(|h| h.split(':').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    site: &SiteSpec,
    tls: bool,
    peer: IpAddr,
    counter: &AtomicU64,
) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let out = match site.site {
        Site::RedirectToNext => {
            let next = super::scenarios::next_host(&site.host);
            if host_of(&head) == next {
                page_response(site, page(&next, "", 0))
            } else {
                response(
                    "301 Moved Permanently",
                    &[("Location", format!("http://{next}/"))],
                    b"",
                )
            }
        }
        Site::Small => page_response(site, small_page(&site.host)),
        Site::Dynamic40 => page_response(site, dynamic40_page(&site.host, n)),
        Site::RedirectToHttps if !tls => response(
            "301 Moved Permanently",
            &[("Location", format!("https://{}/", site.host))],
            b"",
        ),
        Site::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            page_response(site, page(&site.host, "", 0))
        }
        Site::Big(size) => page_response(site, page(&site.host, "", size)),
        Site::Dynamic => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let extra = format!(
                "<p class=\"ticker\">Updated {nanos}; request {n}; edition id {:016x}.</p>\n{}",
                rand::random::<u64>(),
                "<p>Most read today: a story.</p>\n".repeat(usize::try_from(n % 4).unwrap_or(0))
            );
            page_response(site, page(&site.host, &extra, 0))
        }
        Site::ClientDependent => {
            let edition = match peer {
                IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] => {
                    "<p>International edition: world news first, then the region.</p>"
                }
                _ => "<p>Local edition: news from the capital and the provinces first, then the world, then sport.</p>",
            };
            page_response(site, page(&site.host, edition, 0))
        }
        _ => page_response(site, page(&site.host, "", 0)),
    };
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}

fn page_response(site: &SiteSpec, body: String) -> Vec<u8> {
    response(
        "200 OK",
        &[
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("X-Lab-Site", site.host.clone()),
        ],
        body.as_bytes(),
    )
}

/// A site's page: a title, some paragraphs, `extra`, padded to `min_len`.
fn page(host: &str, extra: &str, min_len: usize) -> String {
    let mut body = format!(
        "<!DOCTYPE html>\n<html><head><title>{host} - independent news</title></head>\n<body>\n<h1>{host}</h1>\n{extra}\n"
    );
    let para =
        "<p>Reporting from Phnom Penh: the national assembly met today to debate the budget; \
                farmers in the provinces describe the season; a court hears an appeal.</p>\n";
    for _ in 0..24 {
        body.push_str(para);
    }
    while body.len() < min_len {
        body.push_str(para);
    }
    body.push_str("</body></html>\n");
    body
}

/// A small site's front page (about 680 bytes).
fn small_page(host: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{host} - community radio</title></head>\n<body>\n\
         <h1>{host}</h1>\n<p>Listen live every evening from seven: local music, farming advice, \
         and a call-in hour where listeners from the provinces ask the guests their questions.</p>\n\
         <p>This week: the rice harvest, school fees, and a conversation about the new market in \
         the district town. Schedule and archive below.</p>\n<ul><li>Monday: music</li>\
         <li>Tuesday: farming</li><li>Wednesday: call-in</li></ul>\n</body></html>\n"
    )
}

/// A 300-word page where a block of 40 % of the words is new on every
/// request (headlines, ids and adverts that rotate).
fn dynamic40_page(host: &str, n: u64) -> String {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut words: Vec<String> = (0..300)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            format!("story{}", s % 50_000)
        })
        .collect();
    let start = usize::try_from(n * 37 % 180).unwrap_or(0);
    for (i, w) in words[start..start + 120].iter_mut().enumerate() {
        *w = format!("r{n}w{i}x{:x}", rand::random::<u16>());
    }
    format!(
        "<!DOCTYPE html>\n<html><head><title>{host} - live</title></head>\n<body>\n<p>{}</p>\n</body></html>\n",
        words.join(" ")
    )
}

/// The look-alike blockpage: a short 200 page (about 490 bytes) from the
/// sites' own server software.
fn lookalike_blockpage() -> Vec<u8> {
    let body = "<!DOCTYPE html>\n<html><head><title>Access Denied - Website Blocked</title></head>\n\
        <body>\n<h1>Access Denied</h1>\n<p>The website you are trying to visit has been blocked \
        in accordance with the regulations of the Kingdom. If you believe this is a mistake, contact \
        your internet service provider's customer care centre and quote the reference below.</p>\n\
        <p>Reference: KH-7731</p>\n</body></html>\n";
    response(
        "200 OK",
        &[("Content-Type", "text/html; charset=utf-8".into())],
        body.as_bytes(),
    )
}

/// A notice with no blocking words: the same page for every site.
fn notice_page() -> Vec<u8> {
    let body = "<html><head><title>Notice</title></head><body><p>The page you requested is \
        unavailable on this network at the moment. Reference 5521.</p></body></html>\n";
    response(
        "200 OK",
        &[("Content-Type", "text/html".into())],
        body.as_bytes(),
    )
}

fn blockpage() -> Vec<u8> {
    let body = format!(
        "<html><head><title>{BLOCKPAGE_TITLE}</title></head><body><h1>{BLOCKPAGE_TITLE}</h1>\
         <p>By order of the authorities.</p></body></html>\n"
    );
    response(
        "200 OK",
        &[("Content-Type", "text/html".into())],
        body.as_bytes(),
    )
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nServer: labd/1.0\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
