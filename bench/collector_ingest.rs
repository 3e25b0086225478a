//! Collector ingest rate: measurements per second stored by `gatewatch
//! collector` on SQLite and (when GATEWATCH_TEST_POSTGRES is set) PostgreSQL.
//!
//! `cargo bench --bench collector_ingest` — 8 uploaders on loopback submit
//! 2,000 realistic measurements (about 6 KiB each) through the real HTTP API.

use std::time::{Duration, Instant};

use gatewatch::collector::{router, CollectorState, Store};
use gatewatch::upload::Uploader;
use serde_json::{json, Value};

const TOTAL: usize = 2000;
const CLIENTS: usize = 8;

fn measurement(i: usize) -> Value {
    json!({
        "annotations": {"category_code": "NEWS"}, "data_format_version": "0.2.0",
        "input": format!("https://site{i}.example/"),
        "measurement_start_time": format!("2026-11-27 10:{:02}:{:02}", (i / 60) % 60, i % 60),
        "probe_asn": "AS38623", "probe_cc": "KH", "probe_ip": "127.0.0.1",
        "software_name": "gatewatch", "software_version": "0.1.0",
        "test_keys": {"x_verdict": {"status": "accessible"}, "requests": [
            {"response": {"code": 200, "body": "x".repeat(6000)}}]},
        "test_name": "web_connectivity", "test_runtime": 1.0,
        "test_start_time": "2026-11-27 10:00:00", "test_version": "0.5.28-gatewatch.1"
    })
}

async fn run(label: &str, db: String) {
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(CollectorState::new(store, 4 << 20));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut up = Uploader::new(&url).with_retries(3, Duration::from_millis(50));
            for i in (c..TOTAL).step_by(CLIENTS) {
                up.submit(&measurement(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: {TOTAL} measurements in {secs:.2} s = {:.0} measurements/s ({CLIENTS} clients)",
        TOTAL as f64 / secs
    );
    server.abort();
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    run(
        "sqlite",
        dir.path().join("bench.sqlite").display().to_string(),
    )
    .await;
    match std::env::var("GATEWATCH_TEST_POSTGRES") {
        Ok(url) => {
            let u = url.clone();
            tokio::task::spawn_blocking(move || {
                let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
                c.batch_execute("DROP TABLE IF EXISTS measurements; DROP TABLE IF EXISTS reports;")
                    .unwrap();
            })
            .await
            .unwrap();
            run("postgres", url).await
        }
        Err(_) => println!("postgres: skipped (set GATEWATCH_TEST_POSTGRES)"),
    }
}
