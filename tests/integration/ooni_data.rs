//! OONI's own data: the 57 real measurements of `../shared/ooni-fixtures`
//! (skipped with one line when absent) read and re-analysed, each QA
//! scenario's verdict checked against what the scenario did; our fixtures
//! of the older shapes (`tests/data/ooni`); `gatewatch analyze` on files and
//! compressed standard input; `compare` mixing OONI's files and ours; and
//! `gatewatch ooni fetch` against a loopback server replaying OONI's API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use gatewatch::analysis::Fingerprints;
use gatewatch::model::{Measurement, Verdict, VerdictStatus};
use serde_json::Value;

/// `../shared/ooni-fixtures` beside the repository, or
/// `$GATEWATCH_OONI_FIXTURES`.
fn shared_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEWATCH_OONI_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ooni-fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no OONI fixtures at {}", dir.display());
        None
    }
}

fn our_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ooni")
}

/// Runs `gatewatch analyze` (the library path) over `files`; the verdicts
/// by input file name, and the warnings.
fn analyze(files: &[PathBuf]) -> (Vec<(String, Value)>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut all = Vec::new();
    for f in files {
        out.clear();
        gatewatch::analyze::analyze_files(
            std::slice::from_ref(f),
            Fingerprints::shipped(),
            &mut |w| warnings.push(w.to_string()),
            &mut out,
        )
        .unwrap();
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        for line in String::from_utf8(out.clone()).unwrap().lines() {
            all.push((name.clone(), serde_json::from_str(line).unwrap()));
        }
    }
    (all, warnings)
}

fn verdict(v: &Value) -> Verdict {
    serde_json::from_value(v["test_keys"]["x_verdict"].clone()).unwrap()
}

/// What a QA scenario's name says happened.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Interference, at one of these layers.
    Blocked(&'static [&'static str]),
    /// The site loaded.
    Accessible,
    /// The site's own refusal (a CAPTCHA): accessible, `server_side`.
    ServerSide,
    /// Fails for the control too.
    Down,
    /// Slowed down.
    Throttled,
    /// The data cannot carry a verdict (the reason is in the table).
    Inconclusive,
}

/// Every QA scenario, what it did, and why when that needs saying.
const QA: &[(&str, Want, &str)] = &[
    (
        "badSSLWithExpiredCertificate",
        Want::Down,
        "the server's own certificate, for everyone",
    ),
    (
        "badSSLWithUnknownAuthorityWithConsistentDNS",
        Want::Down,
        "the server's own certificate",
    ),
    (
        "badSSLWithUnknownAuthorityWithInconsistentDNS",
        Want::Blocked(&["dns"]),
        "",
    ),
    (
        "badSSLWithWrongServerName",
        Want::Down,
        "the server's own certificate",
    ),
    (
        "cloudflareCAPTCHAWithHTTP",
        Want::ServerSide,
        "OONI says http-diff; the site refused",
    ),
    ("cloudflareCAPTCHAWithHTTPS", Want::ServerSide, ""),
    (
        "controlFailureWithSuccessfulHTTPSWebsite",
        Want::Accessible,
        "TLS verified for the name",
    ),
    (
        "controlFailureWithSuccessfulHTTPWebsite",
        Want::Inconclusive,
        "no control and plain HTTP: the page cannot be told from a blockpage",
    ),
    (
        "dnsBlockingAndroidDNSCacheNoData",
        Want::Blocked(&["dns"]),
        "",
    ),
    ("dnsBlockingBOGON", Want::Blocked(&["dns"]), ""),
    ("dnsBlockingNXDOMAIN", Want::Blocked(&["dns"]), ""),
    (
        "dnsHijackingToLocalhostWithHTTP",
        Want::Blocked(&["dns"]),
        "",
    ),
    (
        "dnsHijackingToLocalhostWithHTTPS",
        Want::Blocked(&["dns"]),
        "",
    ),
    (
        "dnsHijackingToProxyWithHTTPSURL",
        Want::Accessible,
        "the proxy delivers the real site (TLS verified for the name)",
    ),
    (
        "dnsHijackingToProxyWithHTTPURL",
        Want::Accessible,
        "the proxy delivers the control's page",
    ),
    ("ghostDNSBlockingWithHTTP", Want::Blocked(&["dns"]), ""),
    ("ghostDNSBlockingWithHTTPS", Want::Blocked(&["dns"]), ""),
    ("httpBlockingConnectionReset", Want::Blocked(&["http"]), ""),
    ("httpDiffWithConsistentDNS", Want::Blocked(&["http"]), ""),
    (
        "httpDiffWithInconsistentDNS",
        Want::Blocked(&["dns", "http"]),
        "",
    ),
    ("idnaWithoutCensorshipLowercase", Want::Accessible, ""),
    (
        "idnaWithoutCensorshipWithFirstLetterUppercase",
        Want::Accessible,
        "",
    ),
    ("largeFileWithHTTP", Want::Accessible, ""),
    ("largeFileWithHTTPS", Want::Accessible, ""),
    (
        "localhostWithHTTP",
        Want::Down,
        "the site's own DNS points to localhost",
    ),
    (
        "localhostWithHTTPS",
        Want::Down,
        "the site's own DNS points to localhost",
    ),
    (
        "redirectWithBrokenLocationForHTTP",
        Want::Inconclusive,
        "the site's own broken Location; OONI's control does not report its redirects, \
         so the failure cannot be shown to be everyone's: never blocked",
    ),
    (
        "redirectWithBrokenLocationForHTTPS",
        Want::Inconclusive,
        "as for HTTP",
    ),
    (
        "redirectWithConsistentDNSAndThenConnectionRefusedForHTTP",
        Want::Blocked(&["tcp_ip"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS",
        Want::Blocked(&["tcp_ip"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenConnectionResetForHTTP",
        Want::Blocked(&["http"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenConnectionResetForHTTPS",
        Want::Blocked(&["tls"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenEOFForHTTP",
        Want::Blocked(&["http"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenEOFForHTTPS",
        Want::Blocked(&["tls"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenNXDOMAIN",
        Want::Blocked(&["dns"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenTimeoutForHTTP",
        Want::Blocked(&["http"]),
        "",
    ),
    (
        "redirectWithConsistentDNSAndThenTimeoutForHTTPS",
        Want::Blocked(&["tls"]),
        "",
    ),
    (
        "redirectWithMoreThanTenRedirectsAndHTTP",
        Want::Down,
        "fails for the control too",
    ),
    (
        "redirectWithMoreThanTenRedirectsAndHTTPS",
        Want::Down,
        "fails for the control too",
    ),
    ("successWithHTTP", Want::Accessible, ""),
    ("successWithHTTPS", Want::Accessible, ""),
    ("tcpBlockingConnectTimeout", Want::Blocked(&["tcp_ip"]), ""),
    (
        "tcpBlockingConnectionRefusedWithInconsistentDNS",
        Want::Blocked(&["dns", "tcp_ip"]),
        "",
    ),
    (
        "throttlingWithHTTP",
        Want::Throttled,
        "headers arrived, the 16 MiB body timed out while the control fetched it",
    ),
    ("throttlingWithHTTPS", Want::Throttled, "as for HTTP"),
    (
        "tlsBlockingConnectionResetWithConsistentDNS",
        Want::Blocked(&["tls"]),
        "",
    ),
    (
        "tlsBlockingConnectionResetWithInconsistentDNS",
        Want::Blocked(&["dns", "tls"]),
        "",
    ),
    ("websiteDownNXDOMAIN", Want::Down, ""),
    ("websiteDownNoAddrs", Want::Down, ""),
    ("websiteDownTCPConnect", Want::Down, ""),
];

fn matches(want: Want, v: &Verdict) -> bool {
    let status = v.status;
    match want {
        Want::Blocked(layers) => {
            status == VerdictStatus::Blocked
                && v.layer.as_deref().is_some_and(|l| layers.contains(&l))
        }
        Want::Accessible => status == VerdictStatus::Accessible && v.mechanism.is_none(),
        Want::ServerSide => {
            status == VerdictStatus::Accessible && v.mechanism.as_deref() == Some("server_side")
        }
        Want::Down => status == VerdictStatus::Down,
        Want::Throttled => status == VerdictStatus::Throttled,
        Want::Inconclusive => status == VerdictStatus::Inconclusive,
    }
}

#[test]
fn every_real_ooni_measurement_is_read_and_qa_verdicts_match_the_scenarios() {
    let Some(dir) = shared_fixtures() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 57, "the fixtures' README says 57 measurements");
    let (all, warnings) = analyze(&files);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(all.len(), 57, "every measurement is read");
    let by_name: BTreeMap<&str, &Value> = all.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut wrong = Vec::new();
    let mut qa = 0;
    for (scenario, want, why) in QA {
        let name = format!("qa-{scenario}");
        let v = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} missing"));
        qa += 1;
        let got = verdict(v);
        assert!(
            !got.evidence.is_empty(),
            "{name}: a verdict without evidence"
        );
        assert!(
            got.evidence
                .iter()
                .any(|e| e.starts_with("Re-analysed from ooniprobe")),
            "{name}: the evidence says what OONI's data cannot support"
        );
        if !matches(*want, &got) {
            wrong.push(format!(
                "{scenario}: want {want:?} ({why}), got {} {:?} {:?}: {:?}",
                got.status.as_str(),
                got.layer,
                got.mechanism,
                got.evidence
            ));
        }
    }
    assert_eq!(qa, 50);
    assert!(
        wrong.is_empty(),
        "{} of 50 wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // OONI's keys are kept as OONI wrote them.
    let captcha = by_name["qa-cloudflareCAPTCHAWithHTTP"];
    assert_eq!(captcha["test_keys"]["blocking"], "http-diff");
    assert!(
        captcha["test_keys"]["x_conn_priority_log"].is_array()
            || captcha["test_keys"]["x_conn_priority_log"].is_null()
    );
    // The real-network ones are read and get a verdict with evidence.
    for (n, v) in &all {
        if n.starts_with("real-") {
            assert!(!verdict(v).evidence.is_empty(), "{n}");
        }
    }
}

#[test]
fn older_web_connectivity_versions_are_read_and_analysed() {
    let dir = our_fixtures();
    let files = vec![
        dir.join("wc-0.1-ooniprobe2-dns.json"),
        dir.join("wc-0.2-mk-base64.jsonl"),
        dir.join("wc-0.4-go-tls.json"),
        dir.join("wc-test-keys-null.json"),
    ];
    let (all, warnings) = analyze(&files);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let got: Vec<(String, String, Option<String>)> = all
        .iter()
        .map(|(_, v)| {
            let vd = verdict(v);
            (
                v["input"].as_str().unwrap().to_string(),
                vd.status.as_str().to_string(),
                vd.mechanism,
            )
        })
        .collect();
    let want =
        |u: &str, s: &str, m: Option<&str>| (u.to_string(), s.to_string(), m.map(str::to_string));
    assert_eq!(
        got,
        vec![
            want("http://news.example/", "blocked", Some("dns.bogon")),
            want("http://shop.example/", "accessible", None),
            want("http://forum.example/", "blocked", Some("tcp.timeout")),
            want("https://video.example/", "blocked", Some("tls.reset")),
            want("http://blog.example/", "inconclusive", None),
        ]
    );
    // The 0.1 shape had no resolver engine: the evidence says so.
    let old = verdict(&all[0].1);
    assert!(
        old.evidence
            .iter()
            .any(|e| e.contains("did not record which resolver answered")),
        "{:?}",
        old.evidence
    );
    // A measurement-kit base64 body and header value were decoded: the
    // title was found in the body.
    assert!(
        verdict(&all[1].1)
            .evidence
            .iter()
            .any(|e| e.contains("Shop ខ្មែរ")),
        "{:?}",
        verdict(&all[1].1).evidence
    );
}

fn gatewatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatewatch"))
}

#[test]
fn analyze_command_keeps_ooni_keys_reads_gzip_stdin_and_writes_a_file() {
    let dir = our_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.jsonl");
    let jsonl = std::fs::read(dir.join("wc-0.2-mk-base64.jsonl")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&jsonl).unwrap();
    let gz = gz.finish().unwrap();
    let mut child = gatewatch()
        .arg("analyze")
        .arg(dir.join("wc-0.1-ooniprobe2-dns.json"))
        .arg("-")
        .arg("-o")
        .arg(&out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    // OONI's keys as OONI wrote them, ours added.
    let first = &lines[0];
    assert_eq!(first["options"], serde_json::json!(["-f", "urls.txt"]));
    assert_eq!(first["test_keys"]["blocking"], "dns");
    assert_eq!(first["test_keys"]["client_resolver"], "192.0.2.53");
    assert_eq!(first["test_keys"]["x_verdict"]["status"], "blocked");
    assert_eq!(first["test_keys"]["x_verdict"]["nig_article6"], "block");
    assert_eq!(
        lines[2]["test_keys"]["x_verdict"]["mechanism"],
        "tcp.timeout"
    );
    // What analyze wrote is read back by every command as ours.
    let mut n = 0;
    gatewatch::results::read_file(&out, &mut |w| panic!("{w}"), &mut |m: Measurement| {
        assert!(m.test_keys.x_verdict.is_some());
        n += 1;
    })
    .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn a_mostly_unusable_input_fails_the_command_with_a_closing_note() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("mixed.jsonl");
    let good = std::fs::read_to_string(our_fixtures().join("wc-0.2-mk-base64.jsonl")).unwrap();
    let good = good.lines().next().unwrap();
    std::fs::write(
        &f,
        format!("{good}\n{{\"test_name\":\"dnscheck\",\"test_keys\":{{}}}}\nnot json\n"),
    )
    .unwrap();
    for cmd in ["analyze", "compare"] {
        let res = gatewatch().arg(cmd).arg(&f).output().unwrap();
        assert_eq!(res.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&res.stderr);
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.ends_with("2 of 3 records skipped: more than half of this input is not usable Web Connectivity data"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("mixed.jsonl:2: test_name is \"dnscheck\""),
            "{err}"
        );
    }
}

/// One of our measurements (as `run` writes them) for `url` at AS38623.
fn ours(url: &str, network: Option<&str>) -> String {
    let mut m = Measurement {
        input: Some(url.into()),
        probe_asn: "AS38623".into(),
        probe_cc: "KH".into(),
        probe_network_name: network.map(str::to_string),
        software_name: gatewatch::model::SOFTWARE_NAME.into(),
        test_name: gatewatch::model::TEST_NAME.into(),
        measurement_start_time: "2026-12-01 10:00:00".into(),
        ..Measurement::default()
    };
    m.test_keys.x_verdict = Some(Verdict {
        status: VerdictStatus::Blocked,
        layer: Some("dns".into()),
        mechanism: Some("dns.bogon".into()),
        confidence: Some("likely".into()),
        nig_article6: Some("block".into()),
        evidence: vec!["lab".into()],
        ..Verdict::default()
    });
    serde_json::to_string(&m).unwrap()
}

#[test]
fn compare_mixes_ooni_files_and_ours_one_vantage_point_per_network() {
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("ours.jsonl");
    std::fs::write(
        &mine,
        format!(
            "{}\n{}\n",
            ours("http://news.example/", Some("Metfone")),
            ours("http://other.example/", None)
        ),
    )
    .unwrap();
    let dir = our_fixtures();
    // OONI's 2017 file has no probe_network_name, ours has one: same ASN,
    // one vantage point.
    let files = vec![dir.join("wc-0.1-ooniprobe2-dns.json"), mine.clone()];
    let report = gatewatch::compare::load(&files, &[], &mut |w| panic!("{w}")).unwrap();
    assert_eq!(
        report.vantage_points.len(),
        1,
        "{:?}",
        report.vantage_points
    );
    assert_eq!(report.vantage_points[0].label, "AS38623 KH Metfone");
    assert_eq!(report.inputs.measurements, 3);
    // OONI's measurement is classified by our analysis (mechanism, article 6).
    let json = serde_json::to_value(&report).unwrap().to_string();
    assert!(json.contains("dns.bogon"), "{json}");
    assert!(
        !json.contains("ooni:dns"),
        "OONI's label is not used: {json}"
    );
    // --label keeps one vantage point per file.
    let labels = vec!["OONI 2017".to_string(), "gatewatch 2026".to_string()];
    let report = gatewatch::compare::load(&files, &labels, &mut |w| panic!("{w}")).unwrap();
    assert_eq!(report.vantage_points.len(), 2);
}

// ------------------------------------------------------------ ooni fetch --

/// A loopback server replaying OONI's API: two list pages (the first with a
/// `next_url` continuation), raw measurements by uid (one lost: `{}`).
struct FakeApi {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn fake_api() -> FakeApi {
    use axum::extract::{Query, State};
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    #[derive(Clone)]
    struct St {
        base: String,
        requests: Arc<Mutex<Vec<String>>>,
        bodies: Arc<BTreeMap<String, String>>,
    }
    let fixture = std::fs::read_to_string(our_fixtures().join("wc-0.2-mk-base64.jsonl")).unwrap();
    let lines: Vec<&str> = fixture.lines().collect();
    let mut bodies = BTreeMap::new();
    bodies.insert("uid-1".to_string(), lines[0].to_string());
    bodies.insert("uid-2".to_string(), lines[1].to_string());
    bodies.insert(
        "uid-3".to_string(),
        std::fs::read_to_string(our_fixtures().join("wc-0.4-go-tls.json")).unwrap(),
    );
    bodies.insert("uid-lost".to_string(), "{}".to_string());
    let st = St {
        base: base.clone(),
        requests: requests.clone(),
        bodies: Arc::new(bodies),
    };
    async fn list(
        State(st): State<St>,
        Query(q): Query<BTreeMap<String, String>>,
        uri: axum::http::Uri,
    ) -> axum::Json<Value> {
        st.requests.lock().unwrap().push(uri.to_string());
        let entry = |uid: &str, report: &str, input: &str| {
            serde_json::json!({"measurement_uid": uid, "report_id": report, "input": input,
                "probe_cc": "KH", "probe_asn": "AS38623", "test_name": "web_connectivity",
                "anomaly": false, "measurement_url": format!("{}/api/v1/raw_measurement?measurement_uid={uid}", st.base)})
        };
        let mk = "20180601T075959Z_AS38623_mk00000000000000000000000000000000000000000000000";
        if q.contains_key("cont") {
            axum::Json(serde_json::json!({
                "metadata": {"count": -1, "next_url": null},
                "results": [entry("uid-3", "20210401T115959Z_webconnectivity_KH_38623_n1_go04000000000000", "https://video.example/")]
            }))
        } else {
            let next = format!(
                "{}/api/v1/measurements?{}&cont=20180601075959-uid-lost",
                st.base,
                uri.query().unwrap_or("")
            );
            axum::Json(serde_json::json!({
                "metadata": {"count": -1, "next_url": next},
                "results": [entry("uid-1", mk, "http://shop.example/"),
                            entry("uid-2", mk, "http://forum.example/"),
                            entry("uid-lost", "lost", "http://lost.example/")]
            }))
        }
    }
    async fn raw(
        State(st): State<St>,
        Query(q): Query<BTreeMap<String, String>>,
        uri: axum::http::Uri,
    ) -> String {
        st.requests.lock().unwrap().push(uri.to_string());
        let uid = q.get("measurement_uid").cloned().unwrap_or_default();
        st.bodies.get(&uid).cloned().unwrap_or_else(|| "{}".into())
    }
    let app = axum::Router::new()
        .route("/api/v1/measurements", get(list))
        .route("/api/v1/raw_measurement", get(raw))
        .with_state(st);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeApi { base, requests }
}

fn fetch_args(api: &str, out: &Path) -> gatewatch::ooni::fetch::FetchArgs {
    gatewatch::ooni::fetch::FetchArgs {
        cc: "kh".into(),
        asn: Some("AS38623".into()),
        since: Some("2018-01-01".into()),
        until: Some("2021-06-01".into()),
        domain: None,
        output: Some(out.to_path_buf()),
        max: None,
        delay: std::time::Duration::from_millis(1),
        page_size: 3,
        api: api.into(),
    }
}

#[tokio::test]
async fn ooni_fetch_follows_pages_downloads_each_measurement_and_resumes() {
    use gatewatch::ooni::fetch::{fetch, FetchStats};
    let api = fake_api().await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("kh.jsonl");
    let args = fetch_args(&api.base, &out);
    let hidden = indicatif::ProgressDrawTarget::hidden;
    let stats = fetch(&args, &out, hidden()).await.unwrap();
    assert_eq!(
        stats,
        FetchStats {
            listed: 4,
            written: 3,
            already_had: 0,
            missing: 1
        }
    );
    let reqs = api.requests.lock().unwrap().clone();
    assert!(
        reqs[0].starts_with("/api/v1/measurements?test_name=web_connectivity&probe_cc=KH&probe_asn=AS38623&since=2018-01-01&until=2021-06-01&order=desc&limit=3"),
        "{reqs:?}"
    );
    assert_eq!(reqs[1], "/api/v1/raw_measurement?measurement_uid=uid-1");
    assert!(
        reqs[4].contains("cont="),
        "the next page comes from next_url: {reqs:?}"
    );
    // The file is read by every command: three measurements.
    let (all, warnings) = analyze(std::slice::from_ref(&out));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(all.len(), 3);

    // Interrupted mid-line: the partial line is dropped, nothing is
    // downloaded twice, the missing one is fetched again.
    let text = std::fs::read_to_string(&out).unwrap();
    let keep: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(
        &out,
        format!("{}\n{}", keep.join("\n"), "{\"input\":\"https://vid"),
    )
    .unwrap();
    api.requests.lock().unwrap().clear();
    let stats = fetch(&args, &out, hidden()).await.unwrap();
    assert_eq!((stats.written, stats.already_had, stats.missing), (1, 2, 1));
    let reqs = api.requests.lock().unwrap().clone();
    assert!(
        !reqs
            .iter()
            .any(|r| r.contains("uid-1") || r.contains("uid-2")),
        "{reqs:?}"
    );
    let (all, warnings) = analyze(std::slice::from_ref(&out));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn ooni_fetch_offline_is_a_clear_error_and_bad_flags_are_refused() {
    use gatewatch::ooni::fetch::fetch;
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("kh.jsonl");
    let e = fetch(
        &fetch_args(&api, &out),
        &out,
        indicatif::ProgressDrawTarget::hidden(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("cannot reach OONI's API at http://127.0.0.1:"),
        "{e}"
    );
    assert!(e.contains("are you offline?"), "{e}");
    let mut bad = fetch_args(&api, &out);
    bad.since = Some("last week".into());
    let e = fetch(&bad, &out, indicatif::ProgressDrawTarget::hidden())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--since \"last week\": give a day as YYYY-MM-DD");
}

#[test]
fn history_imports_ooni_files_and_ours_once_as_one_network() {
    use gatewatch::history::{import, HistoryDb};
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("ours.jsonl");
    std::fs::write(
        &mine,
        format!("{}\n", ours("http://news.example/", Some("Metfone"))),
    )
    .unwrap();
    let files = vec![our_fixtures().join("wc-0.1-ooniprobe2-dns.json"), mine];
    let db = HistoryDb::open(&tmp.path().join("h.sqlite")).unwrap();
    let (added, stats) = import(&db, &files).unwrap();
    assert_eq!((added, stats.measurements), (2, 2));
    let (added, _) = import(&db, &files).unwrap();
    assert_eq!(added, 0, "importing twice adds nothing");
    let eps = db.episodes(Some("http://news.example/"), None).unwrap();
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0].vantage, "AS38623 (KH, Metfone)");
    assert_eq!(eps[0].started, "2017-03-01 10:00:00");
    assert_eq!(eps[0].last_seen, "2026-12-01 10:00:00");
    assert_eq!(eps[0].mechanisms, vec!["dns.bogon".to_string()]);
    assert_eq!(eps[0].measurements, 2);
}
