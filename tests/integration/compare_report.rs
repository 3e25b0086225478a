//! `gatewatch compare` and `gatewatch report` on synthetic vantage-point
//! files built with the model types: exact Jaccard values, shared
//! artifacts, attribution leanings, malformed-line warnings, HTML escaping,
//! and the page rendered in headless Chromium (skipped when absent).

use std::path::{Path, PathBuf};
use std::process::Command;

use gatewatch::compare::artifacts::ArtifactKind;
use gatewatch::compare::attribution::Leaning;
use gatewatch::compare::{self, CompareReport};
use gatewatch::control::protocol::ControlResponse;
use gatewatch::model::{Measurement, Verdict, VerdictStatus, WebTestKeys};
use probes::records::{DnsAnswer, DnsQuery, TlsHandshake};
use probes::Failure;

/// What one synthetic measurement shows.
enum Seen {
    Ok,
    /// The system resolver answered this IP; DoH answered like the control.
    Sinkhole(&'static str),
    /// The TLS handshake was reset.
    Reset,
}

fn measurement(asn: &str, net: &str, url: &str, time: &str, seen: Seen) -> Measurement {
    let host = url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let control_ip = "203.0.113.10";
    let query = |engine: &str, resolver: &str, ip: &str| DnsQuery {
        answers: vec![DnsAnswer {
            answer_type: "A".to_string(),
            ipv4: Some(ip.to_string()),
            ..DnsAnswer::default()
        }],
        engine: engine.to_string(),
        hostname: host.clone(),
        query_type: "A".to_string(),
        resolver_address: resolver.to_string(),
        ..DnsQuery::default()
    };
    let mut control = ControlResponse::default();
    control.dns.addrs = vec![control_ip.to_string()];
    let mut tk = WebTestKeys {
        control: Some(control),
        ..WebTestKeys::default()
    };
    let verdict = match seen {
        Seen::Ok => {
            tk.queries = vec![query("getaddrinfo", "", control_ip)];
            Verdict {
                status: VerdictStatus::Accessible,
                ..Verdict::default()
            }
        }
        Seen::Sinkhole(ip) => {
            tk.queries = vec![
                query("getaddrinfo", "", ip),
                query("doh", "https://doh.example/dns-query", control_ip),
            ];
            Verdict {
                status: VerdictStatus::Blocked,
                layer: Some("dns".to_string()),
                mechanism: Some("dns.sinkhole".to_string()),
                confidence: Some("likely".to_string()),
                nig_article6: Some("block".to_string()),
                evidence: vec![format!(
                    "The system resolver answered {ip}; the control resolved {control_ip}."
                )],
                ..Verdict::default()
            }
        }
        Seen::Reset => {
            tk.queries = vec![query("getaddrinfo", "", control_ip)];
            tk.tls_handshakes = vec![TlsHandshake {
                address: format!("{control_ip}:443"),
                server_name: host.clone(),
                failure: Some(Failure::ConnectionReset),
                ..TlsHandshake::default()
            }];
            tk.x_trace = Some(serde_json::json!({"findings": [{
                "trigger": "tls_client_hello", "name": host, "destination": format!("{control_ip}:443"),
                "first_hop": 2, "hop_address": "198.51.100.2", "previous_hop_address": "198.51.100.1",
                "kind": "rst", "path": "in_path", "detail": "RST at TTL 2"}]}));
            Verdict {
                status: VerdictStatus::Blocked,
                layer: Some("tls".to_string()),
                mechanism: Some("tls.reset".to_string()),
                confidence: Some("likely".to_string()),
                nig_article6: Some("disconnect".to_string()),
                evidence: vec!["The TLS handshake was reset after the ClientHello.".to_string()],
                ..Verdict::default()
            }
        }
    };
    tk.x_verdict = Some(verdict);
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("category_code".to_string(), "NEWS".to_string());
    Measurement {
        annotations,
        data_format_version: "0.2.0".to_string(),
        input: Some(url.to_string()),
        measurement_start_time: time.to_string(),
        probe_asn: asn.to_string(),
        probe_cc: "KH".to_string(),
        probe_ip: "127.0.0.1".to_string(),
        probe_network_name: Some(net.to_string()),
        software_name: "gatewatch".to_string(),
        software_version: "0.1.0".to_string(),
        test_keys: tk,
        test_name: "web_connectivity".to_string(),
        test_start_time: time.to_string(),
        test_version: "0.5.28-gatewatch.1".to_string(),
        ..Measurement::default()
    }
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").expect("write fixture");
    p
}

fn json(m: &Measurement) -> String {
    serde_json::to_string(m).expect("serialise")
}

const U1: &str = "https://u1.example/";
const U2: &str = "https://u2.example/";
const U3: &str = "https://u3.example/";
const U4: &str = "https://u4.example/";

/// Three vantage points: A and B sinkhole to the same 10.10.10.1 (A blocks
/// u1 u2 u4, B blocks u1 u2 u3), C resets TLS for u1 only. A saw u1
/// accessible at 09:00 and blocked from 10:05; B blocked it from 10:40.
/// A's file holds two malformed lines.
fn fixture(dir: &Path) -> Vec<PathBuf> {
    let (a, b, c) = (
        ("AS64500", "NetA"),
        ("AS64501", "NetB"),
        ("AS64502", "NetC"),
    );
    let m = |vp: (&str, &str), url, time, seen| json(&measurement(vp.0, vp.1, url, time, seen));
    let fa = write_lines(
        dir,
        "a.jsonl",
        &[
            m(a, U1, "2026-07-01 09:00:00", Seen::Ok),
            m(a, U1, "2026-07-01 10:05:00", Seen::Sinkhole("10.10.10.1")),
            "{not json".to_string(),
            m(a, U2, "2026-07-01 10:06:00", Seen::Sinkhole("10.10.10.1")),
            "{\"input\": 5}".to_string(),
            m(a, U3, "2026-07-01 10:07:00", Seen::Ok),
            String::new(),
            m(a, U4, "2026-07-01 10:08:00", Seen::Sinkhole("10.10.10.1")),
        ],
    );
    let fb = write_lines(
        dir,
        "b.jsonl",
        &[
            m(b, U1, "2026-07-01 09:10:00", Seen::Ok),
            m(b, U1, "2026-07-01 10:40:00", Seen::Sinkhole("10.10.10.1")),
            m(b, U2, "2026-07-01 10:41:00", Seen::Sinkhole("10.10.10.1")),
            m(b, U3, "2026-07-01 10:42:00", Seen::Sinkhole("10.10.10.1")),
            m(b, U4, "2026-07-01 10:43:00", Seen::Ok),
        ],
    );
    let fc = write_lines(
        dir,
        "c.jsonl",
        &[
            m(c, U1, "2026-07-02 08:00:00", Seen::Reset),
            m(c, U2, "2026-07-02 08:01:00", Seen::Ok),
            m(c, U3, "2026-07-02 08:02:00", Seen::Ok),
            m(c, U4, "2026-07-02 08:03:00", Seen::Ok),
        ],
    );
    vec![fa, fb, fc]
}

fn load(files: &[PathBuf], labels: &[String]) -> (CompareReport, Vec<String>) {
    let mut warnings = Vec::new();
    let r = compare::load(files, labels, &mut |w| warnings.push(w.to_string())).expect("load");
    (r, warnings)
}

fn jaccard(r: &CompareReport, a: &str, b: &str) -> Option<f64> {
    r.jaccard
        .iter()
        .find(|j| j.a == a && j.b == b)
        .unwrap_or_else(|| panic!("no pair {a} {b}"))
        .jaccard
}

fn leaning(r: &CompareReport, id: &str) -> Leaning {
    r.attribution
        .criteria
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no criterion {id}"))
        .leaning
}

#[test]
fn compare_groups_by_network_and_finds_shared_artifacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = fixture(dir.path());
    let (r, warnings) = load(&files, &[]);

    let fa = files[0].display().to_string();
    assert_eq!(
        warnings,
        vec![
            format!("{fa}:3: invalid JSON: key must be a string (column 2)"),
            format!(
                "{fa}:5: not a measurement: input: invalid type: integer `5`, expected a string"
            ),
        ]
    );
    assert_eq!(
        (
            r.inputs.lines,
            r.inputs.measurements,
            r.inputs.skipped_lines
        ),
        (17, 14, 2)
    );

    let labels: Vec<&str> = r.vantage_points.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(
        labels,
        ["AS64500 KH NetA", "AS64501 KH NetB", "AS64502 KH NetC"]
    );
    let blocked: Vec<usize> = r.vantage_points.iter().map(|v| v.blocked_urls).collect();
    assert_eq!(blocked, [3, 3, 1]);

    assert_eq!(jaccard(&r, "AS64500 KH NetA", "AS64501 KH NetB"), Some(0.5));
    assert_eq!(
        jaccard(&r, "AS64500 KH NetA", "AS64502 KH NetC"),
        Some(1.0 / 3.0)
    );
    assert_eq!(
        jaccard(&r, "AS64501 KH NetB", "AS64502 KH NetC"),
        Some(1.0 / 3.0)
    );

    // Shared: the sinkhole at A and B; C's reset and hop are its own.
    let shared: Vec<(ArtifactKind, &str, Vec<&str>)> = r
        .artifacts
        .iter()
        .filter(|a| a.seen_at.len() >= 2)
        .map(|a| {
            (
                a.kind,
                a.value.as_str(),
                a.seen_at.iter().map(|s| s.vantage.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        shared,
        vec![(
            ArtifactKind::SinkholeIp,
            "10.10.10.1",
            vec!["AS64500 KH NetA", "AS64501 KH NetB"]
        )]
    );
    let sink = &r.artifacts[0];
    assert_eq!(sink.details, vec!["system resolver".to_string()]);
    assert_eq!(
        sink.seen_at.iter().map(|s| s.urls).collect::<Vec<_>>(),
        [3, 3]
    );
    let single: Vec<(ArtifactKind, &str)> = r
        .artifacts
        .iter()
        .filter(|a| a.seen_at.len() == 1)
        .map(|a| (a.kind, a.value.as_str()))
        .collect();
    assert_eq!(
        single,
        vec![
            (ArtifactKind::Reset, "tls_handshake:connection_reset"),
            (ArtifactKind::InterferingHop, "198.51.100.2"),
        ]
    );

    // First seen: u1 at A 10:05 (after an accessible 09:00), B 10:40, C 08:00 next day.
    let u1 = r
        .first_seen
        .iter()
        .find(|f| f.url == U1)
        .expect("u1 first seen");
    let seen: Vec<(&str, &str, bool)> = u1
        .seen
        .iter()
        .map(|s| {
            (
                s.vantage.as_str(),
                s.first_blocked.as_str(),
                s.onset_observed,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("AS64500 KH NetA", "2026-07-01 10:05:00", true),
            ("AS64501 KH NetB", "2026-07-01 10:40:00", true),
            ("AS64502 KH NetC", "2026-07-02 08:00:00", false),
        ]
    );
    assert_eq!(u1.spread_seconds, Some(21 * 3600 + 55 * 60));

    // The matrix: u1 is blocked at all three, with each mechanism.
    let row = r.urls.iter().find(|u| u.url == U1).expect("u1 row");
    assert_eq!(row.blocked_at, 3);
    let cells: Vec<(&str, VerdictStatus, Option<&str>, u64, u64)> = row
        .cells
        .iter()
        .map(|c| {
            (
                c.vantage.as_str(),
                c.latest_status,
                c.latest_mechanism.as_deref(),
                c.blocked,
                c.measurements,
            )
        })
        .collect();
    assert_eq!(
        cells,
        vec![
            (
                "AS64500 KH NetA",
                VerdictStatus::Blocked,
                Some("dns.sinkhole"),
                1,
                2
            ),
            (
                "AS64501 KH NetB",
                VerdictStatus::Blocked,
                Some("dns.sinkhole"),
                1,
                2
            ),
            (
                "AS64502 KH NetC",
                VerdictStatus::Blocked,
                Some("tls.reset"),
                1,
                1
            ),
        ]
    );

    // Resolver independence: A and B's sinkholes vanish with DoH.
    let a = &r.vantage_points[0].resolvers;
    assert_eq!(
        (
            a.dns_anomalies,
            a.system_only,
            a.also_public,
            a.other_layers
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(r.vantage_points[2].resolvers.other_layers, 1);

    assert_eq!(leaning(&r, "blocklist_consistency"), Leaning::Mixed);
    assert_eq!(leaning(&r, "mechanism_uniformity"), Leaning::Isp);
    assert_eq!(leaning(&r, "identical_artifacts"), Leaning::Mixed);
    assert_eq!(leaning(&r, "resolver_independence"), Leaning::Isp);
    assert_eq!(leaning(&r, "hop_location"), Leaning::Inconclusive);
    // u1's onsets at A and B (both after an accessible measurement) are
    // 35 minutes apart; C was blocked from its first measurement.
    assert_eq!(leaning(&r, "onset_timing"), Leaning::Gateway);
    let onset = &r
        .attribution
        .criteria
        .iter()
        .find(|c| c.id == "onset_timing")
        .expect("criterion")
        .evidence;
    assert_eq!(
        onset[0],
        "1 URL(s) first seen blocked within the same hour (at most 35 minutes apart) at every \
         vantage point where an accessible measurement came first, e.g. https://u1.example/."
    );
    assert_eq!(leaning(&r, "throttle_rate"), Leaning::NotMeasured);
    let evidence = &r
        .attribution
        .criteria
        .iter()
        .find(|c| c.id == "identical_artifacts")
        .expect("criterion")
        .evidence;
    assert_eq!(
        evidence[0],
        "sinkhole IP 10.10.10.1 (system resolver) seen at 2 vantage points (AS64500 KH NetA, AS64501 KH NetB), up to 3 URL(s) each."
    );

    // Text and JSON carry the same facts.
    let text = compare::text::render(&r);
    assert!(
        text.contains(
            "  AS64500 KH NetA  AS64501 KH NetB  4            3          3          2     0.50\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("2. Mechanism uniformity — consistent with ISP-level blocking"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::to_value(&r).expect("json");
    assert_eq!(v["jaccard"][0]["jaccard"], serde_json::json!(0.5));
    assert_eq!(v["artifacts"][0]["kind"], "sinkhole_ip");
    assert_eq!(v["attribution"]["criteria"][1]["leaning"], "isp");
}

#[test]
fn compare_by_label_groups_by_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let same = |url, time, seen| json(&measurement("AS64500", "NetA", url, time, seen));
    let f1 = write_lines(
        dir.path(),
        "phnom-penh.jsonl",
        &[
            same(U1, "2026-07-01 10:00:00", Seen::Sinkhole("36.37.242.94")),
            same(U2, "2026-07-01 10:01:00", Seen::Ok),
        ],
    );
    let f2 = write_lines(
        dir.path(),
        "siem-reap.jsonl",
        &[
            same(U1, "2026-07-01 10:20:00", Seen::Sinkhole("36.37.242.94")),
            same(U2, "2026-07-01 10:21:00", Seen::Sinkhole("36.37.242.94")),
        ],
    );
    let labels = vec!["Phnom Penh".to_string(), "Siem Reap".to_string()];
    let (r, warnings) = load(&[f1.clone(), f2.clone()], &labels);
    assert!(warnings.is_empty(), "{warnings:?}");
    let got: Vec<&str> = r.vantage_points.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(got, ["Phnom Penh", "Siem Reap"]);
    assert_eq!(jaccard(&r, "Phnom Penh", "Siem Reap"), Some(0.5));
    assert_eq!(r.artifacts.len(), 1);
    assert_eq!(r.artifacts[0].value, "36.37.242.94");
    assert_eq!(r.artifacts[0].seen_at.len(), 2);
    assert_eq!(leaning(&r, "identical_artifacts"), Leaning::Gateway);
    assert_eq!(leaning(&r, "mechanism_uniformity"), Leaning::Gateway);
    // Onsets not observed (blocked from the first measurement at each).
    assert_eq!(leaning(&r, "onset_timing"), Leaning::Inconclusive);

    let err = compare::load(&[f1, f2], &labels[..1], &mut |_| {}).expect_err("label count");
    assert_eq!(
        err.to_string(),
        "--label was given 1 time(s) for 2 file(s): give one label per file, in file order"
    );
}

#[test]
fn same_reset_and_hop_at_two_networks_are_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f1 = write_lines(
        dir.path(),
        "x.jsonl",
        &[json(&measurement(
            "AS64510",
            "NetX",
            U1,
            "2026-07-03 10:00:00",
            Seen::Reset,
        ))],
    );
    let f2 = write_lines(
        dir.path(),
        "y.jsonl",
        &[json(&measurement(
            "AS64511",
            "NetY",
            U1,
            "2026-07-03 10:30:00",
            Seen::Reset,
        ))],
    );
    let (r, _) = load(&[f1, f2], &[]);
    let shared: Vec<(ArtifactKind, &str, usize)> = r
        .artifacts
        .iter()
        .map(|a| (a.kind, a.value.as_str(), a.seen_at.len()))
        .collect();
    assert_eq!(
        shared,
        vec![
            (ArtifactKind::Reset, "tls_handshake:connection_reset", 2),
            (ArtifactKind::InterferingHop, "198.51.100.2", 2),
        ]
    );
    assert_eq!(
        r.artifacts[1].details,
        vec!["hop 2, rst, in_path, tls_client_hello".to_string()]
    );
    assert_eq!(jaccard(&r, "AS64510 KH NetX", "AS64511 KH NetY"), Some(1.0));
    for id in [
        "blocklist_consistency",
        "mechanism_uniformity",
        "identical_artifacts",
        "hop_location",
    ] {
        assert_eq!(leaning(&r, id), Leaning::Gateway, "{id}");
    }
    assert_eq!(leaning(&r, "resolver_independence"), Leaning::Inconclusive);
}

#[test]
fn missing_file_and_empty_input_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    let err = compare::load(std::slice::from_ref(&missing), &[], &mut |_| {}).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot open {}:", missing.display())),
        "{err}"
    );
    let junk = write_lines(dir.path(), "junk.jsonl", &["[1,2]".to_string()]);
    let mut warnings = Vec::new();
    let err = compare::load(std::slice::from_ref(&junk), &[], &mut |w| {
        warnings.push(w.to_string())
    })
    .expect_err("empty");
    assert_eq!(
        err.to_string(),
        format!("no measurement could be read from {}", junk.display())
    );
    assert_eq!(
        warnings,
        vec![
            format!(
                "{}:1: [0]: not a measurement: invalid type: integer `1`, expected struct Measurement",
                junk.display()
            ),
            format!(
                "{}:1: [1]: not a measurement: invalid type: integer `2`, expected struct Measurement",
                junk.display()
            ),
            format!(
                "{}: 2 of 2 records skipped: more than half of this input is not usable Web \
                 Connectivity data",
                junk.display()
            ),
        ]
    );
}

/// A fixture with hostile strings where measurements carry text.
fn hostile_fixture(dir: &Path) -> Vec<PathBuf> {
    let mut files = fixture(dir);
    let mut m = measurement(
        "AS64502",
        "NetC<b>",
        "https://evil.example/\"><script>alert(1)</script>",
        "2026-07-02 09:00:00",
        Seen::Sinkhole("10.10.10.1"),
    );
    if let Some(v) = m.test_keys.x_verdict.as_mut() {
        v.evidence = vec![
            "\"><img src=x onerror=alert(2)> & </ul></details><style>body{display:none}</style>"
                .to_string(),
        ];
        v.mechanism = Some("dns.sinkhole<svg onload=alert(3)>".to_string());
    }
    m.annotations
        .insert("category_code".to_string(), "<iframe src=//x>".to_string());
    files.push(write_lines(dir, "d.jsonl", &[json(&m)]));
    files
}

#[test]
fn report_escapes_measurement_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = hostile_fixture(dir.path());
    let html = gatewatch::report::render_files(&files, &[], "Cambodia <test>", &mut |_| {})
        .expect("render");
    for bad in [
        "<script",
        "<img",
        "<iframe",
        "<svg onload",
        "<style>body",
        "NetC<b>",
        "<test>",
    ] {
        assert!(!html.contains(bad), "unescaped {bad}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt; &amp; &lt;/ul&gt;"));
    assert!(html.contains("<title>Cambodia &lt;test&gt;</title>"));
    assert!(!html.contains("<script"), "the page carries no script");
    assert!(
        !html.contains("http://") && !html.contains("src=\""),
        "no external asset"
    );
    assert!(html.contains("default-src 'none'"));
    // Sections present: summary, charts, article 6, URLs, per-vantage table.
    for id in [
        "id=\"summary\"",
        "id=\"charts\"",
        "id=\"article6\"",
        "id=\"urls\"",
        "id=\"vantage\"",
    ] {
        assert!(html.contains(id), "missing {id}");
    }
    // Article 6 rows: 7 "block" measurements (3 A + 3 B + 1 D), 1 "disconnect".
    assert!(html.contains("<tr><td>block</td><td>a name or address refused, a blockpage served</td><td class=\"n\">7</td><td class=\"n\">5</td></tr>"), "{html}");
    assert!(html.contains("<tr><td>disconnect</td><td>a connection torn down: reset, closed, silently dropped</td><td class=\"n\">1</td><td class=\"n\">1</td></tr>"));
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "skipping report_renders_in_headless_chromium: no chromium on PATH (CI installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = hostile_fixture(dir.path());
    let html = gatewatch::report::render_files(&files, &[], "gatewatch report", &mut |_| {})
        .expect("render");
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).expect("write page");
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("profile");
    let png = dir.path().join("shot.png");
    let base = |extra: &[String]| {
        let mut c = Command::new("timeout");
        c.arg("120").arg(&chromium).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ]);
        c.arg(format!("--user-data-dir={}", profile.display()));
        c.args(extra);
        c.arg(&url);
        c
    };

    let out = base(&["--dump-dom".to_string()])
        .output()
        .expect("run chromium --dump-dom");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium --dump-dom failed: {log}");
    assert!(
        dom.contains("Blocked and throttled URLs"),
        "DOM lacks the URL section: {dom}"
    );
    for want in [
        "Measurements per article-6 power",
        "@media print{",
        "<dl class=\"mech\">",
    ] {
        assert!(dom.contains(want), "DOM lacks {want:?}");
    }
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "hostile URL not shown as text"
    );
    for marker in ["Uncaught", "CONSOLE", "Refused to"] {
        let bad: Vec<&str> = log.lines().filter(|l| l.contains(marker)).collect();
        assert!(bad.is_empty(), "page errors: {bad:?}");
    }

    let out = base(&[
        format!("--screenshot={}", png.display()),
        "--window-size=412,915".to_string(),
    ])
    .output()
    .expect("run chromium --screenshot");
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (width, height, pixels) = decode_png(&png);
    assert_eq!((width, height), (412, 915));
    // Not blank: many colours, and a good share of non-background pixels.
    let mut colours = std::collections::HashSet::new();
    let mut ink = 0usize;
    for p in pixels.chunks(3) {
        colours.insert((p[0], p[1], p[2]));
        if (p[0], p[1], p[2]) != (0xf8, 0xf9, 0xf9) && (p[0], p[1], p[2]) != (255, 255, 255) {
            ink += 1;
        }
    }
    assert!(
        colours.len() >= 20,
        "only {} colours: blank page?",
        colours.len()
    );
    assert!(
        ink * 50 > pixels.len() / 3,
        "only {ink} non-background pixels"
    );
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Decodes a PNG to 8-bit RGB.
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).expect("open screenshot");
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => panic!("indexed PNG after normalisation"),
    };
    (info.width, info.height, rgb)
}

// ------------------------------------------------- issue 13: real pages ----

/// A DNS-blocked measurement: the system resolver answers NXDOMAIN; the
/// public resolver answers the control's A record and an empty AAAA
/// (`public_blocked` false), or NXDOMAIN too (`public_blocked` true).
fn dns_blocked(asn: &str, net: &str, url: &str, public_blocked: bool) -> Measurement {
    let mut m = measurement(asn, net, url, "2026-07-03 10:00:00", Seen::Ok);
    let host = url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let q = |engine: &str, resolver: &str, qtype: &str, ip: Option<&str>, f: Option<Failure>| {
        DnsQuery {
            answers: ip
                .map(|ip| {
                    vec![DnsAnswer {
                        answer_type: "A".to_string(),
                        ipv4: Some(ip.to_string()),
                        ..DnsAnswer::default()
                    }]
                })
                .unwrap_or_default(),
            engine: engine.to_string(),
            failure: f,
            hostname: host.clone(),
            query_type: qtype.to_string(),
            resolver_address: resolver.to_string(),
            ..DnsQuery::default()
        }
    };
    let public = "198.51.100.53:53";
    m.test_keys.queries = vec![q(
        "getaddrinfo",
        "",
        "ANY",
        None,
        Some(Failure::DnsNxdomain),
    )];
    if public_blocked {
        m.test_keys
            .queries
            .push(q("udp", public, "A", None, Some(Failure::DnsNxdomain)));
        m.test_keys
            .queries
            .push(q("udp", public, "AAAA", None, Some(Failure::DnsNxdomain)));
    } else {
        m.test_keys
            .queries
            .push(q("udp", public, "A", Some("203.0.113.10"), None));
        m.test_keys
            .queries
            .push(q("udp", public, "AAAA", None, Some(Failure::DnsNoAnswer)));
    }
    m.test_keys.x_verdict = Some(Verdict {
        status: VerdictStatus::Blocked,
        layer: Some("dns".to_string()),
        mechanism: Some("dns.nxdomain".to_string()),
        confidence: Some("likely".to_string()),
        ..Verdict::default()
    });
    m
}

#[test]
fn resolver_criterion_reads_an_empty_aaaa_as_normal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (public_blocked, want, leaning_want) in [
        // ISP resolver only: the public resolver's good A beside its empty
        // AAAA is clean, so this is ISP-level.
        (false, (2, 2, 0), Leaning::Isp),
        // The public resolver fails too: on the path, like a gateway.
        (true, (2, 0, 2), Leaning::Gateway),
    ] {
        let f = write_lines(
            dir.path(),
            &format!("dns-{public_blocked}.jsonl"),
            &[
                json(&dns_blocked("AS64500", "NetA", U1, public_blocked)),
                json(&dns_blocked("AS64500", "NetA", U2, public_blocked)),
            ],
        );
        let (r, _) = load(&[f], &[]);
        let t = &r.vantage_points[0].resolvers;
        assert_eq!(
            (t.dns_anomalies, t.system_only, t.also_public),
            want,
            "public resolver blocked: {public_blocked}"
        );
        assert_eq!(leaning(&r, "resolver_independence"), leaning_want);
    }
    // One query on its own: an empty AAAA says nothing, a failed A while
    // the control resolved the name is tampering, and without a control
    // a failure says nothing either.
    use gatewatch::compare::artifacts::{judge_lookup, LookupJudgement};
    let ctl = vec!["203.0.113.10".to_string()];
    let mut aaaa = DnsQuery {
        query_type: "AAAA".to_string(),
        failure: Some(Failure::DnsNoAnswer),
        ..DnsQuery::default()
    };
    assert_eq!(judge_lookup(&aaaa, Some(&ctl)), LookupJudgement::Unknown);
    aaaa.query_type = "A".to_string();
    assert_eq!(judge_lookup(&aaaa, Some(&ctl)), LookupJudgement::Tampered);
    assert_eq!(judge_lookup(&aaaa, None), LookupJudgement::Unknown);
}

/// An `http://` measurement whose final page is `body`, the control's page
/// being `ctl_html`, with `verdict`.
fn page_measurement(
    asn: &str,
    net: &str,
    url: &str,
    body: &str,
    ctl_html: &str,
    verdict: Verdict,
) -> Measurement {
    use gatewatch::analysis::pagetext;
    use gatewatch::control::protocol::{ControlBody, ControlText};
    use probes::records::{HttpRequestRecord, HttpResponseRecord, HttpTransaction, MaybeBinary};
    let mut m = measurement(asn, net, url, "2026-07-03 11:00:00", Seen::Ok);
    m.test_keys.requests = vec![HttpTransaction {
        request: HttpRequestRecord {
            url: url.to_string(),
            ..HttpRequestRecord::default()
        },
        response: HttpResponseRecord {
            code: 200,
            body: MaybeBinary::Text(body.to_string()),
            ..HttpResponseRecord::default()
        },
        ..HttpTransaction::default()
    }];
    let c = m.test_keys.control.as_mut().expect("control");
    let t = pagetext::fingerprint(ctl_html);
    c.x_body_text = Some(ControlText {
        words: t.words,
        sketch: t.sketch,
        block_terms: t.block_terms,
    });
    c.x_body = Some(ControlBody {
        length: ctl_html.len() as i64,
        sha256: gatewatch::analysis::cluster::PageKey::of_body(ctl_html.as_bytes()).sha256,
        prefix: String::new(),
    });
    c.http_request.status_code = 200;
    m.test_keys.x_verdict = Some(verdict);
    m
}

#[test]
fn clusters_and_diverted_names_are_listed_across_vantage_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notice = "<p>Notice: the content you requested is unavailable on this network now</p>";
    let site = |n: &str| {
        format!(
            "<p>{n} {}</p>",
            (0..60)
                .map(|i| format!("{n}{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let undecided = Verdict {
        status: VerdictStatus::Inconclusive,
        evidence: vec!["the pages differ".to_string()],
        ..Verdict::default()
    };
    let diverted = Verdict {
        status: VerdictStatus::Accessible,
        interference: vec!["dns.diverted".to_string()],
        ..Verdict::default()
    };
    let fa = write_lines(
        dir.path(),
        "a.jsonl",
        &[
            json(&page_measurement(
                "AS64500",
                "NetA",
                "http://u1.example/",
                notice,
                &site("alpha"),
                undecided.clone(),
            )),
            json(&page_measurement(
                "AS64500",
                "NetA",
                "http://u5.example/",
                &site("beta"),
                &site("beta"),
                diverted,
            )),
        ],
    );
    let fb = write_lines(
        dir.path(),
        "b.jsonl",
        &[
            json(&page_measurement(
                "AS64501",
                "NetB",
                "http://u2.example/",
                notice,
                &site("gamma"),
                undecided.clone(),
            )),
            // The site's own page: not a cluster member.
            json(&page_measurement(
                "AS64501",
                "NetB",
                "http://u3.example/",
                &site("delta"),
                &site("delta"),
                undecided,
            )),
        ],
    );
    let (r, _) = load(&[fa.clone(), fb.clone()], &[]);
    assert_eq!(r.page_clusters.len(), 1, "{:?}", r.page_clusters);
    let c = &r.page_clusters[0];
    assert_eq!(c.sites, 2);
    assert_eq!(c.hosts, vec!["u1.example", "u2.example"]);
    assert_eq!(c.vantages, vec!["AS64500 KH NetA", "AS64501 KH NetB"]);
    assert_eq!(
        r.vantage_points[0].interference.get("dns.diverted"),
        Some(&1)
    );
    assert!(r.vantage_points[1].interference.is_empty());
    let text = compare::text::render(&r);
    assert!(text.contains("Blockpages found by clustering"), "{text}");
    assert!(
        text.contains("2 sites (u1.example, u2.example); seen at AS64500 KH NetA, AS64501 KH NetB"),
        "{text}"
    );
    assert!(text.contains("AS64500 KH NetA: dns.diverted 1"), "{text}");
    let ev = &r
        .attribution
        .criteria
        .iter()
        .find(|c| c.id == "identical_artifacts")
        .expect("criterion")
        .evidence;
    assert!(
        ev.iter()
            .any(|e| e.contains("served for 2 unrelated sites at 2 vantage points")),
        "{ev:?}"
    );
    let html = gatewatch::report::render_files(&[fa, fb], &[], "t", &mut |_| {}).expect("report");
    assert!(html.contains("Blockpages found by clustering") && html.contains("dns.diverted"));
}
