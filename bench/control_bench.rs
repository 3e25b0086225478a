//! Control-server benchmark: requests/s, p50/p99 latency and the server's
//! RSS with concurrent clients, loopback only.
//!
//! It starts an HTTP target on 127.0.0.2, runs `gatewatch control serve`
//! as a separate process (treating only 127.0.0.2/32 as public, no rate
//! limit), and sends a bounded number of control requests from
//! `CONTROL_BENCH_CLIENTS` concurrent clients (default 50). Each request
//! makes the server do a TCP connect and an HTTP GET to the target.
//!
//! Run: `bash bench/control_bench.sh` (or `cargo bench --bench control_bench`).
//! Environment: `CONTROL_BENCH_REQUESTS` (default 2000),
//! `CONTROL_BENCH_CLIENTS` (default 50), `CONTROL_BENCH_BODY` (target body
//! bytes, default 16384).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("control_bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let total = env_usize("CONTROL_BENCH_REQUESTS", 2000).clamp(1, 100_000);
    let clients = env_usize("CONTROL_BENCH_CLIENTS", 50).clamp(1, 1000);
    let body_len = env_usize("CONTROL_BENCH_BODY", 16 * 1024).min(8 * 1024 * 1024);

    let target = start_target(body_len).await?;
    let port = free_port().await?;
    let mut server = spawn_server(port)?;
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| e.to_string())?;
    wait_ready(&http, &base, &mut server).await?;
    let idle_rss = rss_kib(pid, "VmRSS");

    let body = serde_json::json!({
        "http_request": format!("http://{target}/"),
        "http_request_headers": {},
        "tcp_connect": [target.to_string()],
    })
    .to_string();

    // Warm-up (not counted).
    for _ in 0..clients.min(total) {
        let _ = post(&http, &base, &body).await;
    }

    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid, "VmRSS") {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, base, body) = (http.clone(), base.clone(), body.clone());
        let (next, errors) = (Arc::clone(&next), Arc::clone(&errors));
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                let t = Instant::now();
                match post(&http, &base, &body).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(total);
    for w in workers {
        lat.extend(w.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let hwm = rss_kib(pid, "VmHWM");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || server.wait()).await;

    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i].as_secs_f64() * 1000.0
    };
    let ok = lat.len();
    println!("control_bench: {clients} concurrent clients, {total} requests, target body {body_len} bytes (loopback)");
    println!("  ok {ok}, errors {}", errors.load(Ordering::Relaxed));
    println!(
        "  throughput {:.0} requests/s over {:.2} s",
        ok as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  server RSS: idle {} KiB, peak sampled {} KiB, VmHWM {} KiB",
        idle_rss.map_or("?".into(), |v| v.to_string()),
        peak.load(Ordering::Relaxed),
        hwm.map_or("?".into(), |v| v.to_string())
    );
    Ok(())
}

async fn post(http: &reqwest::Client, base: &str, body: &str) -> Result<(), String> {
    let resp = http
        .post(base)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if v["http_request"]["status_code"] != 200 {
        return Err(format!("measurement failed: {}", v["http_request"]));
    }
    Ok(())
}

/// The target: every request gets a `body_len`-byte HTML page.
async fn start_target(body_len: usize) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.2:0")
        .await
        .map_err(|e| format!("cannot bind 127.0.0.2: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut page = b"<html><head><title>bench</title></head><body>".to_vec();
    page.resize(body_len.max(page.len()), b'x');
    let page = Bytes::from(page);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let page = page.clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/html")
                                .body(Full::new(page))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn spawn_server(port: u16) -> Result<Child, String> {
    let exe = std::env::var("GATEWATCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gatewatch").to_string());
    Command::new(exe)
        .args([
            "control",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--treat-as-public",
            "127.0.0.2/32",
            "--rate-limit",
            "0",
            "--max-in-flight",
            "1000",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))
}

async fn wait_ready(http: &reqwest::Client, base: &str, server: &mut Child) -> Result<(), String> {
    for _ in 0..200 {
        if let Ok(r) = http.get(base).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Ok(Some(st)) = server.try_wait() {
            return Err(format!("the server exited: {st}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the server did not come up".into())
}

/// A `/proc/PID/status` field in KiB.
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
