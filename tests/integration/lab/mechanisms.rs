//! Assertions about the lab itself, without gatewatch's policy: from the
//! probe's namespace each mechanism really does what its row says (with
//! plain sockets, hickory-proto messages, rustls, and `probes::tcp`), and
//! from the control's namespace the same sites are untouched.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gatewatch::trace::trigger::a_records;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::dns::INJECTED;
use super::netns::Ns;
use super::scenarios::SCENARIOS;
use super::topology::{addr, CENSOR_DOWN_IF};
use super::web::BLOCKPAGE_TITLE;
use super::world::World;

#[test]
fn every_mechanism_does_what_its_row_says() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    let ca = world.ca_der.clone();
    let ip = |name: &str| world.find(name).1;

    let mut results = run_checks(&world.topo.probe, from_probe(&ip), ca.clone());
    results.extend(run_checks(&world.topo.control, from_control(&ip), ca));

    // The throttled page crossed the shaper: its class counted the bytes.
    let stats = world
        .topo
        .censor
        .exec("tc", &["-s", "class", "show", "dev", CENSOR_DOWN_IF])
        .unwrap();
    let shaped = shaped_bytes(&stats);
    results.push((
        "tc: throttled bytes went through the shaper",
        if shaped >= 160 * 1024 {
            Ok(())
        } else {
            Err(format!("shaped {shaped} bytes:\n{stats}"))
        },
    ));

    for (name, r) in &results {
        let verdict = match r {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("FAILED: {e}"),
        };
        println!("{name:<45} {verdict}");
    }
    let failed: Vec<_> = results.iter().filter(|r| r.1.is_err()).collect();
    if !failed.is_empty() {
        panic!(
            "{} of {} lab checks failed (table above)",
            failed.len(),
            results.len()
        );
    }
}

/// What the probe must see.
#[rustfmt::skip]
fn from_probe(ip: &dyn Fn(&str) -> Ipv4Addr) -> Vec<(&'static str, Check)> {
    use Check::{Dns as D, Http, Https, Tcp};
    let (isp, public) = (addr::ISP_RESOLVER, addr::PUBLIC_RESOLVER);
    vec![
        ("isp dns: clean", D(isp, "clean", 64, Dns::Answers(vec![ip("clean")]))),
        ("isp dns: nxdomain", D(isp, "dns-nxdomain", 64, Dns::Nxdomain)),
        ("isp dns: localhost", D(isp, "dns-localhost", 64, Dns::Answers(vec![Ipv4Addr::LOCALHOST]))),
        ("isp dns: bogon", D(isp, "dns-bogon", 64, Dns::Answers(vec![Ipv4Addr::new(10, 10, 10, 1)]))),
        ("isp dns: blockpage ip", D(isp, "dns-blockpage-ip", 64, Dns::Answers(vec![addr::SINKHOLE]))),
        ("isp dns: silent", D(isp, "dns-silent", 64, Dns::Silence)),
        ("isp dns: nxdomain everywhere", D(isp, "nxdomain-everywhere", 64, Dns::Nxdomain)),
        ("isp dns: injected name, no injection", D(isp, "dns-injected", 64, Dns::Answers(vec![ip("dns-injected")]))),
        ("public dns: injected, then genuine", D(public, "dns-injected", 64, Dns::Answers(vec![INJECTED, ip("dns-injected")]))),
        ("public dns: clean, one reply", D(public, "clean", 64, Dns::Answers(vec![ip("clean")]))),
        ("no resolver: injected name answered", D(addr::CONTROL, "dns-injected", 64, Dns::Answers(vec![INJECTED]))),
        ("no resolver: clean name, silence", D(addr::CONTROL, "clean", 64, Dns::Silence)),
        ("ttl 2: injector at the censor's hop", D(public, "dns-injected", 2, Dns::Answers(vec![INJECTED]))),
        ("ttl 1: nothing at r1", D(public, "dns-injected", 1, Dns::Silence)),
        ("tcp: syn drop", Tcp(ip("tcp-syn-drop"), 64, Some("generic_timeout_error"))),
        ("tcp: rst to syn", Tcp(ip("tcp-syn-rst"), 64, Some("connection_refused"))),
        ("tcp: icmp unreachable", Tcp(ip("tcp-icmp-unreach"), 64, Some("host_unreachable"))),
        ("tcp: down everywhere", Tcp(ip("down-everywhere"), 64, Some("connection_refused"))),
        ("tcp: clean", Tcp(ip("clean"), 64, None)),
        ("tcp ttl 2: rst from the censor's hop", Tcp(ip("tcp-syn-rst"), 2, Some("connection_refused"))),
        // r1's ICMP time-exceeded reaches connect() as EHOSTUNREACH.
        ("tcp ttl 1: time exceeded at r1", Tcp(ip("tcp-syn-rst"), 1, Some("host_unreachable"))),
        ("tls: clean", Https(ip("clean"), "clean", Web::Page)),
        ("tls: rst on sni", Https(ip("tls-sni-rst"), "tls-sni-rst", Web::Reset)),
        ("tls: drop on sni", Https(ip("tls-sni-drop"), "tls-sni-drop", Web::Timeout)),
        ("tls: interception", Https(ip("tls-mitm"), "tls-mitm", Web::UnknownIssuer)),
        ("tls: sni rst is keyed on the name", Https(ip("clean"), "tls-sni-rst", Web::Reset)),
        ("http: rst on host", Http(ip("http-host-rst"), "http-host-rst", Web::Reset)),
        ("http: blockpage", Http(ip("http-blockpage"), "http-blockpage", Web::Blockpage)),
        ("http: sinkhole serves the blockpage", Http(addr::SINKHOLE, "dns-blockpage-ip", Web::Blockpage)),
        ("http: eof after request", Http(ip("http-eof"), "http-eof", Web::Eof)),
        ("http: redirect to https", Http(ip("http-to-https"), "http-to-https", Web::Redirect)),
        ("https: throttled page arrives", Https(ip("throttled"), "throttled", Web::Page)),
    ]
}

/// What the control must see: the same sites, untouched.
#[rustfmt::skip]
fn from_control(ip: &dyn Fn(&str) -> Ipv4Addr) -> Vec<(&'static str, Check)> {
    use Check::{Dns as D, Http, Https, Tcp};
    vec![
        ("control: dns", D(addr::PUBLIC_RESOLVER, "dns-nxdomain", 64, Dns::Answers(vec![ip("dns-nxdomain")]))),
        ("control: tls sni rst site", Https(ip("tls-sni-rst"), "tls-sni-rst", Web::Page)),
        ("control: tls mitm site", Https(ip("tls-mitm"), "tls-mitm", Web::Page)),
        ("control: syn drop site", Tcp(ip("tcp-syn-drop"), 64, None)),
        ("control: blockpage site", Http(ip("http-blockpage"), "http-blockpage", Web::Page)),
        ("control: host rst site", Http(ip("http-host-rst"), "http-host-rst", Web::Page)),
    ]
}

/// What to check.
#[derive(Clone, Debug)]
enum Check {
    /// A query to an address for `<name>.example`, sent with this IP TTL.
    Dns(Ipv4Addr, &'static str, u32, Dns),
    /// A TCP connect to :443 with this IP TTL (`None`: must succeed; else
    /// the failure).
    Tcp(Ipv4Addr, u32, Option<&'static str>),
    /// GET / over TLS to the address with the SNI `<name>.example`.
    Https(Ipv4Addr, &'static str, Web),
    /// GET / over plain HTTP with Host `<name>.example`.
    Http(Ipv4Addr, &'static str, Web),
}

#[derive(Clone, Debug)]
enum Dns {
    /// Replies in this order, one A record each.
    Answers(Vec<Ipv4Addr>),
    Nxdomain,
    Silence,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Web {
    /// 200 with the site's own title.
    Page,
    Blockpage,
    Redirect,
    Reset,
    Timeout,
    Eof,
    UnknownIssuer,
    /// Any other error (printed to stderr).
    Other,
}

fn run_checks(
    ns: &Ns,
    checks: Vec<(&'static str, Check)>,
    ca: CertificateDer<'static>,
) -> Vec<(&'static str, Result<(), String>)> {
    ns.thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut set = JoinSet::new();
            for (i, (name, check)) in checks.into_iter().enumerate() {
                let ca = ca.clone();
                set.spawn(async move { (i, name, run_check(check, ca).await) });
            }
            let mut out = set.join_all().await;
            out.sort_by_key(|r| r.0);
            out.into_iter().map(|(_, n, r)| (n, r)).collect()
        })
    })
    .unwrap()
    .join()
    .unwrap()
}

async fn run_check(check: Check, ca: CertificateDer<'static>) -> Result<(), String> {
    match check {
        Check::Dns(server, name, ttl, want) => {
            let replies = ask(server, &format!("{name}.example"), ttl).await?;
            let ok = match &want {
                Dns::Silence => replies.is_empty(),
                Dns::Nxdomain => replies.len() == 1 && replies[0].0 == ResponseCode::NXDomain,
                Dns::Answers(ips) => {
                    replies.len() == ips.len()
                        && replies.iter().zip(ips).all(|(r, ip)| r.1 == vec![*ip])
                }
            };
            if ok {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {replies:?}"))
            }
        }
        Check::Tcp(ip, ttl, want) => {
            let trace = probes::Trace::new();
            let opts = probes::tcp::TcpOptions {
                timeout: Duration::from_millis(1500),
                ttl: Some(ttl),
            };
            let (rec, _) = probes::tcp::connect(&trace, SocketAddr::from((ip, 443)), &opts).await;
            let got = rec.status.failure.map(|f| f.to_string());
            if got.as_deref() == want {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {got:?}"))
            }
        }
        Check::Https(ip, name, want) => expect_web(fetch(ip, name, Some(ca)).await, want, name),
        Check::Http(ip, name, want) => expect_web(fetch(ip, name, None).await, want, name),
    }
}

fn expect_web(got: Result<String, Web>, want: Web, name: &str) -> Result<(), String> {
    let seen = match &got {
        Err(kind) => *kind,
        Ok(text) if text.contains(BLOCKPAGE_TITLE) => Web::Blockpage,
        Ok(text) if text.starts_with("HTTP/1.1 301") => Web::Redirect,
        Ok(text)
            if text.starts_with("HTTP/1.1 200")
                && text.contains(&format!("<title>{name}.example")) =>
        {
            Web::Page
        }
        Ok(text) => return Err(format!("unexpected answer: {:.200}", text)),
    };
    if seen == want {
        Ok(())
    } else {
        Err(format!("want {want:?}, got {seen:?}"))
    }
}

/// GET / from `ip`:80 (plain) or :443 (TLS, SNI = host, trusting `ca`).
async fn fetch(
    ip: Ipv4Addr,
    name: &str,
    ca: Option<CertificateDer<'static>>,
) -> Result<String, Web> {
    let host = format!("{name}.example");
    let port = if ca.is_some() { 443 } else { 80 };
    let work = async {
        let tcp = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(io_kind)?;
        let request =
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab\r\nAccept: */*\r\n\r\n");
        let mut out = Vec::new();
        match ca {
            None => {
                let mut s = tcp;
                s.write_all(request.as_bytes()).await.map_err(io_kind)?;
                s.read_to_end(&mut out).await.map_err(io_kind)?;
            }
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca).expect("lab CA");
                // The probe's own one-segment ClientHello (classical key
                // shares): at MTU 1500 rustls's default hello, with its
                // post-quantum share, is two segments and the name can fall
                // in the second, which a per-packet filter misses.
                let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    probes::hello::provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                let sni = ServerName::try_from(host.clone()).expect("sni");
                let mut s = connector.connect(sni, tcp).await.map_err(io_kind)?;
                s.write_all(request.as_bytes()).await.map_err(io_kind)?;
                s.read_to_end(&mut out).await.map_err(io_kind)?;
            }
        }
        if out.is_empty() {
            return Err(Web::Eof);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(6), work)
        .await
        .unwrap_or(Err(Web::Timeout))
}

fn io_kind(e: std::io::Error) -> Web {
    let unknown_issuer = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    match e.kind() {
        _ if unknown_issuer => Web::UnknownIssuer,
        std::io::ErrorKind::ConnectionReset => Web::Reset,
        std::io::ErrorKind::UnexpectedEof => Web::Eof,
        _ => {
            eprintln!("lab check: unexpected error {e:?}");
            Web::Other
        }
    }
}

/// Sends an A query and collects every reply for 600 ms after sending:
/// (rcode, A records) in arrival order.
async fn ask(
    server: Ipv4Addr,
    host: &str,
    ttl: u32,
) -> Result<Vec<(ResponseCode, Vec<Ipv4Addr>)>, String> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(
        Name::from_ascii(host).map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let sock = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    sock.set_ttl(ttl).map_err(|e| e.to_string())?;
    sock.send_to(&q.to_vec().map_err(|e| e.to_string())?, (server, 53))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while let Ok(r) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        let (n, _) = r.map_err(|e| e.to_string())?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if m.metadata.id != q.metadata.id {
            continue;
        }
        out.push((m.metadata.response_code, a_records(&m)));
    }
    Ok(out)
}

/// Bytes sent by the shaped (non-root) htb classes in `tc -s class show`.
fn shaped_bytes(stats: &str) -> u64 {
    let mut total = 0;
    let mut in_shaped = false;
    for line in stats.lines() {
        let t = line.trim();
        if t.starts_with("class htb") {
            in_shaped = true;
        } else if in_shaped && t.starts_with("Sent ") {
            total += t
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            in_shaped = false;
        }
    }
    total
}
