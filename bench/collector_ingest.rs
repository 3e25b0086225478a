//! Collector benchmark (not a test): ingest rate through the real HTTP API
//! with 8 and 64 concurrent uploaders, then the list endpoint's p50/p99 over
//! a database of generated measurements, on SQLite and (when
//! GATEWATCH_TEST_POSTGRES is set) PostgreSQL.
//!
//! `cargo bench --bench collector_ingest`
//! SQLite runs twice: `--sqlite-sync full` (fsync per grouped transaction)
//! and `os`; with one request at a time per uploader, `full` is bound by
//! the disk's fsync time (uploaders / fsync latency).
//! Env: INGEST_TOTAL (measurements per ingest run, default 4000),
//!      LIST_ROWS (rows generated for the listing, default 1000000; 0 skips),
//!      LIST_QUERIES (requests per listing kind, default 200).
//! The machine is shared: figures vary between runs.

use std::time::{Duration, Instant};

use gatewatch::collector::{router, CollectorState, SqliteSync, Store};
use gatewatch::upload::Uploader;
use serde_json::{json, Value};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A realistic upload: about 6 KiB.
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

/// A small generated row for the listing database: 50 ASNs, 10,000 URLs,
/// times spread over twelve months of 2026.
fn small(i: usize) -> Value {
    let month = i % 12 + 1;
    let day = (i / 12) % 28 + 1;
    let sec = i / 336;
    json!({
        "input": format!("https://site{}.example/", i % 10_000),
        "measurement_start_time": format!(
            "2026-{month:02}-{day:02} {:02}:{:02}:{:02}", (sec / 3600) % 24, (sec / 60) % 60, sec % 60),
        "probe_asn": format!("AS{}", 38600 + i % 50), "probe_cc": "KH", "probe_ip": "127.0.0.1",
        "test_keys": {"x_verdict": {"status": if i.is_multiple_of(7) { "blocked" } else { "accessible" }}},
        "test_name": "web_connectivity"
    })
}

async fn open(db: &str) -> Store {
    open_with(db, SqliteSync::Full).await
}

async fn open_with(db: &str, sync: SqliteSync) -> Store {
    let db = db.to_string();
    tokio::task::spawn_blocking(move || Store::open_with(&db, sync))
        .await
        .unwrap()
        .unwrap()
}

async fn serve(store: Store) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(CollectorState::new(store, 4 << 20));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

async fn ingest(label: &str, db: &str, sync: SqliteSync, clients: usize, total: usize) {
    let (url, server) = serve(open_with(db, sync).await).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut up = Uploader::new(&url).with_retries(3, Duration::from_millis(50));
            for i in (c..total).step_by(clients) {
                up.submit(&measurement(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label} ingest: {total} measurements in {secs:.2} s = {:.0} measurements/s ({clients} uploaders)",
        total as f64 / secs
    );
    server.abort();
}

async fn listing(label: &str, db: &str, rows: usize, queries: usize) {
    let store = open(db).await;
    let start = Instant::now();
    let store = tokio::task::spawn_blocking(move || {
        const CHUNK: usize = 10_000;
        for first in (0..rows).step_by(CHUNK) {
            let ms: Vec<Value> = (first..(first + CHUNK).min(rows)).map(small).collect();
            store.insert_many("bench", &ms).unwrap();
        }
        store
    })
    .await
    .unwrap();
    println!(
        "{label} list: generated {rows} measurements in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let (url, server) = serve(store).await;
    let http = reqwest::Client::new();
    let kinds = [
        ("no filter, limit=100", "limit=100".to_string()),
        (
            "probe_asn, limit=100",
            "probe_asn=AS38617&limit=100".to_string(),
        ),
        ("input", "input=https://site4242.example/".to_string()),
        (
            "since/until one day, limit=100",
            "since=2026-06-14&until=2026-06-15&limit=100".to_string(),
        ),
        (
            "probe_asn + since, limit=100",
            "probe_asn=AS38633&since=2026-09-01&limit=100".to_string(),
        ),
        ("no filter, default limit (10000)", String::new()),
    ];
    for (name, q) in kinds {
        let n = if q.is_empty() {
            queries.min(20)
        } else {
            queries
        };
        let mut times = Vec::with_capacity(n);
        let mut results = 0;
        for _ in 0..n {
            let t = Instant::now();
            let r = http
                .get(format!("{url}/api/v1/measurements?{q}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            results = v["results"].as_array().map_or(0, Vec::len);
            times.push(t.elapsed());
        }
        times.sort();
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{label} list at {rows}: {name}: {results} results, p50 {:.1} ms, p99 {:.1} ms ({n} requests)",
            p(0.50).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3
        );
    }
    server.abort();
}

/// A fresh PostgreSQL schema (dropped and created) and its URL.
async fn pg_schema(url: &str, schema: &str) -> String {
    let u = url.to_string();
    let s = schema.to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};"
        ))
        .unwrap();
    })
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

#[tokio::main]
async fn main() {
    let total = env("INGEST_TOTAL", 4000);
    let rows = env("LIST_ROWS", 1_000_000);
    let queries = env("LIST_QUERIES", 200).max(1);
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("GATEWATCH_TEST_POSTGRES").ok();
    for clients in [8, 64] {
        for (label, sync) in [
            ("sqlite (sync full)", SqliteSync::Full),
            ("sqlite (sync os)", SqliteSync::Os),
        ] {
            let db = dir.path().join(format!("ingest{clients}-{sync:?}.sqlite"));
            ingest(label, db.to_str().unwrap(), sync, clients, total).await;
        }
        if let Some(url) = &pg {
            let db = pg_schema(url, &format!("bench_ingest{clients}")).await;
            ingest("postgres", &db, SqliteSync::Full, clients, total).await;
        }
    }
    if rows > 0 {
        let db = dir.path().join("list.sqlite");
        listing("sqlite", db.to_str().unwrap(), rows, queries).await;
        if let Some(url) = &pg {
            let db = pg_schema(url, "bench_list").await;
            listing("postgres", &db, rows, queries).await;
        }
    }
    if pg.is_none() {
        println!("postgres: skipped (set GATEWATCH_TEST_POSTGRES)");
    }
}
