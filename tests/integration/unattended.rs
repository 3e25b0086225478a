//! Tests: the collector, uploads with a spool, and the history database.

use std::net::SocketAddr;
use std::time::Duration;

use gatewatch::collector::{router, CollectorState, Store};
use gatewatch::upload::{drain_spool, spool_write, Uploader};
use serde_json::{json, Value};

/// A collector running in-process on 127.0.0.1.
struct Collector {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start(db: &str, port: u16) -> Collector {
        Collector::start_with_max_body(db, port, 64 * 1024).await
    }

    async fn start_with_max_body(db: &str, port: u16, max_body: usize) -> Collector {
        let db = db.to_string();
        let store = tokio::task::spawn_blocking(move || Store::open(&db))
            .await
            .unwrap()
            .unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(CollectorState::new(store, max_body));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it the hard way, as a crash would.
    async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

fn measurement(i: usize, asn: &str) -> Value {
    json!({
        "annotations": {}, "data_format_version": "0.2.0",
        "input": format!("https://site{i}.example/"),
        "measurement_start_time": format!("2026-11-27 10:{:02}:00", i % 60),
        "probe_asn": asn, "probe_cc": "KH", "probe_ip": "127.0.0.1",
        "software_name": "gatewatch", "software_version": "0.1.0",
        "test_keys": {"x_verdict": {"status": if i.is_multiple_of(2) {"blocked"} else {"accessible"}}},
        "test_name": "web_connectivity", "test_runtime": 1.0,
        "test_start_time": "2026-11-27 10:00:00", "test_version": "0.5.28-gatewatch.1"
    })
}

async fn count(url: &str) -> usize {
    let v: Value = reqwest::get(format!("{url}/api/v1/measurements"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["results"].as_array().unwrap().len()
}

async fn roundtrip(db: &str) {
    let c = Collector::start(db, 0).await;
    let mut up = Uploader::new(&c.url()).with_retries(1, Duration::from_millis(10));
    let mut uids = Vec::new();
    for i in 0..4 {
        uids.push(up.submit(&measurement(i, "AS38623")).await.unwrap());
    }
    // A retried upload of the same measurement stores nothing twice.
    assert_eq!(
        up.submit(&measurement(0, "AS38623")).await.unwrap(),
        uids[0]
    );
    assert_eq!(count(&c.url()).await, 4);
    let one: Value = reqwest::get(format!("{}/api/v1/measurements/{}", c.url(), uids[1]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["input"], "https://site1.example/");
    let blocked: Value = reqwest::get(format!(
        "{}/api/v1/measurements?input=https://site2.example/",
        c.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(blocked["results"][0]["status"], "blocked");
    let jsonl = reqwest::get(format!(
        "{}/api/v1/measurements.jsonl?probe_asn=AS38623",
        c.url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    for line in jsonl.lines() {
        let m: gatewatch::model::Measurement = serde_json::from_str(line).unwrap();
        assert_eq!(m.probe_asn, "AS38623");
    }
    c.kill().await;
}

#[tokio::test]
async fn collector_stores_and_serves_measurements_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    roundtrip(dir.path().join("c.sqlite").to_str().unwrap()).await;
}

#[tokio::test]
async fn collector_stores_and_serves_measurements_in_postgres() {
    let Ok(url) = std::env::var("GATEWATCH_TEST_POSTGRES") else {
        eprintln!(
            "postgres collector test skipped: set GATEWATCH_TEST_POSTGRES=postgres://... (CI does)"
        );
        return;
    };
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.batch_execute("DROP TABLE IF EXISTS measurements; DROP TABLE IF EXISTS reports;")
            .unwrap();
    })
    .await
    .unwrap();
    roundtrip(&url).await;
}

#[tokio::test]
async fn bad_submissions_get_4xx_and_the_collector_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path().join("c.sqlite").to_str().unwrap(), 0).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", c.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post("/report", b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("malformed JSON"));
    let r = post(
        "/report",
        br#"{"probe_cc":"kh","probe_asn":"AS1","test_name":"web_connectivity"}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("probe_cc"));
    let open: Value = post(
        "/report",
        br#"{"probe_cc":"KH","probe_asn":"AS38623","test_name":"web_connectivity","format":"json"}"#
            .to_vec(),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rid = open["report_id"].as_str().unwrap().to_string();
    let mut bad = measurement(1, "AS38623");
    bad["probe_asn"] = json!("38623");
    let r = post(
        &format!("/report/{rid}"),
        serde_json::to_vec(&json!({"format":"json","content":bad})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("probe_asn"));
    let mut leaky = measurement(1, "AS38623");
    leaky["probe_ip"] = json!("198.51.100.7");
    let r = post(
        &format!("/report/{rid}"),
        serde_json::to_vec(&json!({"format":"json","content":leaky})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/report/nosuchreport",
        serde_json::to_vec(&json!({"format":"json","content":measurement(1, "AS1")})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let mut huge = measurement(2, "AS38623");
    huge["test_keys"]["padding"] = json!("x".repeat(100 * 1024));
    let r = post(
        &format!("/report/{rid}"),
        serde_json::to_vec(&json!({"format":"json","content":huge})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 413);
    // Still answering, and nothing bad was stored.
    let r = reqwest::get(format!("{}/", c.url())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count(&c.url()).await, 0);
    c.kill().await;
}

#[tokio::test]
async fn a_collector_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    let spool = dir.path().join("spool");
    let c = Collector::start(db.to_str().unwrap(), 0).await;
    let url = c.url();
    let mut up = Uploader::new(&url).with_retries(2, Duration::from_millis(20));
    for i in 0..3 {
        assert!(up
            .submit_or_spool(&measurement(i, "AS17976"), &spool)
            .await
            .unwrap()
            .is_some());
    }
    let addr = c.kill().await;
    for i in 3..6 {
        // The collector is gone: these go to the spool.
        assert_eq!(
            up.submit_or_spool(&measurement(i, "AS17976"), &spool)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 3);
    // Spooling the same measurement twice keeps one file.
    spool_write(&spool, &measurement(5, "AS17976")).unwrap();
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 3);
    let c = Collector::start(db.to_str().unwrap(), addr.port()).await;
    let out = drain_spool(&mut up, &spool).await.unwrap();
    assert_eq!((out.uploaded, out.remaining, out.invalid), (3, 0, 0));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    assert_eq!(count(&c.url()).await, 6);
    c.kill().await;
}

/// `gatewatch run` with private XDG directories and the loopback-lab flags.
fn run_cmd(home: &std::path::Path, extra: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    c.env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HOME", home)
        .env("LANG", "en_US.UTF-8")
        .env_remove("LC_ALL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .arg("run")
        .args([
            "--yes",
            "--no-progress",
            "--control",
            "none",
            "--stun",
            "none",
        ])
        .args(["--treat-as-public", "127.0.0.0/8", "--no-system-resolver"])
        .args(["--http-timeout", "3s"])
        .args(extra);
    c
}

/// Runs [`run_cmd`] to the end (within 120 s), asserts it exited 0 and
/// returns its stderr.
async fn run_ok(home: &std::path::Path, extra: &[&str]) -> String {
    let out = tokio::time::timeout(Duration::from_secs(120), run_cmd(home, extra).output())
        .await
        .expect("run finished")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    stderr
}

#[tokio::test]
async fn a_run_uploads_to_our_collector_and_records_history() {
    use crate::fakes::http::{page, response, spawn, Behaviour};
    let home = tempfile::tempdir().unwrap();
    let c = Collector::start(home.path().join("c.sqlite").to_str().unwrap(), 0).await;
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("Content-Type", "text/html")],
        &page("Khmer news", "today's stories"),
    )))
    .await;
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://{}/story{i}", site.addr))
        .collect();
    let upload = c.url();
    let mut args: Vec<&str> = vec!["--upload", &upload, "--tcp-timeout", "2s"];
    let out_file = home.path().join("out.jsonl");
    let out_s = out_file.display().to_string();
    args.extend(["--output", &out_s]);
    args.extend(urls.iter().map(String::as_str));
    let stderr = run_ok(home.path(), &args).await;
    assert!(stderr.contains("uploaded 3, spooled 0"), "stderr: {stderr}");
    assert_eq!(count(&c.url()).await, 3);
    let jsonl = reqwest::get(format!("{}/api/v1/measurements.jsonl", c.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut inputs: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["input"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    inputs.sort();
    assert_eq!(inputs, urls);
    // The spool is empty and the history has one observation per URL.
    let data = home.path().join("data").join("gatewatch");
    assert_eq!(std::fs::read_dir(data.join("spool")).unwrap().count(), 0);
    let db = gatewatch::history::HistoryDb::open(&data.join("history.sqlite")).unwrap();
    let eps = db.episodes(None, None).unwrap();
    assert!(eps.is_empty(), "nothing was blocked: {eps:?}");
    drop(db);
    // The history holds each URL's verdict, as in the results file.
    let conn = rusqlite::Connection::open(data.join("history.sqlite")).unwrap();
    let mut st = conn
        .prepare("SELECT input, status FROM observations ORDER BY input")
        .unwrap();
    let history: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut results: Vec<(String, String)> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| {
            let m: Value = serde_json::from_str(l).unwrap();
            let status = m["test_keys"]["x_verdict"]["status"]
                .as_str()
                .unwrap()
                .to_string();
            (m["input"].as_str().unwrap().to_string(), status)
        })
        .collect();
    results.sort();
    assert_eq!(history.len(), 3);
    assert_eq!(history, results);

    // With the collector gone, the next run spools and says so.
    let addr = c.kill().await;
    let stderr = run_ok(home.path(), &args).await;
    assert!(stderr.contains("uploaded 0, spooled 3"), "stderr: {stderr}");
    assert_eq!(std::fs::read_dir(data.join("spool")).unwrap().count(), 3);
    // `gatewatch upload` drains it once the collector is back.
    let c = Collector::start(home.path().join("c.sqlite").to_str().unwrap(), addr.port()).await;
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    up.env("XDG_DATA_HOME", home.path().join("data"))
        .env("HOME", home.path())
        .args(["upload", "--collector", &c.url()]);
    let o = up.output().await.unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("uploaded 3, still spooled 0"));
    assert_eq!(count(&c.url()).await, 6);
    c.kill().await;
}

#[tokio::test]
async fn a_second_run_does_not_overlap_the_first() {
    use crate::fakes::tcp::blackhole;
    let home = tempfile::tempdir().unwrap();
    // The first run waits on a connect that never completes.
    let hole = blackhole();
    let url = format!("http://{}/", hole.addr);
    let mut first = run_cmd(home.path(), &["--tcp-timeout", "20s", &url])
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock.
    let lock = home.path().join("data/gatewatch/run.lock");
    for _ in 0..100 {
        if lock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        run_cmd(home.path(), &["--tcp-timeout", "2s", "http://127.0.0.1:9/"]).output(),
    )
    .await
    .expect("second run returned")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "stderr: {stderr}");
    assert!(
        stderr.contains("another gatewatch run is in progress"),
        "{stderr}"
    );
    first.kill().await.unwrap();
}

#[tokio::test]
async fn a_users_fingerprint_directory_is_used_and_a_bad_one_refused() {
    use crate::fakes::http::{page, response, spawn, Behaviour};
    let home = tempfile::tempdir().unwrap();
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("Content-Type", "text/html")],
        &page(
            "Notice",
            "This website has been seized by order of the lab ministry",
        ),
    )))
    .await;
    let fp = home.path().join("fp");
    std::fs::create_dir_all(&fp).unwrap();
    std::fs::write(
        fp.join("fingerprints_http.csv"),
        "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n\
         lab.seized,nat,,body,contains,seized by order of the lab ministry,9,KH,lab,,a test blockpage\n",
    )
    .unwrap();
    let url = format!("http://{}/", site.addr);
    let out_file = home.path().join("out.jsonl");
    let (fp_s, out_s) = (fp.display().to_string(), out_file.display().to_string());
    run_ok(
        home.path(),
        &[
            "--fingerprints",
            &fp_s,
            "--tcp-timeout",
            "2s",
            "--output",
            &out_s,
            &url,
        ],
    )
    .await;
    let line = std::fs::read_to_string(&out_file).unwrap();
    let m: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let v = &m["test_keys"]["x_verdict"];
    assert_eq!(v["fingerprints"], json!(["lab.seized"]), "{v}");
    assert_eq!(v["status"], "blocked", "{v}");
    assert_eq!(v["mechanism"], "http.blockpage", "{v}");

    // A malformed row names the file and line, and nothing is measured.
    std::fs::write(
        fp.join("fingerprints_dns.csv"),
        "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n\
         broken-row-with-too-few-columns\n",
    )
    .unwrap();
    let out = run_cmd(home.path(), &["--fingerprints", &fp_s, &url])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fingerprints_dns.csv:2"), "{stderr}");
}

/// A STUN server on 127.0.0.1 that says the client's address is `mapped`.
async fn fake_stun(mapped: std::net::Ipv4Addr) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
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

#[tokio::test]
async fn the_address_stun_reports_is_scrubbed_without_a_control() {
    use crate::fakes::http::{response, spawn, Behaviour};
    let home = tempfile::tempdir().unwrap();
    // The site echoes "the visitor's address" in a header and the body.
    let public = "198.51.100.77";
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("X-Your-Address", public)],
        format!("<html><title>Blocked</title>Your address is {public}.</html>").as_bytes(),
    )))
    .await;
    let stun = fake_stun(public.parse().unwrap()).await.to_string();
    let url = format!("http://{}/", site.addr);
    let out_file = home.path().join("out.jsonl");
    let out_s = out_file.display().to_string();
    // run_cmd says `--stun none`; a later --stun would clash, so build the
    // command here.
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    c.env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("HOME", home.path())
        .args(["run", "--yes", "--no-progress", "--control", "none"])
        .args(["--stun", &stun, "--treat-as-public", "127.0.0.0/8"])
        .args([
            "--no-system-resolver",
            "--tcp-timeout",
            "2s",
            "-o",
            &out_s,
            &url,
        ]);
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(!text.contains(public), "the public address leaked: {text}");
    let m: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let resp = &m["test_keys"]["requests"][0]["response"];
    assert_eq!(resp["headers"]["x-your-address"], "[scrubbed]");
    assert!(resp["body"]
        .as_str()
        .unwrap()
        .contains("Your address is [scrubbed]."));
    assert_eq!(m["probe_ip"], "127.0.0.1");
}

/// `(input, status)` of every history row, sorted.
fn history_rows(home: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(home.join("data/gatewatch/history.sqlite")).unwrap();
    let mut st = conn
        .prepare("SELECT input, status FROM observations ORDER BY input, id")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

#[tokio::test]
async fn after_sigterm_and_resume_the_history_has_one_row_per_finished_measurement() {
    use crate::fakes::http::{page, response, spawn, Behaviour};
    use crate::fakes::tcp::blackhole;
    let home = tempfile::tempdir().unwrap();
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("Content-Type", "text/html")],
        &page("Khmer news", "today's stories"),
    )))
    .await;
    let hole = blackhole();
    let good: Vec<String> = (0..2)
        .map(|i| format!("http://{}/story{i}", site.addr))
        .collect();
    let stuck = format!("http://{}/", hole.addr);
    let out_file = home.path().join("out.jsonl");
    let out_s = out_file.display().to_string();
    let mut args = vec!["--output", &out_s, "--url-deadline", "600s"];
    args.extend(good.iter().map(String::as_str));
    args.push(&stuck);
    let mut first = vec!["--tcp-timeout", "600s"];
    first.extend(args.iter().copied());
    let child = run_cmd(home.path(), &first).spawn().unwrap();
    let pid = child.id().unwrap();
    // Wait until both good URLs are written; the stuck one is in flight.
    for _ in 0..600 {
        let done = std::fs::read_to_string(&out_file).map_or(0, |t| t.lines().count());
        if done >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("gatewatch stopped after SIGTERM")
        .unwrap();
    assert_eq!(o.status.code(), Some(130));
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains("\"x_interrupted\":\"interrupted\""),
        "the stuck URL was cut short: {text}"
    );
    // The interrupted URL is not a verdict: the history has the two
    // finished URLs only.
    let rows = history_rows(home.path());
    let inputs: Vec<&str> = rows.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(inputs, good.iter().map(String::as_str).collect::<Vec<_>>());

    // --resume measures the stuck URL again (quickly now) and only it.
    let mut second = vec!["--tcp-timeout", "1s", "--resume"];
    second.extend(args.iter().copied());
    run_ok(home.path(), &second).await;
    let rows = history_rows(home.path());
    let mut want: Vec<String> = good.clone();
    want.push(stuck.clone());
    want.sort();
    let inputs: Vec<String> = rows.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(inputs, want, "one row per URL: {rows:?}");
}

/// A collector whose first `drop_first` connections are closed at once, as
/// a collector that is down for a moment looks to the uploader.
async fn flaky_collector(db: &str, drop_first: usize) -> String {
    let db = db.to_string();
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for _ in 0..drop_first {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        }
        let app = router(CollectorState::new(store, 64 * 1024));
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn a_collector_down_for_a_moment_does_not_make_the_run_spool() {
    use crate::fakes::http::{page, response, spawn, Behaviour};
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("c.sqlite");
    // Three tries of the first measurement fail, and one more.
    let collector = flaky_collector(db.to_str().unwrap(), 4).await;
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("Content-Type", "text/html")],
        &page("Khmer news", "today's stories"),
    )))
    .await;
    let urls: Vec<String> = (0..8)
        .map(|i| format!("http://{}/story{i}", site.addr))
        .collect();
    let mut args: Vec<&str> = vec!["--upload", &collector, "--tcp-timeout", "2s"];
    args.extend(urls.iter().map(String::as_str));
    let stderr = run_ok(home.path(), &args).await;
    assert!(stderr.contains("upload failed"), "stderr: {stderr}");
    assert!(stderr.contains("uploaded 8, spooled 0"), "stderr: {stderr}");
    assert_eq!(count(&collector).await, 8);
    let spool = home.path().join("data/gatewatch/spool");
    assert_eq!(std::fs::read_dir(spool).unwrap().count(), 0);
}

#[tokio::test]
async fn a_list_on_standard_input_is_read_with_its_first_url() {
    use crate::fakes::http::{page, response, spawn, Behaviour};
    use tokio::io::AsyncWriteExt;
    let site = spawn(Behaviour::Respond(response(
        200,
        "OK",
        &[("Content-Type", "text/html")],
        &page("Khmer news", "today's stories"),
    )))
    .await;
    // A byte-order mark, then a URL and its #fragment variant.
    let list = format!(
        "\u{feff}http://{0}/a\nhttp://{0}/a#comments\nhttp://{0}/b\n",
        site.addr
    );
    for input in ["-", "/dev/stdin"] {
        let home = tempfile::tempdir().unwrap();
        let out_file = home.path().join("out.jsonl");
        let out_s = out_file.display().to_string();
        let mut cmd = run_cmd(
            home.path(),
            &["--tcp-timeout", "2s", "-o", &out_s, "-i", input],
        );
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(list.as_bytes()).await.unwrap();
        drop(stdin);
        let o = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("run finished")
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{input}: {stderr}");
        let mut inputs: Vec<String> = std::fs::read_to_string(&out_file)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["input"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        inputs.sort();
        assert_eq!(
            inputs,
            vec![
                format!("http://{}/a", site.addr),
                format!("http://{}/b", site.addr)
            ],
            "{input}"
        );
    }
}

/// Stores `n` measurements (every tenth with a 512 KiB body), then reads
/// them back through `GET /api/v1/measurements.jsonl` page by page.
async fn jsonl_pages(db: &str) {
    let n = 95;
    let d = db.to_string();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&d).unwrap();
        for i in 0..n {
            let mut m = measurement(i, "AS38623");
            // Distinct times, so the listing order is known.
            m["measurement_start_time"] =
                json!(format!("2026-11-27 10:{:02}:{:02}", i / 60, i % 60));
            if i % 10 == 0 {
                m["test_keys"]["padding"] = json!("p".repeat(512 * 1024));
            }
            store.insert("r1", &m).unwrap();
        }
    })
    .await
    .unwrap();
    let c = Collector::start(db, 0).await;
    let http = reqwest::Client::new();
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{}/api/v1/measurements.jsonl?limit=40", c.url());
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = r
            .headers()
            .get("x-next-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        pages += 1;
        assert_eq!(lines.len(), if pages < 3 { 40 } else { 15 }, "page {pages}");
        for l in lines {
            let m: Value = serde_json::from_str(l).unwrap();
            seen.push(m["input"].as_str().unwrap().to_string());
        }
        match next {
            Some(uid) => after = Some(uid),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..n)
        .map(|i| format!("https://site{i}.example/"))
        .collect();
    assert_eq!(seen, want, "every measurement once, oldest first");
    // A limit above the maximum is capped, not refused; an unknown cursor is.
    let text = http
        .get(format!(
            "{}/api/v1/measurements.jsonl?limit=999999999",
            c.url()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), n);
    let r = http
        .get(format!(
            "{}/api/v1/measurements.jsonl?after=nosuchuid",
            c.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    c.kill().await;
}

#[tokio::test]
async fn the_jsonl_listing_streams_in_pages_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    jsonl_pages(dir.path().join("c.sqlite").to_str().unwrap()).await;
}

#[tokio::test]
async fn the_jsonl_listing_streams_in_pages_in_postgres() {
    let Ok(url) = std::env::var("GATEWATCH_TEST_POSTGRES") else {
        eprintln!("postgres paging test skipped: set GATEWATCH_TEST_POSTGRES=postgres://...");
        return;
    };
    // Its own schema, so it does not race the other PostgreSQL test.
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.batch_execute("DROP SCHEMA IF EXISTS paging CASCADE; CREATE SCHEMA paging;")
            .unwrap();
    })
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    jsonl_pages(&format!("{url}{sep}options=-csearch_path%3Dpaging")).await;
}

#[tokio::test]
async fn a_garbage_start_time_or_a_missing_probe_ip_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_max_body(
        dir.path().join("c.sqlite").to_str().unwrap(),
        0,
        4 * 1024 * 1024,
    )
    .await;
    let mut up = Uploader::new(&c.url()).with_retries(1, Duration::from_millis(10));
    let mut digits = measurement(1, "AS38623");
    digits["measurement_start_time"] = json!("7".repeat(3 * 1024 * 1024));
    let mut not_a_time = measurement(2, "AS38623");
    not_a_time["measurement_start_time"] = json!("2026-11-27T10:00:00Z");
    let mut no_ip = measurement(3, "AS38623");
    no_ip.as_object_mut().unwrap().remove("probe_ip");
    for (m, reason) in [
        (digits, "measurement_start_time"),
        (not_a_time, "measurement_start_time"),
        (no_ip, "probe_ip is missing"),
    ] {
        match up.submit(&m).await {
            Err(e @ gatewatch::upload::UploadError::Refused { status: 400, .. }) => {
                let text = e.to_string();
                assert!(text.contains(reason), "{text}");
                assert!(text.len() < 400, "the refusal stays short: {text}");
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
    assert_eq!(count(&c.url()).await, 0);
    // A good one still goes in.
    up.submit(&measurement(4, "AS38623")).await.unwrap();
    assert_eq!(count(&c.url()).await, 1);
    c.kill().await;
}
