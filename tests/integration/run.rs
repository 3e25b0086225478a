//! `gatewatch run` and `gatewatch lists update`, end to end: the real binary
//! against fake sites, a fake DNS resolver and a fake list server, all on
//! 127.0.0.1 in this process. Every run uses `--no-system-resolver` (so no
//! query leaves the machine), `--control none` unless a fake control is
//! given, `--yes`, `--no-progress`, `--treat-as-public 127.0.0.0/8`, and
//! private XDG directories.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::Command;

const HEADER: &str = "url,category_code,category_description,date_added,source,notes\n";

// ---------------------------------------------------------------- fakes --

/// A DNS server answering every A query with 127.0.0.1 (names starting
/// with `nx` get NXDOMAIN; other types get an empty answer).
async fn fake_dns() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if let Some(reply) = dns_reply(&buf[..n]) {
                let _ = sock.send_to(&reply, peer).await;
            }
        }
    });
    addr
}

fn dns_reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question: QNAME labels, then QTYPE and QCLASS.
    let mut i = 12;
    let mut first_label = String::new();
    while i < q.len() && q[i] != 0 {
        let l = q[i] as usize;
        if first_label.is_empty() {
            first_label = String::from_utf8_lossy(q.get(i + 1..i + 1 + l)?).to_lowercase();
        }
        i += 1 + l;
    }
    let end = i + 1 + 4;
    let question = q.get(12..end)?;
    let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
    let nx = first_label.starts_with("nx");
    let answer = !nx && qtype == 1;
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]);
    r.extend_from_slice(&[0x81, if nx { 0x83 } else { 0x80 }]);
    r.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answer {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(r)
}

/// What the fake site does with a path.
#[derive(Clone, Default)]
struct SiteOpts {
    /// Extra text in every body.
    body_extra: String,
    /// An extra response header line (`Name: value`), when not empty.
    header_extra: String,
    /// Requests whose path contains `hang` never get an answer.
    hang: bool,
}

/// An HTTP/1.1 site on 127.0.0.1 answering `200` with a small page naming
/// the path; counts the requests it received.
async fn fake_site(opts: SiteOpts) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let opts = opts.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&req);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                if opts.hang && path.contains("hang") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let body = format!(
                    "<html><head><title>Fake {path}</title></head><body>page {path} {}</body></html>",
                    opts.body_extra
                );
                let extra = if opts.header_extra.is_empty() {
                    String::new()
                } else {
                    format!("{}\r\n", opts.header_extra)
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, hits)
}

/// A control answering each query with `answers[url]` (the URL the probe
/// asks about), or with a plain "page fetched" answer carrying
/// `x_client_addr` when the URL is not in the map.
async fn fake_control(client_addr: &str, answers: HashMap<String, Value>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let fallback = serde_json::json!({
        "tcp_connect": {},
        "tls_handshake": {},
        "quic_handshake": {},
        "http_request": {
            "body_length": 100, "discovered_h3_endpoint": "", "failure": null,
            "title": "Fake", "headers": {}, "status_code": 200
        },
        "http3_request": null,
        "dns": {"failure": null, "addrs": ["127.0.0.1"]},
        "ip_info": {},
        "x_client_addr": client_addr,
    });
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (answers, fallback) = (answers.clone(), fallback.clone());
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let body_start;
                loop {
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            body_start = end + 4;
                            break;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let asked: Value =
                    serde_json::from_slice(&req[body_start..]).unwrap_or(Value::Null);
                let url = asked["http_request"].as_str().unwrap_or_default();
                let answer = answers.get(url).unwrap_or(&fallback).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A server for `gatewatch lists update`: `/kh.csv` and `/global.csv`.
async fn fake_list_server(kh: String, global: String) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (kh, global) = (kh.clone(), global.clone());
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/kh.csv" => ("200 OK", kh),
                    "/global.csv" => ("200 OK", global),
                    _ => ("404 Not Found", String::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

// --------------------------------------------------------------- helpers --

struct Env {
    dir: tempfile::TempDir,
    dns: SocketAddr,
}

impl Env {
    async fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            dns: fake_dns().await,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gatewatch` with private XDG dirs, no stdin, nothing from the host.
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        c.env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("HOME", self.dir.path())
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("GATEWATCH_LISTS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// `gatewatch run` with the test-lab flags and `extra`.
    fn run_cmd(&self, extra: &[&str]) -> Command {
        let mut c = self.run_base();
        c.args(["--yes", "--control", "none"])
            .args(["--dns-timeout", "2s", "--tcp-timeout", "2s"])
            .args(["--tls-timeout", "2s"])
            .args(extra);
        c
    }

    /// `gatewatch run` resolving through the fake DNS only, loopback
    /// treated as public, no progress bar; no consent, no control chosen.
    fn run_base(&self) -> Command {
        let mut c = self.cmd();
        c.args([
            "run",
            "--no-progress",
            "--no-system-resolver",
            "--stun",
            "none",
            "--reference",
            "none",
        ])
        .args(["--treat-as-public", "127.0.0.0/8"])
        .args(["--resolver", &self.dns.to_string()]);
        c
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// What a finished `gatewatch` process said.
pub(crate) struct Out {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

async fn output(c: Command) -> Out {
    output_within(c, 120).await
}

/// Runs `c` to the end, failing the test when it takes over `secs` seconds.
pub(crate) async fn output_within(mut c: Command, secs: u64) -> Out {
    let o = tokio::time::timeout(Duration::from_secs(secs), c.output())
        .await
        .unwrap_or_else(|_| panic!("gatewatch did not finish within {secs} s"))
        .unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The JSON lines of a results file.
pub(crate) fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn inputs(v: &[Value]) -> Vec<String> {
    let mut i: Vec<String> = v
        .iter()
        .map(|m| m["input"].as_str().unwrap().to_string())
        .collect();
    i.sort();
    i
}

fn csv_row(url: &str, cat: &str) -> String {
    format!("{url},{cat},x,2026-11-27,test,\n")
}

/// A Citizen Lab list: the header, then one row per (url, category).
fn csv_list(rows: &[(&str, &str)]) -> String {
    rows.iter().fold(HEADER.to_string(), |list, (url, cat)| {
        list + &csv_row(url, cat)
    })
}

// ----------------------------------------------------------------- tests --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_url_with_the_base_keys() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let port = site.port();
    let a = format!("http://127.0.0.1:{port}/a/one");
    let b = format!("http://127.0.0.1:{port}/b/two");
    let list = env.write(
        "l.csv",
        &csv_list(&[(&a, "NEWS"), (&b, "HUMR"), (&a, "NEWS")]),
    );
    let out_file = env.path("out.jsonl");
    let summary = env.path("summary.json");
    let o = output(env.run_cmd(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--json-summary",
        summary.to_str().unwrap(),
        &a, // a duplicate on the command line too
    ]))
    .await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    let ms = lines(&out_file);
    assert_eq!(inputs(&ms), vec![a.clone(), b.clone()]);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let time_re = regex::Regex::new(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$").unwrap();
    for m in &ms {
        assert_eq!(m["probe_ip"], "127.0.0.1");
        assert_eq!(m["probe_asn"], "AS0");
        assert_eq!(m["probe_cc"], "ZZ");
        assert_eq!(m["software_name"], "gatewatch");
        assert_eq!(m["test_name"], "web_connectivity");
        assert_eq!(m["data_format_version"], "0.2.0");
        assert!(m["software_version"].is_string());
        assert!(m["test_version"].is_string());
        assert!(time_re.is_match(m["measurement_start_time"].as_str().unwrap()));
        assert!(time_re.is_match(m["test_start_time"].as_str().unwrap()));
        assert!(m["test_runtime"].as_f64().unwrap() >= 0.0);
        let tk = &m["test_keys"];
        assert_eq!(tk["control_failure"], "control_disabled");
        // No control and plain HTTP: nothing to compare with.
        assert_eq!(tk["x_verdict"]["status"], "inconclusive");
        assert_eq!(tk["requests"][0]["response"]["code"], 200);
        assert!(tk["tcp_connect"].as_array().is_some_and(|t| !t.is_empty()));
        assert!(tk["network_events"].is_array());
        assert!(tk.get("x_interrupted").is_none());
    }
    // The command-line URL came first (no category); the list's duplicate
    // was dropped, so `a` carries no category, `b` carries HUMR.
    let mb = ms.iter().find(|m| m["input"] == b.as_str()).unwrap();
    assert_eq!(mb["annotations"]["category_code"], "HUMR");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["total"], 2);
    assert_eq!(s["measured"], 2);
    assert_eq!(s["interrupted"], 0);
    assert!(o.stdout.contains("URLs measured: 2/2"), "{}", o.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_are_reported_and_skipped() {
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts::default()).await;
    let port = site.port();
    let good = format!("http://127.0.0.1:{port}/good");
    let list = env.write(
        "bad-rows.csv",
        &format!(
            "{HEADER}not-a-url,NEWS,x,2026-11-27,test,\n{}http://x.test/,NEWS\n",
            csv_row(&good, "NEWS")
        ),
    );
    let out_file = env.path("out.jsonl");
    let o = output(env.run_cmd(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    let name = list.display().to_string();
    assert!(
        o.stderr.contains(&format!("{name}:2: invalid URL")),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains(&format!("{name}:4: expected 6 columns, found 2")),
        "{}",
        o.stderr
    );
    assert_eq!(inputs(&lines(&out_file)), vec![good]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_list_stops_before_measuring() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let url = format!("http://127.0.0.1:{}/a", site.port());
    let bin = env.path("bin.csv");
    std::fs::write(&bin, b"\x7fELF\x02\x01\x01\x00\x00\x00binary").unwrap();
    let wrong = env.write("wrong.csv", "name,age\nbob,3\n");
    for f in [&bin, &wrong] {
        let out_file = env.path("out.jsonl");
        let o = output(env.run_cmd(&[
            &url,
            "-i",
            f.to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
        ]))
        .await;
        assert_eq!(o.code, Some(2), "stderr: {}", o.stderr);
        assert!(
            o.stderr
                .contains(&format!("{} is not a test list", f.display())),
            "{}",
            o.stderr
        );
        assert!(!out_file.exists());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_filter_keeps_only_those_codes() {
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts::default()).await;
    let p = site.port();
    let (n, h, a) = (
        format!("http://127.0.0.1:{p}/n"),
        format!("http://127.0.0.1:{p}/h"),
        format!("http://127.0.0.1:{p}/a"),
    );
    let list = env.write(
        "l.csv",
        &csv_list(&[(&n, "NEWS"), (&h, "HUMR"), (&a, "ANON")]),
    );
    let out_file = env.path("out.jsonl");
    let o = output(env.run_cmd(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--category",
        "news,HUMR",
        &format!("http://127.0.0.1:{p}/cli"),
    ]))
    .await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    // The URL given on the command line has no category and is kept.
    let mut want = vec![format!("http://127.0.0.1:{p}/cli"), h, n];
    want.sort();
    assert_eq!(inputs(&lines(&out_file)), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_skips_finished_urls_and_tolerates_a_torn_line() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let p = site.port();
    let urls: Vec<String> = (0..4)
        .map(|i| format!("http://127.0.0.1:{p}/s{i}"))
        .collect();
    let out_file = env.path("out.jsonl");
    let o = output(env.run_cmd(&["-o", out_file.to_str().unwrap(), &urls[0], &urls[1]])).await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A kill in the middle of a write leaves a torn last line.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&out_file)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"input\":\"http://s2.te").unwrap();
    drop(f);
    let list = env.write("all.txt", &format!("# all four\n{}\n", urls.join("\n")));
    let o = output(env.run_cmd(&[
        "--resume",
        "-o",
        out_file.to_str().unwrap(),
        "-i",
        list.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "only the two new URLs were fetched"
    );
    assert_eq!(inputs(&lines(&out_file)), urls);
    // Nothing left to do: a third run measures nothing.
    let o = output(env.run_cmd(&[
        "--resume",
        "-o",
        out_file.to_str().unwrap(),
        "-i",
        list.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(lines(&out_file).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_leaves_only_complete_lines() {
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts {
        hang: true,
        ..Default::default()
    })
    .await;
    let p = site.port();
    // Quick URLs interleaved with ones that never answer, so the run is
    // mid-way when killed.
    let mut text = String::new();
    for i in 0..40 {
        let path = if i % 4 == 3 { "hang" } else { "ok" };
        text.push_str(&format!("http://127.0.0.1:{p}/k{i}/{path}\n"));
    }
    let list = env.write("l.txt", &text);
    let out_file = env.path("out.jsonl");
    let mut child = env
        .run_cmd(&[
            "-i",
            list.to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
            "--parallel",
            "4",
        ])
        .spawn()
        .unwrap();
    // Wait until some lines are written, then kill without warning.
    for _ in 0..600 {
        let n = std::fs::read(&out_file).map(|b| b.iter().filter(|&&c| c == b'\n').count());
        if n.unwrap_or(0) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let bytes = std::fs::read(&out_file).unwrap();
    assert!(bytes.ends_with(b"\n"), "a torn line was left");
    let ms = lines(&out_file);
    assert!(ms.len() >= 3 && ms.len() < 40, "{}", ms.len());
    for m in &ms {
        assert_eq!(m["probe_ip"], "127.0.0.1");
        assert!(m["input"].as_str().unwrap().ends_with("/ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_marks_in_flight_urls_and_exits_130() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts {
        hang: true,
        ..Default::default()
    })
    .await;
    let p = site.port();
    let urls: Vec<String> = (0..6)
        .map(|i| format!("http://127.0.0.1:{p}/h{i}/hang"))
        .collect();
    let list = env.write("l.txt", &urls.join("\n"));
    let out_file = env.path("out.jsonl");
    let summary = env.path("s.json");
    let mut c = env.run_cmd(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--parallel",
        "3",
        "--http-timeout",
        "600s",
        "--url-deadline",
        "600s",
        "--json-summary",
        summary.to_str().unwrap(),
    ]);
    let child = c.spawn().unwrap();
    let pid = child.id().unwrap();
    // Wait until the in-flight URLs reached the site: two, not three,
    // because all URLs are on one host.
    for _ in 0..600 {
        if hits.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let st = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("gatewatch did not stop after SIGINT")
        .unwrap();
    assert_eq!(o.status.code(), Some(130));
    let ms = lines(&out_file);
    assert_eq!(
        ms.len(),
        2,
        "the in-flight URLs are written, the rest not started"
    );
    for m in &ms {
        assert_eq!(m["test_keys"]["x_interrupted"], "interrupted");
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["interrupted"], 2);
    assert_eq!(s["aborted"], true);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_consent() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let url = format!("http://127.0.0.1:{}/c", site.port());
    let out_file = env.path("out.jsonl");
    let out = out_file.to_str().unwrap();

    // Usage errors: 2.
    for bad in [
        vec!["--parallel", "0"],
        vec!["--resolver", "not-an-ip"],
        vec!["--probe-asn", "38623"],
        vec!["ftp://x.test/"],
        vec!["--list", "zz"],
        vec!["--dns-timeout", "soon"],
    ] {
        let mut args = bad.clone();
        args.extend(["-o", out, &url]);
        let o = output(env.run_cmd(&args)).await;
        assert_eq!(o.code, Some(2), "{bad:?}: {}", o.stderr);
    }
    let cfg = env.write("bad.toml", "paralel = 3\n");
    let o = output(env.run_cmd(&["--config", cfg.to_str().unwrap(), "-o", out, &url])).await;
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("invalid config file"), "{}", o.stderr);

    // No consent and nobody to ask: 2, nothing measured.
    let mut c = env.run_base();
    c.args(["--control", "none", "-o", out, &url]);
    let o = output(c).await;
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("consent has not been given"),
        "{}",
        o.stderr
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // `consent = true` in the config file: 0, and the Khmer summary.
    let cfg = env.write(
        "ok.toml",
        &format!(
            "consent = true\ncontrol = [\"none\"]\nstun = \"none\"\nsystem_resolver = false\nresolver = [\"{}\"]\ntreat_as_public = [\"127.0.0.0/8\"]\nno_progress = true\nlang = \"km\"\n",
            env.dns
        ),
    );
    let mut c = env.cmd();
    c.args(["run", "--config", cfg.to_str().unwrap(), "-o", out, &url]);
    let o = output(c).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("ចំនួន URL ដែលបានវាស់: 1/1"), "{}", o.stdout);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_update_downloads_and_run_uses_the_copy() {
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts::default()).await;
    let p = site.port();
    let kh_url = format!("http://127.0.0.1:{p}/kh1");
    let kh = csv_list(&[(&kh_url, "NEWS")]);
    let global = csv_list(&[(&format!("http://127.0.0.1:{p}/g1"), "SRCH")]);
    let lists = fake_list_server(kh, global).await;

    let mut c = env.cmd();
    c.args([
        "lists",
        "update",
        "--country",
        "kh",
        "--source-url",
        &format!("http://{lists}"),
    ]);
    let o = output(c).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let saved = env.path("data").join("gatewatch").join("lists");
    assert!(saved.join("kh.csv").is_file());
    assert!(saved.join("global.csv").is_file());

    let out_file = env.path("out.jsonl");
    let o = output(env.run_cmd(&["--list", "kh", "-o", out_file.to_str().unwrap()])).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(inputs(&lines(&out_file)), vec![kh_url]);

    // Offline (nothing listens there): a clear error, exit 1, old copy kept.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = env.cmd();
    c.args([
        "lists",
        "update",
        "--source-url",
        &format!("http://{closed}"),
    ]);
    let o = output(c).await;
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("cannot download"), "{}", o.stderr);
    assert!(saved.join("kh.csv").is_file());
}

#[test]
fn real_world_citizen_lab_lists_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(dir) = ["../shared/testlists", "../../shared/testlists"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
    else {
        eprintln!("skipped: no ../shared/testlists next to the repository");
        return;
    };
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".csv") || name.starts_with("00-") {
            continue;
        }
        let (entries, warnings) =
            gatewatch::testlist::read_all(&gatewatch::testlist::ListSource::File(p.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(!entries.is_empty(), "{name}");
        // Real lists are clean enough: at most 1% malformed rows.
        assert!(
            warnings.len() * 100 <= entries.len(),
            "{name}: {} warnings, first: {:?}",
            warnings.len(),
            warnings.first().map(ToString::to_string)
        );
        checked += 1;
    }
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_through_the_given_resolver() {
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let p = site.port();
    let ok = format!("http://www.site.test:{p}/");
    let nx = format!("http://nxdomain.site.test:{p}/");
    let out_file = env.path("out.jsonl");
    let o = output(env.run_cmd(&["-o", out_file.to_str().unwrap(), &ok, &nx])).await;
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let ms = lines(&out_file);
    let get = |u: &str| ms.iter().find(|m| m["input"] == u).unwrap().clone();
    let m = get(&ok);
    let resolver = env.dns.to_string();
    let queries = m["test_keys"]["queries"].as_array().unwrap();
    assert!(!queries.is_empty());
    let answered: Vec<&Value> = queries.iter().filter(|q| q["query_type"] == "A").collect();
    assert!(!answered.is_empty(), "{queries:#?}");
    for q in &answered {
        assert_eq!(q["hostname"], "www.site.test");
        assert!(
            q["resolver_address"]
                .as_str()
                .is_some_and(|a| a.contains(&resolver)),
            "{q:#?}"
        );
        assert_eq!(q["answers"][0]["ipv4"], "127.0.0.1", "{q:#?}");
    }
    assert_eq!(m["test_keys"]["requests"][0]["response"]["code"], 200);
    let m = get(&nx);
    assert!(m["test_keys"]["requests"]
        .as_array()
        .is_none_or(|r| r.iter().all(|t| t["response"]["code"] != 200)));
    let failures: Vec<&Value> = m["test_keys"]["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["failure"])
        .collect();
    assert!(
        failures.iter().any(|f| f == &"dns_nxdomain_error"),
        "{failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_address_from_the_control_is_scrubbed() {
    // The control reports the probe's public address; the site echoes it in
    // a header and in the body. None of it may reach the results file.
    let public = "203.0.113.9";
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts {
        body_extra: format!("Your address is {public}."),
        header_extra: format!("X-Seen-From: {public}"),
        ..Default::default()
    })
    .await;
    let control = fake_control(&format!("{public}:50123"), HashMap::new()).await;
    let control_url = format!("http://{control}/");
    let url = format!("http://127.0.0.1:{}/echo", site.port());
    let out_file = env.path("out.jsonl");
    let mut c = env.run_base();
    c.args(["--yes", "--control", &control_url])
        .args(["-o", out_file.to_str().unwrap(), &url]);
    let o = output(c).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(!text.contains(public), "{text}");
    assert!(!text.contains("x_client_addr"), "{text}");
    assert!(!o.stdout.contains(public) && !o.stderr.contains(public));
    let m: Value = serde_json::from_str(text.trim()).unwrap();
    let tk = &m["test_keys"];
    assert!(tk["control"].is_object(), "{tk:#?}");
    assert_eq!(tk["control"]["http_request"]["status_code"], 200);
    let resp = &tk["requests"][0]["response"];
    assert_eq!(resp["headers"]["x-seen-from"], "[scrubbed]");
    let body = resp["body"].as_str().unwrap();
    assert!(body.contains("Your address is [scrubbed]."), "{body}");
    assert_eq!(m["probe_ip"], "127.0.0.1");
    assert_eq!(
        m["test_helpers"]["backend"]["address"],
        control_url.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_counted_and_anomalies_listed() {
    // The control fetched both pages; from the probe one loads the same and
    // the other's port refuses connections: accessible, and blocked.
    let env = Env::new().await;
    let (site, _) = fake_site(SiteOpts::default()).await;
    let ok = format!("http://127.0.0.1:{}/ok", site.port());
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = format!("http://{closed}/");
    let page = |title: &str, len: usize, endpoint: &str| {
        serde_json::json!({
            "tcp_connect": {endpoint: {"status": true, "failure": null}},
            "tls_handshake": {}, "quic_handshake": {},
            "http_request": {
                "body_length": len, "discovered_h3_endpoint": "", "failure": null,
                "title": title, "headers": {"Content-Type": "text/html"}, "status_code": 200
            },
            "http3_request": null,
            "dns": {"failure": null, "addrs": ["127.0.0.1"]},
            "ip_info": {},
        })
    };
    let ok_body_len =
        "<html><head><title>Fake /ok</title></head><body>page /ok </body></html>".len();
    let answers = HashMap::from([
        (ok.clone(), page("Fake /ok", ok_body_len, &site.to_string())),
        (
            refused.clone(),
            page("Elsewhere", 5000, &closed.to_string()),
        ),
    ]);
    let control = fake_control("198.51.100.1", answers).await;
    let out_file = env.path("out.jsonl");
    let summary = env.path("s.json");
    let mut c = env.run_base();
    c.args(["--yes", "--control", &format!("http://{control}/")])
        .args(["--json-summary", summary.to_str().unwrap()])
        .args(["-o", out_file.to_str().unwrap(), &ok, &refused]);
    let o = output(c).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let ms = lines(&out_file);
    let verdict =
        |u: &str| ms.iter().find(|m| m["input"] == u).unwrap()["test_keys"]["x_verdict"].clone();
    assert_eq!(verdict(&ok)["status"], "accessible", "{:#?}", verdict(&ok));
    let v = verdict(&refused);
    assert_eq!(v["status"], "blocked", "{v:#?}");
    assert_eq!(v["mechanism"], "tcp.refused", "{v:#?}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["verdicts"]["accessible"], 1);
    assert_eq!(s["verdicts"]["blocked"], 1);
    assert_eq!(s["anomalies"].as_array().unwrap().len(), 1);
    assert_eq!(s["anomalies"][0]["input"], refused.as_str());
    assert_eq!(s["anomalies"][0]["mechanism"], "tcp.refused");
    assert!(
        o.stdout
            .contains(&format!("{refused} — blocked (tcp.refused")),
        "{}",
        o.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_consent_is_asked_once_and_remembered() {
    // `script` (util-linux) gives the child a terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` command to give gatewatch a terminal");
        return;
    }
    let env = Env::new().await;
    let (site, hits) = fake_site(SiteOpts::default()).await;
    let url = format!("http://127.0.0.1:{}/consent", site.port());
    let out_file = env.path("out.jsonl");
    let line = format!(
        "{} run --no-progress --control none --stun none --no-system-resolver --resolver {} \
         --treat-as-public 127.0.0.0/8 -o {} {url}",
        env!("CARGO_BIN_EXE_gatewatch"),
        env.dns,
        out_file.display()
    );
    let in_terminal = |answer: &'static str| {
        let mut std_cmd = std::process::Command::new("script");
        std_cmd
            .args(["-qec", &line, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_DATA_HOME", env.path("data"))
            .env("HOME", env.dir.path())
            .env("LANG", "en_US.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut c = Command::from(std_cmd);
        c.kill_on_drop(true);
        async move {
            let mut child = c.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(answer.as_bytes()).await.unwrap();
            let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("gatewatch under script did not finish")
                .unwrap();
            drop(stdin);
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        }
    };
    let consent_file = env.path("config").join("gatewatch").join("consent");

    // Declining measures nothing and remembers nothing.
    let (code, text) = in_terminal("no\n").await;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("Article 14 of the NIG sub-decree"), "{text}");
    assert!(text.contains("Nothing was measured."), "{text}");
    assert!(!consent_file.exists());
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Accepting measures and is remembered.
    let (code, text) = in_terminal("yes\n").await;
    assert_eq!(code, Some(0), "{text}");
    assert!(consent_file.is_file());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Next time nobody is asked, even without a terminal or --yes.
    let mut c = env.run_base();
    c.args(["--control", "none", "-o", out_file.to_str().unwrap(), &url]);
    let o = output(c).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stderr.contains("Article 14"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
