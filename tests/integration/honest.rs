//! Honest runs (issue 15), with the real binary against loopback servers:
//! the preflight (a dead network, an unreachable control), back-pressure
//! from the control (429/503 waited out, nothing lost; our own `control
//! serve` defaults at 64 slots), and scrubbing that is complete and never
//! corrupts (gzip bodies, other spellings, truncated bodies, a control on
//! the same host, a control that keeps answering 429).
//!
//! The "public address" is a documentation address (203.0.113.99) handed to
//! the probe by a loopback STUN fake or a fake control's health answer.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gatewatch::control::server::{serve, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::Command;

use crate::fakes::dns::{self, Reply, Script};
use crate::run::{lines, output_within, Out};

const PUBLIC: &str = "203.0.113.99";

// ------------------------------------------------------------ helpers --

/// One request as the handler sees it.
struct Req {
    method: String,
    path: String,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Req) -> Vec<u8> + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1: each request (head and
/// `Content-Length` body) is answered with the bytes `handler` returns,
/// then the connection is closed.
async fn http_server(handler: Handler) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break (end, len);
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut first = head.split_whitespace();
                let req = Req {
                    method: first.next().unwrap_or("").to_string(),
                    path: first.next().unwrap_or("/").to_string(),
                    body: buf[head_end + 4..head_end + 4 + len].to_vec(),
                };
                let resp = handler(&req);
                let _ = s.write_all(&resp).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn resp(code: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {code} X\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut b = out.into_bytes();
    b.extend_from_slice(body);
    b
}

fn page(text: &str) -> Vec<u8> {
    format!("<html><head><title>Echo</title></head><body>{text}</body></html>").into_bytes()
}

/// A control answer saying the page was fetched fine.
fn control_answer(client_addr: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "tcp_connect": {}, "tls_handshake": {}, "quic_handshake": {},
        "http_request": {"body_length": 60, "discovered_h3_endpoint": "", "failure": null,
                         "title": "Echo", "headers": {}, "status_code": 200},
        "http3_request": null,
        "dns": {"failure": null, "addrs": ["127.0.0.1"]},
        "ip_info": {},
        "x_client_addr": client_addr,
    });
    resp(
        200,
        &[("Content-Type", "application/json")],
        v.to_string().as_bytes(),
    )
}

/// A STUN server on 127.0.0.1 that says the client's address is `mapped`.
async fn fake_stun(mapped: Ipv4Addr) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n < 20 {
                continue;
            }
            let cookie = [0x21, 0x12, 0xA4, 0x42];
            let mut v = vec![0x01, 0x01, 0, 12];
            v.extend_from_slice(&cookie);
            v.extend_from_slice(&buf[8..20]);
            v.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 1, 0x12, 0x34]);
            v.extend(mapped.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
            let _ = sock.send_to(&v, from).await;
        }
    });
    addr
}

/// A UDP port on 127.0.0.1 where nothing listens.
fn closed_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gatewatch run --yes` with private XDG dirs, loopback treated as
    /// public, nothing from the host; `extra` says the rest.
    fn run(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        c.env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("HOME", self.dir.path())
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .args(["run", "--yes", "--no-progress", "--no-system-resolver"])
            .args(["--treat-as-public", "127.0.0.0/8"])
            .args(["--dns-timeout", "2s", "--tcp-timeout", "2s"])
            // No reference checks: these tests count control requests and
            // verdicts exactly (netwide.rs tests the checks).
            .args(["--reference", "none"])
            .args(extra);
        c
    }
}

/// The runs here measure hundreds of URLs: five minutes at most.
async fn output(c: Command) -> Out {
    output_within(c, 300).await
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A fake resolver answering every name with 127.0.0.1.
async fn loopback_dns() -> SocketAddr {
    dns::spawn(Script::always(Reply::Answer(vec!["127.0.0.1"
        .parse()
        .unwrap()])))
    .await
    .addr
}

// ---------------------------------------------------------- preflight --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_network_stops_the_run_with_exit_69() {
    let env = Env::new();
    let resolver = closed_udp_port().to_string();
    let control = format!("http://{}/", crate::fakes::tcp::closed_port());
    let out_file = env.path("out.jsonl");
    for (lang, words) in [("en", "No network"), ("km", "គ្មានបណ្តាញ")] {
        let o = output(env.run(&[
            "--resolver",
            &resolver,
            "--control",
            &control,
            "--stun",
            "none",
            "--lang",
            lang,
            "-o",
            out_file.to_str().unwrap(),
            "http://news.example/",
            "http://other.example/",
        ]))
        .await;
        assert_eq!(o.code, Some(69), "{lang}: {}", o.stderr);
        assert!(o.stderr.contains(words), "{lang}: {}", o.stderr);
        // Each check says what failed.
        assert!(
            o.stderr.contains(&format!("udp://{resolver}")),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains(&control), "{}", o.stderr);
        assert!(!out_file.exists(), "nothing is measured");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_is_said_and_never_no_anomalies() {
    let env = Env::new();
    let dns = loopback_dns().await.to_string();
    let site = http_server(Arc::new(|_: &Req| resp(200, &[], &page("hello")))).await;
    let control = format!("http://{}/", crate::fakes::tcp::closed_port());
    let url = format!("http://site.example:{}/", site.port());
    let out_file = env.path("out.jsonl");
    let summary = env.path("summary.json");
    let args = [
        "--resolver",
        &dns,
        "--control",
        &control,
        "--stun",
        "none",
        "-o",
        out_file.to_str().unwrap(),
        "--json-summary",
        summary.to_str().unwrap(),
        &url,
    ];
    let o = output(env.run(&args)).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("No control: the control server could not be reached"),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains("No anomalies found"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("Most verdicts are inconclusive, so this run cannot say whether sites are blocked: the control could not be used."),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("No control"), "{}", o.stdout);
    let s = json(&summary);
    assert_eq!(s["network"]["state"], "no_control");
    assert_eq!(s["network"]["preflight"]["resolvers"][0]["reachable"], true);
    assert_eq!(s["network"]["preflight"]["controls"][0]["reachable"], false);
    assert_eq!(
        s["network"]["controls"][0]["failures"], 2,
        "the clock check and the URL"
    );
    assert_eq!(s["control_failures"], 1);

    // The config can say to stop instead.
    std::fs::create_dir_all(env.path("config/gatewatch")).unwrap();
    let cfg = env.path("config/gatewatch/config.toml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(b"on_no_control = \"stop\"\n")
        .unwrap();
    std::fs::remove_file(&out_file).unwrap();
    let o = output(env.run(&args)).await;
    assert_eq!(o.code, Some(69), "{}", o.stderr);
    assert!(o.stderr.contains("on_no_control"), "{}", o.stderr);
    assert!(!out_file.exists());
}

// ----------------------------------------------------- back-pressure --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_that_answers_429_loses_no_measurement() {
    let env = Env::new();
    let site = http_server(Arc::new(|_: &Req| resp(200, &[], &page("hello")))).await;
    // The first request about each URL is refused with 429 Retry-After: 1.
    let seen: Arc<Mutex<std::collections::HashSet<Vec<u8>>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let (s2, r2) = (Arc::clone(&seen), Arc::clone(&refused));
    let control = http_server(Arc::new(move |r: &Req| {
        if r.method != "POST" {
            return resp(200, &[], b"{}");
        }
        if s2.lock().unwrap().insert(r.body.clone()) {
            r2.fetch_add(1, Ordering::SeqCst);
            return resp(429, &[("Retry-After", "1")], b"slow down\n");
        }
        control_answer("127.0.0.1:4000")
    }))
    .await;
    let urls: Vec<String> = (0..12)
        .map(|i| format!("http://127.0.0.1:{}/p{i}", site.port()))
        .collect();
    let out_file = env.path("out.jsonl");
    let summary = env.path("summary.json");
    let control_url = format!("http://{control}/");
    let mut args = vec![
        "--control",
        &control_url,
        "--stun",
        "none",
        "--parallel",
        "6",
        "-o",
        out_file.to_str().unwrap(),
        "--json-summary",
        summary.to_str().unwrap(),
    ];
    args.extend(urls.iter().map(String::as_str));
    let o = output(env.run(&args)).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let ms = lines(&out_file);
    assert_eq!(ms.len(), 12);
    for m in &ms {
        let tk = &m["test_keys"];
        assert!(tk["control_failure"].is_null(), "{}", tk["control_failure"]);
        assert_eq!(tk["control"]["http_request"]["status_code"], 200);
    }
    // 12 URLs and the clock check (one control request about the
    // control's own URL, before measuring).
    assert_eq!(refused.load(Ordering::SeqCst), 13);
    let s = json(&summary);
    assert_eq!(s["control_failures"], 0);
    assert_eq!(s["network"]["controls"][0]["http_429"], 13);
    assert_eq!(s["network"]["controls"][0]["answers"], 13);
    assert!(
        o.stdout
            .contains("control asked us to slow down (waited, retried): 13"),
        "{}",
        o.stdout
    );
}

/// `count` URLs at `parallel` slots against our own control with `cfg`;
/// returns the JSON summary.
async fn against_our_control(cfg: ServerConfig, count: usize, parallel: &str) -> Value {
    let env = Env::new();
    let site = http_server(Arc::new(|_: &Req| resp(200, &[], &page("hello")))).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = serve(cfg, listener, std::future::pending()).await;
    });
    let list = env.path("list.txt");
    let text: String = (0..count)
        .map(|i| format!("http://127.0.0.1:{}/p{i}\n", site.port()))
        .collect();
    std::fs::write(&list, text).unwrap();
    let out_file = env.path("out.jsonl");
    let summary = env.path("summary.json");
    let o = output(env.run(&[
        "--control",
        &control_url,
        "--stun",
        "none",
        "--parallel",
        parallel,
        "-i",
        list.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--json-summary",
        summary.to_str().unwrap(),
    ]))
    .await;
    server.abort();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let ms = lines(&out_file);
    assert_eq!(ms.len(), count);
    let lost: Vec<&Value> = ms
        .iter()
        .filter(|m| !m["test_keys"]["control_failure"].is_null())
        .map(|m| &m["test_keys"]["control_failure"])
        .collect();
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    json(&summary)
}

fn loopback_control(rate_per_minute: u32, rate_burst: u32) -> ServerConfig {
    ServerConfig {
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        rate_per_minute,
        rate_burst,
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_control_defaults_serve_64_slots_without_losses() {
    let d = ServerConfig::default();
    let s = against_our_control(loopback_control(d.rate_per_minute, d.rate_burst), 300, "64").await;
    assert_eq!(s["control_failures"], 0);
    assert_eq!(
        s["network"]["controls"][0]["answers"], 301,
        "300 URLs and the clock check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_team_control_slows_the_probe_down_but_loses_nothing() {
    // 20 at once, then 10 a second: most requests are refused at first.
    let s = against_our_control(loopback_control(600, 20), 80, "64").await;
    assert_eq!(s["control_failures"], 0);
    let c = &s["network"]["controls"][0];
    assert_eq!(c["answers"], 81, "80 URLs and the clock check");
    assert!(c["http_429"].as_u64().unwrap() > 0, "{c}");
}

// ---------------------------------------------------------- scrubbing --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_gzip_and_truncated_bodies_are_scrubbed() {
    let env = Env::new();
    let stun = fake_stun(PUBLIC.parse().unwrap()).await.to_string();
    let port = Arc::new(AtomicUsize::new(0));
    let p2 = Arc::clone(&port);
    let site = http_server(Arc::new(move |r: &Req| {
        let port = p2.load(Ordering::SeqCst);
        match r.path.as_str() {
            "/gz" => {
                let text = "Hello 203.0.113.99, alias ip-203-0-113-99.isp.example, hex cb007163, \
                     padded 203.000.113.099, url 203%2E0%2E113%2E99, html 203&#46;0&#46;113&#46;99, \
                     ptr 99.113.0.203.in-addr.arpa";
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&page(text)).unwrap();
                let body = e.finish().unwrap();
                resp(
                    200,
                    &[
                        ("Content-Encoding", "gzip"),
                        ("X-Reverse", "99.113.0.203.in-addr.arpa"),
                    ],
                    &body,
                )
            }
            "/redirect" => resp(
                302,
                &[(
                    "Location",
                    &format!("http://127.0.0.1:{port}/landing/203-0-113-99"),
                )],
                b"",
            ),
            "/big" => {
                // The body cap (512 KiB) falls right after "203.0.".
                let cap = 512 * 1024;
                let lead = "Your address is ";
                let mut body = "x".repeat(cap - lead.len() - "203.0.".len());
                body.push_str(lead);
                body.push_str("203.0.113.99 and more");
                resp(200, &[], body.as_bytes())
            }
            _ => resp(200, &[], &page("landed")),
        }
    }))
    .await;
    port.store(usize::from(site.port()), Ordering::SeqCst);
    let base = format!("http://127.0.0.1:{}", site.port());
    let (gz, redirect, big) = (
        format!("{base}/gz"),
        format!("{base}/redirect"),
        format!("{base}/big"),
    );
    let out_file = env.path("out.jsonl");
    let o = output(env.run(&[
        "--control",
        "none",
        "--stun",
        &stun,
        "-o",
        out_file.to_str().unwrap(),
        &gz,
        &redirect,
        &big,
    ]))
    .await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let text = std::fs::read_to_string(&out_file).unwrap();
    for leak in [
        "203.0.113.99",
        "203-0-113-99",
        "cb007163",
        "203.000.113.099",
        "203%2E0",
        "203&#46;0",
        "99.113.0.203",
    ] {
        assert!(!text.contains(leak), "{leak} leaked");
    }
    let ms = lines(&out_file);
    let by = |u: &str| ms.iter().find(|m| m["input"] == u).unwrap().clone();
    // gzip: decoded, scrubbed, kept as text.
    let m = by(&gz);
    let r = &m["test_keys"]["requests"][0]["response"];
    let body = r["body"].as_str().expect("decoded text body");
    assert!(
        body.starts_with("<html><head><title>Echo</title>"),
        "{body}"
    );
    assert!(
        body.contains("Hello [scrubbed], alias ip-[scrubbed].isp.example, hex [scrubbed]"),
        "{body}"
    );
    assert!(body.contains("ptr [scrubbed].in-addr.arpa"), "{body}");
    assert_eq!(r["headers"]["x-reverse"], "[scrubbed].in-addr.arpa");
    // The redirect target's address spelling, in the header and the next hop.
    let m = by(&redirect);
    let reqs = m["test_keys"]["requests"].as_array().unwrap();
    assert!(
        reqs.iter()
            .any(|q| q["request"]["url"].as_str().is_some_and(|u| u
                .ends_with("/landing/ip-[scrubbed]")
                || u.ends_with("/landing/[scrubbed]"))),
        "{reqs:#?}"
    );
    // The body cut at the cap in the middle of the address.
    let m = by(&big);
    let r = &m["test_keys"]["requests"][0]["response"];
    assert_eq!(r["body_is_truncated"], true);
    assert!(r["body"]
        .as_str()
        .unwrap()
        .ends_with("Your address is [scrubbed]"));
    // Never rewritten.
    for m in &ms {
        assert_eq!(m["probe_ip"], "127.0.0.1");
        assert!(!m["input"].as_str().unwrap().contains("scrubbed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_on_the_same_host_corrupts_nothing() {
    // Our control on loopback sees the probe as 127.0.0.1: that is not the
    // public address and nothing is rewritten.
    let env = Env::new();
    let site = http_server(Arc::new(|_: &Req| {
        resp(
            200,
            &[("X-Seen-From", "127.0.0.1")],
            &page("from 127.0.0.1"),
        )
    }))
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(serve(
        loopback_control(0, 0),
        listener,
        std::future::pending(),
    ));
    let url = format!("http://127.0.0.1:{}/", site.port());
    let out_file = env.path("out.jsonl");
    let o = output(env.run(&[
        "--control",
        &control_url,
        "--stun",
        "none",
        "-o",
        out_file.to_str().unwrap(),
        &url,
    ]))
    .await;
    server.abort();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(!text.contains("[scrubbed]"), "{text}");
    let m: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(m["input"], url.as_str());
    assert_eq!(
        m["test_helpers"]["backend"]["address"],
        control_url.as_str()
    );
    assert!(m["test_keys"]["control"].is_object());
    let r = &m["test_keys"]["requests"][0]["response"];
    assert_eq!(r["headers"]["x-seen-from"], "127.0.0.1");
    assert!(m["test_keys"]["tcp_connect"][0]["ip"] == "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_fetched_while_the_control_pushes_back_is_scrubbed() {
    // The control's health answer tells the address; every measurement
    // request is refused with 429, so no measurement ever gets a control
    // answer (the per-URL deadline ends it). The pages still must not leak.
    let env = Env::new();
    let site = http_server(Arc::new(|_: &Req| {
        resp(
            200,
            &[("X-Your-Ip", PUBLIC)],
            &page(&format!("You are {PUBLIC}")),
        )
    }))
    .await;
    let control = http_server(Arc::new(|r: &Req| {
        if r.method == "GET" {
            let v = serde_json::json!({"message": "hi", "x_client_addr": format!("{PUBLIC}:5555")});
            resp(200, &[], v.to_string().as_bytes())
        } else {
            resp(429, &[("Retry-After", "1")], b"slow down\n")
        }
    }))
    .await;
    let control_url = format!("http://{control}/");
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}/p{i}", site.port()))
        .collect();
    let out_file = env.path("out.jsonl");
    let mut args = vec![
        "--control",
        &control_url,
        "--stun",
        "none",
        "--url-deadline",
        "4s",
        "-o",
        out_file.to_str().unwrap(),
    ];
    args.extend(urls.iter().map(String::as_str));
    let o = output(env.run(&args)).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(!text.contains(PUBLIC), "{text}");
    let ms = lines(&out_file);
    assert_eq!(ms.len(), 3);
    for m in &ms {
        let r = &m["test_keys"]["requests"][0]["response"];
        assert_eq!(r["headers"]["x-your-ip"], "[scrubbed]");
        assert!(r["body"].as_str().unwrap().contains("You are [scrubbed]"));
        assert!(m["test_keys"]["control"].is_null());
    }
}

// ------------------------------------------------------------ consent --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_shows_the_notice_and_records_consent_instead_of_yes() {
    let env = Env::new();
    let units = env.path("units");
    let schedule = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        c.env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_DATA_HOME", env.path("data"))
            .env("HOME", env.dir.path())
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["schedule"])
            .args(extra);
        c
    };
    let consent_file = env.path("config/gatewatch/consent");
    // Nobody to ask and no --yes: nothing installed, nothing recorded.
    let o = output(schedule(&[
        "install",
        "--user",
        "--unit-dir",
        units.to_str().unwrap(),
    ]))
    .await;
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("stun.l.google.com"),
        "the notice: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("consent has not been given"),
        "{}",
        o.stderr
    );
    assert!(!units.exists() && !consent_file.exists());
    // With --yes after reading it: recorded in the config directory, and
    // the unit gives no consent flag of its own.
    let o = output(schedule(&[
        "install",
        "--user",
        "--yes",
        "--unit-dir",
        units.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(consent_file.exists());
    let service = std::fs::read_to_string(units.join("gatewatch.service")).unwrap();
    assert!(service.contains(" run --no-progress"), "{service}");
    assert!(!service.contains("--yes"), "{service}");
    // cron: the notice again, consent already recorded, a line without it.
    let o = output(schedule(&["cron"])).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("th.ooni.org"));
    assert!(
        o.stdout.contains("gatewatch run --no-progress"),
        "{}",
        o.stdout
    );
}

// -------------------------------------------------------------- geo --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_update_offline_fails_clearly_and_a_downloaded_database_is_used() {
    let env = Env::new();
    let geo = |base: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        c.env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_DATA_HOME", env.path("data"))
            .env("HOME", env.dir.path())
            .env("GATEWATCH_GEO_URL", base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["geo", "update"]);
        c
    };
    let dir = env.path("data/gatewatch/geo");
    let offline = format!("http://{}/free/", crate::fakes::tcp::closed_port());
    let o = output(geo(&offline)).await;
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("cannot download {offline}dbip-country-lite-"))
            && o.stderr.contains("is this machine online?"),
        "{}",
        o.stderr
    );
    assert!(!dir.exists());

    // A real country database (see geo::tests), served as DB-IP's file.
    let Some(db) = std::env::var_os("GATEWATCH_TEST_MMDB") else {
        eprintln!("skipped the rest: GATEWATCH_TEST_MMDB (a real country .mmdb) is not set");
        return;
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(db).unwrap()).unwrap();
    let gz = Arc::new(gz.finish().unwrap());
    let server = http_server(Arc::new(move |r: &Req| {
        if r.path.contains("dbip-country-lite-") {
            resp(200, &[], &gz)
        } else {
            resp(404, &[], b"")
        }
    }))
    .await;
    let o = output(geo(&format!("http://{server}/free/"))).await;
    // The country file is written; there is no ASN file to serve.
    assert!(dir.join("dbip-country-lite.mmdb").is_file(), "{}", o.stderr);
    assert!(o.stderr.contains("dbip-asn-lite-"), "{}", o.stderr);
    assert!(o.stderr.contains("404"), "{}", o.stderr);
    assert!(!dir.join("dbip-asn-lite.mmdb").exists());

    // A run finds it and names the country of the (injected) public address.
    let stun = fake_stun("8.8.8.8".parse().unwrap()).await.to_string();
    let site = http_server(Arc::new(|_: &Req| resp(200, &[], &page("hello")))).await;
    let url = format!("http://127.0.0.1:{}/", site.port());
    let out_file = env.path("out.jsonl");
    let summary = env.path("summary.json");
    let o = output(env.run(&[
        "--control",
        "none",
        "--stun",
        &stun,
        "-o",
        out_file.to_str().unwrap(),
        "--json-summary",
        summary.to_str().unwrap(),
        &url,
    ]))
    .await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let m = &lines(&out_file)[0];
    assert_eq!(m["probe_cc"], "US");
    assert_eq!(m["probe_asn"], "AS0");
    assert_eq!(json(&summary)["probe_cc"], "US");
    // The ASN is still unknown: said at the start and in the summary.
    assert!(o.stderr.contains("Unknown network"), "{}", o.stderr);
    assert!(o.stdout.contains("Unknown network"), "{}", o.stdout);
}
