//! Network-wide interception (issue 21) and the probe's clock (issue 22),
//! end to end: the real binary against the real control server (in this
//! process), sites on several 127.0.0.x addresses sharing one port, and two
//! DNS servers — the control's honest one and the probe's, which a test
//! turns into a captive portal's. Reference targets are always given with
//! `--reference` (loopback names), so nothing leaves the machine.
//!
//! Scenario rows: a top-up page via DNS before the run (every name answered
//! with the portal's address: the run stops, exit 3, nothing measured); a
//! walled garden starting mid-run (the affected results are marked
//! inconclusive, exit 3, and `--resume` measures them again); the twin
//! (many sites NXDOMAIN while the references are fine: still `blocked`);
//! and a probe whose clock is days or years off (corrected, warned, never
//! `tls.mitm`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gatewatch::control::server::serve;
use hickory_proto::op::Message;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::Command;

use crate::fakes::ca::TestCa;
use crate::fakes::dns::{reply_bytes, Reply};

const PORTAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const PORTAL_PAGE: &str = "<html><head><title>CafeNet Wi-Fi</title></head><body>\
<form action=\"/login\">Accept the terms of use <input type=\"password\" name=\"code\">\
<button>Log in</button></form></body></html>";

/// The address of site `i` (`s{i}.test`).
fn site_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + i)
}

/// The reference targets' address (`ref-a.test`, `ref-b.test`).
const REF_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// What a DNS server answers for a name.
type Answer = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A UDP DNS server on 127.0.0.1 answering with `answer(name)`.
async fn dns(answer: Answer) -> SocketAddr {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let name = q
                .queries
                .first()
                .map(|q| q.name().to_ascii().trim_end_matches('.').to_lowercase())
                .unwrap_or_default();
            let _ = sock.send_to(&reply_bytes(&q, &answer(&name)), from).await;
        }
    });
    addr
}

/// The honest answer: `s{i}.test` → its site, `ref-*.test` → the
/// references' address.
fn honest(name: &str) -> Reply {
    if name.starts_with("ref-") {
        return Reply::Answer(vec![IpAddr::V4(REF_IP)]);
    }
    match name
        .strip_prefix('s')
        .and_then(|r| r.strip_suffix(".test"))
        .and_then(|n| n.parse::<u8>().ok())
    {
        Some(i) => Reply::Answer(vec![IpAddr::V4(site_ip(i))]),
        None => Reply::Rcode(3),
    }
}

/// An HTTP server on `ip:port` answering every request with `page(host)`.
async fn http_on(ip: Ipv4Addr, port: u16, portal: bool) {
    let l = TcpListener::bind((ip, port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_lowercase();
                let host = text
                    .lines()
                    .find_map(|l| l.strip_prefix("host:"))
                    .map(|h| h.trim().split(':').next().unwrap_or("").to_string())
                    .unwrap_or_default();
                let body = if portal {
                    PORTAL_PAGE.to_string()
                } else {
                    format!(
                        "<html><head><title>Site {host}</title></head><body><p>The site {host} \
                         has news about the river, the market and the weather.</p></body></html>"
                    )
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}

/// A port free on every address given.
async fn common_port(ips: &[Ipv4Addr]) -> u16 {
    'outer: loop {
        let probe = TcpListener::bind((ips[0], 0)).await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        for ip in ips {
            if std::net::TcpListener::bind((*ip, port)).is_err() {
                continue 'outer;
            }
        }
        return port;
    }
}

/// Sites `s1..=sN`, the references and the portal, all on one port.
struct Net {
    port: u16,
    control: String,
    probe_dns: SocketAddr,
    dir: tempfile::TempDir,
}

impl Net {
    async fn start(n: u8, probe_answer: Answer) -> Net {
        let mut ips: Vec<Ipv4Addr> = (1..=n).map(site_ip).collect();
        ips.extend([REF_IP, PORTAL]);
        let port = common_port(&ips).await;
        for i in 1..=n {
            http_on(site_ip(i), port, false).await;
        }
        http_on(REF_IP, port, false).await;
        http_on(PORTAL, port, true).await;
        let control_dns = dns(Arc::new(honest)).await;
        let control = start_control(control_dns, Vec::new()).await;
        Net {
            port,
            control,
            probe_dns: dns(probe_answer).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn urls(&self, n: u8) -> Vec<String> {
        (1..=n)
            .map(|i| format!("http://s{i}.test:{}/", self.port))
            .collect()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gatewatch run` over `urls` with the references on the shared port.
    fn run(&self, urls: &[String], extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        c.arg("run")
            .args(["--yes", "--no-progress", "--lang", "en", "--stun", "none"])
            .args(["--control", &self.control])
            .args(["--no-system-resolver", "--resolver"])
            .arg(self.probe_dns.to_string())
            .args(["--treat-as-public", "127.0.0.0/8"])
            .args(["--dns-timeout", "2s", "--tcp-timeout", "2s"])
            .args(["--tls-timeout", "2s", "--http-timeout", "3s"])
            .args(["--parallel", "1", "--probe-cc", "KH"])
            .args(["--reference", &format!("http://ref-a.test:{}/", self.port)])
            .args(["--reference", &format!("http://ref-b.test:{}/", self.port)])
            .arg("--output")
            .arg(self.path("out.jsonl"))
            .arg("--json-summary")
            .arg(self.path("summary.json"))
            .args(extra)
            .args(urls)
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("HOME", self.dir.path())
            .env_remove("GATEWATCH_CLOCK_SKEW")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    fn results(&self) -> Vec<Value> {
        read_lines(&self.path("out.jsonl"))
    }

    fn summary(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("summary.json")).unwrap()).unwrap()
    }
}

fn read_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The real control server on 127.0.0.1, resolving with `dns`, trusting
/// `ca_files` besides the usual roots. Returns its URL.
async fn start_control(dns: SocketAddr, ca_files: Vec<PathBuf>) -> String {
    let mut cfg = crate::control::config(dns, &["127.0.0.0/8"]);
    cfg.ca_files = ca_files;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = serve(cfg, listener, std::future::pending()).await;
    });
    format!("http://127.0.0.1:{}/", addr.port())
}

fn status(m: &Value) -> &str {
    m["test_keys"]["x_verdict"]["status"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_top_up_page_via_dns_stops_the_run_before_measuring() {
    // Every name, the references' included, answers the portal's address.
    let net = Net::start(
        4,
        Arc::new(|_: &str| Reply::Answer(vec![IpAddr::V4(PORTAL)])),
    )
    .await;
    let out = net.run(&net.urls(4), &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("network-wide interception (captive portal, walled garden, or the connection stopped working) from"),
        "{stderr}"
    );
    assert!(stderr.contains("\"CafeNet Wi-Fi\""), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    // Nothing was measured, so nothing can read as blocked.
    assert!(net.results().is_empty(), "{:?}", net.results());
    let summary = net.summary();
    let ep = &summary["network_interception"][0];
    assert_eq!(ep["before_run"], true, "{summary:#}");
    assert_eq!(ep["marked"], 0);
    assert_eq!(
        ep["portal"],
        "the login or top-up page \"CafeNet Wi-Fi\" at ref-a.test"
    );
    assert_eq!(summary["measured"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Network-wide interception"), "{stdout}");

    // Without reference checks (as before them), every site reads blocked:
    // the false accusation the checks prevent.
    let out = net
        .run(&net.urls(4), &["--reference", "none"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines = net.results();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|m| status(m) == "blocked"), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walled_garden_mid_run_is_marked_and_resume_measures_again() {
    let garden = Arc::new(AtomicBool::new(false));
    let g = Arc::clone(&garden);
    let answer: Answer = Arc::new(move |name: &str| {
        // The balance runs out while s4 is measured: every name asked for
        // after it (s4's own other queries aside) gets the portal. (Not
        // s1–s3: the run's preflight asks the resolver about those first.)
        if name == "s4.test" {
            g.store(true, Ordering::SeqCst);
            return honest(name);
        }
        if g.load(Ordering::SeqCst) {
            Reply::Answer(vec![IpAddr::V4(PORTAL)])
        } else {
            honest(name)
        }
    });
    let net = Net::start(14, answer).await;
    let urls = net.urls(14);
    let out = net.run(&urls, &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("Stopping. What was measured is kept"),
        "{stderr}"
    );

    let lines = net.results();
    let by_url = |u: &str| lines.iter().find(|m| m["input"] == u);
    for u in &urls[..3] {
        let m = by_url(u).unwrap_or_else(|| panic!("{u} missing: {lines:#?}"));
        assert_eq!(status(m), "accessible", "{m:#}");
        assert!(m["test_keys"].get("x_network_interception").is_none());
    }
    let marked: Vec<&Value> = lines
        .iter()
        .filter(|m| m["test_keys"].get("x_network_interception").is_some())
        .collect();
    assert!(marked.len() >= 6, "{lines:#?}");
    for m in &marked {
        assert_eq!(status(m), "inconclusive", "{m:#}");
        assert!(m["test_keys"]["blocking"].is_null(), "{m:#}");
        let ev = m["test_keys"]["x_verdict"]["evidence"][0].as_str().unwrap();
        assert!(
            ev.starts_with("network-wide interception (captive portal, walled garden, or the connection stopped working) from"),
            "{ev}"
        );
        assert!(
            ev.contains("failing sites got the same answer: the page \"CafeNet Wi-Fi\""),
            "{ev}"
        );
        assert_eq!(
            m["test_keys"]["x_network_interception"]["portal"],
            "the login or top-up page \"CafeNet Wi-Fi\" at ref-a.test",
            "{m:#}"
        );
    }
    // Never a false `blocked`, and every URL at most once.
    assert!(lines.iter().all(|m| status(m) != "blocked"), "{lines:#?}");
    let mut inputs: Vec<&str> = lines.iter().filter_map(|m| m["input"].as_str()).collect();
    let n = inputs.len();
    inputs.dedup();
    assert_eq!(inputs.len(), n);
    let summary = net.summary();
    let ep = &summary["network_interception"][0];
    assert!(ep["marked"].as_u64().unwrap() >= 6, "{summary:#}");
    assert_eq!(ep["before_run"], false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Network-wide interception (captive portal, walled garden, or the connection stopped working) from"),
        "{stdout}"
    );

    // The volunteer tops up; --resume measures the marked and the missing
    // URLs, and each URL ends with exactly one line.
    garden.store(false, Ordering::SeqCst);
    let out = net.run(&urls, &["--resume"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = net.results();
    assert_eq!(lines.len(), urls.len(), "{lines:#?}");
    for u in &urls {
        let m = by_url_in(&lines, u);
        assert_eq!(status(m), "accessible", "{m:#}");
        assert!(m["test_keys"].get("x_network_interception").is_none());
    }
}

fn by_url_in<'a>(lines: &'a [Value], u: &str) -> &'a Value {
    lines
        .iter()
        .find(|m| m["input"] == u)
        .unwrap_or_else(|| panic!("{u} missing"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_twin_many_sites_blocked_with_references_fine_stays_blocked() {
    // The censor's resolver: NXDOMAIN for every site, the references fine.
    let net = Net::start(
        10,
        Arc::new(|name: &str| {
            if name.starts_with("ref-") {
                honest(name)
            } else {
                Reply::Rcode(3)
            }
        }),
    )
    .await;
    let urls = net.urls(10);
    let out = net.run(&urls, &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("network-wide"), "{stderr}");
    let lines = net.results();
    assert_eq!(lines.len(), 10, "{lines:#?}");
    for m in &lines {
        assert_eq!(status(m), "blocked", "{m:#}");
        assert_eq!(m["test_keys"]["x_verdict"]["mechanism"], "dns.nxdomain");
        assert!(m["test_keys"].get("x_network_interception").is_none());
    }
    let summary = net.summary();
    assert!(summary.get("network_interception").is_none());
    // The bursts of failures did ask for checks, which found the
    // references fine (then a quiet stretch: not one check per burst).
    let checks = summary["network_checks"].as_u64().unwrap();
    assert!((1..=2).contains(&checks), "{summary:#}");
}

// ---------------------------------------------------------------- clock --

/// One HTTPS site on 127.0.0.1 with a leaf valid from 30 days ago to 60
/// days ahead (as a real site's), the real control trusting the test CA;
/// the probe runs with its clock skewed by `skew` seconds.
async fn run_with_clock(skew: i64) -> (Value, Value, String) {
    run_with_clock_and(skew, None).await
}

/// As [`run_with_clock`], with `fake_control(port)` as the control instead
/// of the real one when given.
async fn run_with_clock_and(
    skew: i64,
    fake_control: Option<fn(u16) -> Value>,
) -> (Value, Value, String) {
    let ca = TestCa::new("Clock test CA");
    let now = time::OffsetDateTime::now_utc();
    let cert = ca.issue_valid(
        &["clock.test"],
        now - time::Duration::days(30),
        now + time::Duration::days(60),
    );
    let site = crate::fakes::tls::spawn(
        &cert,
        crate::fakes::http::Behaviour::Respond(crate::fakes::http::response(
            200,
            "OK",
            &[("Content-Type", "text/html")],
            &crate::fakes::http::page("Clock site", "the news of the day"),
        )),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let name_dns = dns(Arc::new(|_: &str| {
        Reply::Answer(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
    }))
    .await;
    let control = match fake_control {
        Some(answer) => start_fake_control(answer(site.addr.port())).await,
        None => start_control(name_dns, vec![ca_file.clone()]).await,
    };
    let url = format!("https://clock.test:{}/", site.addr.port());
    let out_file = dir.path().join("out.jsonl");
    let summary_file = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .arg("run")
        .args(["--yes", "--no-progress", "--lang", "en", "--stun", "none"])
        .args(["--control", &control, "--reference", "none"])
        .args(["--no-system-resolver", "--resolver"])
        .arg(name_dns.to_string())
        .args(["--treat-as-public", "127.0.0.0/8", "--ca-file"])
        .arg(&ca_file)
        .arg("--output")
        .arg(&out_file)
        .arg("--json-summary")
        .arg(&summary_file)
        .arg(&url)
        .env("GATEWATCH_CLOCK_SKEW", skew.to_string())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = read_lines(&out_file);
    assert_eq!(lines.len(), 1, "{stderr}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_file).unwrap()).unwrap();
    (lines[0].clone(), summary, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_clock_is_corrected_warned_and_never_interception() {
    const DAY: i64 = 86_400;
    for (skew, words) in [
        (-400 * DAY, "400 days behind"),
        (-3 * DAY, "3 days behind"),
        (90 * DAY, "90 days ahead of"),
        (3 * 365 * DAY, "1095 days ahead of"),
    ] {
        let (m, summary, stderr) = run_with_clock(skew).await;
        let tk = &m["test_keys"];
        // Judged at the corrected time, the site's own certificate is fine.
        assert_eq!(status(&m), "accessible", "skew {skew}: {m:#}\n{stderr}");
        assert_ne!(tk["x_verdict"]["mechanism"], "tls.mitm");
        assert!(
            stderr.contains(&format!(
                "this device's clock is {words} the reference time (control x_time)"
            )),
            "skew {skew}: {stderr}"
        );
        // The offset is recorded, within the run's own few seconds.
        let off = m["x_clock_offset"].as_i64().unwrap();
        assert!((off + skew).abs() <= 5, "skew {skew}: offset {off}");
        assert_eq!(m["x_clock"]["in_doubt"], true);
        assert_eq!(summary["clock"]["offset_seconds"], off);
        assert_eq!(summary["clock"]["beyond_tolerance"], true);
        // Times are corrected; the local reading is kept.
        let year = time::OffsetDateTime::now_utc().year().to_string();
        let start = m["measurement_start_time"].as_str().unwrap();
        let local = m["x_clock"]["local_measurement_start_time"]
            .as_str()
            .unwrap();
        let local_year = (time::OffsetDateTime::now_utc() + time::Duration::seconds(skew))
            .year()
            .to_string();
        assert!(start.starts_with(&year), "{start}");
        assert!(local.starts_with(&local_year), "{local}");
        // The handshake itself was judged at the corrected time.
        let hs = &tk["tls_handshakes"][0];
        assert!(hs["x_certificate_failure"].is_null(), "{hs:#}");
    }
    // A right clock: no warning, offset near zero, not in doubt.
    let (m, summary, stderr) = run_with_clock(0).await;
    assert_eq!(status(&m), "accessible");
    assert!(!stderr.contains("clock"), "{stderr}");
    assert!(m["x_clock_offset"].as_i64().unwrap().abs() <= 5);
    assert_eq!(m["x_clock"]["in_doubt"], false);
    assert_eq!(summary["clock"]["beyond_tolerance"], false);
}

/// A control that tells no time (no `x_time`, no `Date` header), answering
/// every query with `answer`.
async fn start_fake_control(answer: Value) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = answer.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{}/", addr.port())
}

/// What a helper answers for the clock site: it connected, verified the
/// certificate and fetched the page (no leaf hash, as OONI's helpers).
fn helper_saw_the_site(port: u16) -> Value {
    let ep = format!("127.0.0.1:{port}");
    serde_json::json!({
        "tcp_connect": { &ep: {"status": true, "failure": null} },
        "tls_handshake": { &ep: {"server_name": "clock.test", "status": true, "failure": null} },
        "quic_handshake": {},
        "http_request": {
            "body_length": 90, "discovered_h3_endpoint": "", "failure": null,
            "title": "Clock site", "headers": {"Content-Type": "text/html"}, "status_code": 200
        },
        "http3_request": null,
        "dns": {"failure": null, "addrs": ["127.0.0.1"]},
        "ip_info": {},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_clock_that_cannot_be_corrected_is_inconclusive_not_interception() {
    // The helper tells no time: the probe judges the site's certificate at
    // its own wrong time and refuses it; the helper verified it.
    for skew in [-400 * 86_400, 3 * 365 * 86_400] {
        let (m, summary, stderr) = run_with_clock_and(skew, Some(helper_saw_the_site)).await;
        let tk = &m["test_keys"];
        assert_eq!(status(&m), "inconclusive", "skew {skew}: {m:#}");
        assert!(tk["blocking"].is_null(), "{m:#}");
        let hs = &tk["tls_handshakes"][0];
        assert_eq!(hs["x_certificate_failure"], "ssl_invalid_certificate");
        let reason = if skew < 0 { "not_yet_valid" } else { "expired" };
        assert_eq!(hs["x_certificate_reason"], reason, "{hs:#}");
        assert_eq!(hs["x_certificate_untimed"], "valid", "{hs:#}");
        let ev = tk["x_verdict"]["evidence"].to_string();
        assert!(
            ev.contains("the probe's clock could not be checked against a reference time and is the likely reason"),
            "{ev}"
        );
        assert!(
            stderr.contains("the clock could not be checked against a reference time"),
            "{stderr}"
        );
        assert!(m.get("x_clock_offset").is_none(), "{m:#}");
        assert_eq!(m["x_clock"]["in_doubt"], true);
        assert!(summary["clock"]["offset_seconds"].is_null(), "{summary:#}");
    }
}

/// `line` run in a terminal (`script`, util-linux) with `answer` typed in;
/// `None` when there is no `script` command.
async fn in_terminal(line: &str, home: &Path, answer: &str) -> Option<(Option<i32>, String)> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` command to give gatewatch a terminal");
        return None;
    }
    let mut std_cmd = std::process::Command::new("script");
    std_cmd
        .args(["-qec", line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HOME", home)
        .env("LANG", "en_US.UTF-8")
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut c = Command::from(std_cmd);
    c.kill_on_drop(true);
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).await.unwrap();
    let o = tokio::time::timeout(std::time::Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("gatewatch under script did not finish")
        .unwrap();
    drop(stdin);
    Some((
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interactive_volunteer_is_asked_and_what_is_measured_is_marked() {
    let net = Net::start(
        4,
        Arc::new(|_: &str| Reply::Answer(vec![IpAddr::V4(PORTAL)])),
    )
    .await;
    let line = |out: &str| {
        format!(
            "{} run --yes --no-progress --lang en --stun none --control {} --no-system-resolver \
             --resolver {} --treat-as-public 127.0.0.0/8 --dns-timeout 2s --tcp-timeout 2s \
             --http-timeout 3s --parallel 1 --reference http://ref-a.test:{p}/ \
             --reference http://ref-b.test:{p}/ --json-summary {} -o {} {}",
            env!("CARGO_BIN_EXE_gatewatch"),
            net.control,
            net.probe_dns,
            net.path("summary.json").display(),
            net.path(out).display(),
            net.urls(4).join(" "),
            p = net.port
        )
    };
    // "No": nothing is measured.
    let Some((code, text)) = in_terminal(&line("no.jsonl"), net.dir.path(), "n\n").await else {
        return;
    };
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("Measure anyway"), "{text}");
    assert!(read_lines(&net.path("no.jsonl")).is_empty());

    // "Yes": every site is measured, and every failure is marked.
    let (code, text) = in_terminal(&line("yes.jsonl"), net.dir.path(), "y\n")
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{text}");
    let lines = read_lines(&net.path("yes.jsonl"));
    assert_eq!(lines.len(), 4, "{text}");
    for m in &lines {
        assert_eq!(status(m), "inconclusive", "{m:#}");
        assert_eq!(
            m["test_keys"]["x_network_interception"]["original_status"],
            "blocked"
        );
    }
    let summary = net.summary();
    assert_eq!(summary["network_interception"][0]["before_run"], true);
    assert_eq!(summary["network_interception"][0]["marked"], 4);
    // Every verdict is inconclusive: the summary says why instead of "No
    // anomalies found".
    assert!(!text.contains("No anomalies found."), "{text}");
    assert!(text.contains("Most verdicts are inconclusive"), "{text}");
}
