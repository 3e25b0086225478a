//! Tests: `collector serve` and `control serve` against hostile clients —
//! slow headers, floods of idle connections, every connection busy. No
//! wall-clock assertions: each test asserts what happened (a connection
//! was closed, a health check answered 200), with generous client
//! timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use gatewatch::collector::{serve_on, CollectorState, Store};
use gatewatch::control::server::{serve, ServerConfig};
use gatewatch::http_server::ConnLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A collector on 127.0.0.1 with these limits.
async fn collector(limits: ConnLimits) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    let store = tokio::task::spawn_blocking(move || Store::open(db.to_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_on(
        listener,
        CollectorState::new(store, 64 * 1024),
        limits,
        std::future::pending(),
    ));
    (addr, dir)
}

/// A control server on 127.0.0.1 with these limits.
async fn control(limits: ConnLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = ServerConfig {
        rate_per_minute: 0,
        connections: limits,
        ..ServerConfig::default()
    };
    tokio::spawn(serve(cfg, listener, std::future::pending()));
    addr
}

fn limits(max_connections: usize, header_timeout: Duration) -> ConnLimits {
    ConnLimits {
        max_connections,
        header_timeout,
        request_timeout: Duration::from_secs(20),
        stall_timeout: Duration::from_secs(20),
        shutdown_grace: Duration::from_secs(1),
    }
}

/// Whether the server closes `s` within 60 s while we keep sending one more
/// header line every 100 ms (a head that never ends).
async fn dropped_while_trickling(mut s: TcpStream) -> bool {
    let trickle = async {
        if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.is_err() {
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 or the like: keep reading to the close
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if s.write_all(b"X-Slow: yes\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), trickle)
        .await
        .is_ok()
}

/// Whether the server closed `s` (EOF or error within `wait`).
async fn closed_by_server(mut s: TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A plain GET on a new connection; its status.
async fn get(addr: SocketAddr, path: &str) -> u16 {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn twenty_slow_headers_are_dropped(addr: SocketAddr) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = TcpStream::connect(addr).await.unwrap();
        tasks.push(tokio::spawn(dropped_while_trickling(s)));
    }
    // The server keeps answering meanwhile.
    assert_eq!(get(addr, "/").await, 200);
    let mut dropped = 0;
    for t in tasks {
        dropped += usize::from(t.await.unwrap());
    }
    assert_eq!(dropped, 20, "every slow-header connection was closed");
    assert_eq!(get(addr, "/").await, 200);
}

async fn idle_connections_do_not_lock_out_health_checks(addr: SocketAddr, cap: usize) {
    let n = cap * 6;
    let mut idle = Vec::new();
    for _ in 0..n {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Health checks and real requests, each on a new connection.
    for _ in 0..5 {
        assert_eq!(get(addr, "/").await, 200);
    }
    // The excess idle connections were closed (cleanly: EOF); at most
    // `cap` are still held open.
    let checks: Vec<_> = idle
        .into_iter()
        .map(|s| tokio::spawn(closed_by_server(s, Duration::from_secs(3))))
        .collect();
    let mut closed = 0;
    for c in checks {
        closed += usize::from(c.await.unwrap());
    }
    assert!(closed >= n - cap, "closed {closed} of {n} idle connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_drops_slow_headers() {
    let (addr, _dir) = collector(limits(64, Duration::from_secs(1))).await;
    twenty_slow_headers_are_dropped(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_drops_slow_headers() {
    let addr = control(limits(64, Duration::from_secs(1))).await;
    twenty_slow_headers_are_dropped(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_keeps_answering_under_a_flood_of_idle_connections() {
    // Idle connections are not timed out here: only the cap can save us.
    let (addr, _dir) = collector(limits(32, Duration::from_secs(120))).await;
    idle_connections_do_not_lock_out_health_checks(addr, 32).await;
    // A real request: open a report.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/report"))
        .json(&serde_json::json!({"probe_cc":"KH","probe_asn":"AS38623",
            "test_name":"web_connectivity","format":"json"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_keeps_answering_under_a_flood_of_idle_connections() {
    let addr = control(limits(32, Duration::from_secs(120))).await;
    idle_connections_do_not_lock_out_health_checks(addr, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_new_one_gets_503() {
    let (addr, _dir) = collector(limits(4, Duration::from_secs(120))).await;
    // Four requests whose bodies never finish keep their handlers busy.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"probe_cc\":",
        )
        .await
        .unwrap();
        busy.push(s);
    }
    // Let the server see them (the outcome, not the time, is asserted).
    let mut status = 0;
    for _ in 0..100 {
        status = get(addr, "/").await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503);
    // Once they go away, it answers again.
    drop(busy);
    let mut status = 0;
    for _ in 0..100 {
        status = get(addr, "/").await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_never_ends_gets_408() {
    let (addr, _dir) = collector(ConnLimits {
        request_timeout: Duration::from_secs(1),
        ..limits(8, Duration::from_secs(120))
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"probe_cc\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(get(addr, "/").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_listing_loses_its_connection() {
    // One connection only: while the stalled listing holds it, others are
    // refused; once it is dropped, they are served.
    let (addr, dir) = collector(ConnLimits {
        stall_timeout: Duration::from_secs(1),
        ..limits(1, Duration::from_secs(120))
    })
    .await;
    let db = dir.path().join("c.sqlite");
    tokio::task::spawn_blocking(move || {
        let store = Store::open(db.to_str().unwrap()).unwrap();
        for i in 0..40 {
            let m = serde_json::json!({
                "probe_cc": "KH", "probe_asn": "AS38623", "test_name": "web_connectivity",
                "measurement_start_time": format!("2026-11-27 10:00:{i:02}"),
                "software_name": "gatewatch", "probe_ip": "127.0.0.1",
                "input": format!("https://s{i}.example/"),
                "test_keys": {"padding": "p".repeat(512 * 1024)}
            });
            store.insert("r1", &m).unwrap();
        }
    })
    .await
    .unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /api/v1/measurements.jsonl HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Its answer has started; from now on we read nothing more.
    let mut head = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    let mut seen = Vec::new();
    for _ in 0..300 {
        let s = get(addr, "/").await;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        if s == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec![503, 200], "refused while stalled, then served");
    drop(stalled);
}
