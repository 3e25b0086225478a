//! The command line as a person meets it: the real binary, run with its
//! data and config directories in a temporary directory, checked for exact
//! exit codes and the words printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gatewatch::model::{Measurement, Verdict, VerdictStatus};

/// The binary with HOME and the XDG directories inside `home`.
fn gw(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    c.env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("LANG", "C")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("gatewatch runs");
    (
        status.code().expect("exited"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn m(url: &str, time: &str, status: VerdictStatus, mech: Option<&str>) -> String {
    let mut m = Measurement {
        test_name: "web_connectivity".into(),
        input: Some(url.into()),
        measurement_start_time: time.into(),
        probe_asn: "AS38623".into(),
        probe_cc: "KH".into(),
        probe_ip: "127.0.0.1".into(),
        probe_network_name: Some("ISPNet".into()),
        ..Measurement::default()
    };
    m.test_keys.x_verdict = Some(Verdict {
        status,
        layer: mech.map(|m| m.split('.').next().unwrap_or("").into()),
        mechanism: mech.map(Into::into),
        evidence: match mech {
            Some(_) => vec!["the ISP resolver said NXDOMAIN; the control resolved it".into()],
            None => vec![],
        },
        ..Verdict::default()
    });
    serde_json::to_string(&m).unwrap()
}

fn write_results(home: &Path, name: &str, lines: &[String]) -> PathBuf {
    let dir = home.join("data/gatewatch/results");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn usage_errors_exit_2_in_every_subcommand() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = run(gw(h.path()).args(["schedule", "install"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("<--user|--system>"), "{err}");
    let (code, _, err) = run(gw(h.path()).arg("upload"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no collector: pass --collector URL"), "{err}");
    let (code, _, err) = run(gw(h.path()).args(["history", "--since", "yesterday"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--since \"yesterday\" is not a date"), "{err}");
    let typo = h.path().join("typo.sqlite");
    let (code, _, err) = run(gw(h.path()).args(["history", "--db"]).arg(&typo));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such file"), "{err}");
    assert!(!typo.exists(), "history --db must not create a database");
    let (code, _, err) = run(gw(h.path()).args(["show", "7"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no run 7: `gatewatch runs` lists 0 run(s)"),
        "{err}"
    );
}

#[test]
fn unknown_category_is_refused_with_the_known_codes() {
    let h = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(gw(h.path()).args(["run", "--yes", "--category", "FOO", "http://127.0.0.1:9/"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("unknown category \"FOO\"; known codes: ALDR,"),
        "{err}"
    );
    assert!(err.contains("NEWS"), "{err}");
    assert!(
        !h.path().join("data/gatewatch/results").exists(),
        "nothing measured"
    );
    let (code, _, err) = run(gw(h.path()).args([
        "run",
        "--yes",
        "--lang",
        "km",
        "--category",
        "FOO",
        "http://127.0.0.1:9/",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("gatewatch run: មិនបានវាស់អ្វីទេ៖"), "{err}");
    assert!(err.contains("unknown category \"FOO\""), "{err}");
}

#[test]
fn compare_and_report_refuse_missing_and_binary_files_in_one_line() {
    let h = tempfile::tempdir().unwrap();
    let missing = h.path().join("nope.jsonl");
    for sub in ["compare", "report"] {
        let mut c = gw(h.path());
        c.arg(sub).arg(&missing);
        if sub == "report" {
            c.arg("--html").arg(h.path().join("r.html"));
        }
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(err.matches("nope.jsonl").count(), 1, "{err}");
        assert!(err.contains("no such file"), "{err}");

        let bin = Path::new(env!("CARGO_BIN_EXE_gatewatch"));
        let mut c = gw(h.path());
        c.arg(sub).arg(bin);
        if sub == "report" {
            c.arg("--html").arg(h.path().join("r.html"));
        }
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not a results file (binary data"), "{err}");
    }
    assert!(!h.path().join("r.html").exists());
}

#[test]
fn runs_lists_past_runs_and_show_prints_a_run_and_a_url() {
    let h = tempfile::tempdir().unwrap();
    let (code, out, _) = run(gw(h.path()).arg("runs"));
    assert_eq!(code, 0);
    assert!(out.starts_with("no runs yet in "), "{out}");
    let u = "https://news.example/";
    let first = write_results(
        h.path(),
        "2026-11-01T031700Z-web_connectivity.jsonl",
        &[
            m(u, "2026-11-01 03:17:05", VerdictStatus::Accessible, None),
            m(
                "https://b.example/",
                "2026-11-01 03:17:06",
                VerdictStatus::Down,
                None,
            ),
        ],
    );
    let second = write_results(
        h.path(),
        "2026-11-02T031700Z-web_connectivity.jsonl",
        &[
            m(
                u,
                "2026-11-02 03:17:05",
                VerdictStatus::Blocked,
                Some("dns.nxdomain"),
            ),
            m(
                "https://b.example/",
                "2026-11-02 03:17:06",
                VerdictStatus::Accessible,
                None,
            ),
            "not json".into(),
        ],
    );
    let (code, out, err) = run(gw(h.path()).arg("runs"));
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows[0].contains("DATE (UTC)") && rows[0].contains("blocked"),
        "{out}"
    );
    let first_row: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(
        &first_row[..8],
        [
            "1",
            "2026-11-01",
            "03:17:05",
            "ISPNet",
            "(AS38623)",
            "2",
            "0",
            "0"
        ],
        "{out}"
    );
    assert!(rows[1].ends_with(&first.display().to_string()), "{out}");
    let counts: Vec<&str> = rows[2].split_whitespace().collect();
    // #, date, time, network (2 words), URLs, blocked, throttled, down, inconclusive, accessible, file
    assert_eq!(&counts[5..11], ["2", "1", "0", "0", "0", "1"], "{out}");
    assert!(rows[2].ends_with(&second.display().to_string()), "{out}");

    let (code, out, err) = run(gw(h.path()).args(["show", "2"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("URLs: 2 (blocked 1, throttled 0, down 0, inconclusive 0, accessible 1)"),
        "{out}"
    );
    assert!(out.contains("unreadable lines skipped: 1"), "{out}");
    assert!(
        out.contains("  https://news.example/: the name was refused by your provider's DNS"),
        "{out}"
    );
    assert!(out.contains("gatewatch report "), "{out}");

    let (code, out, err) = run(gw(h.path()).args(["show", u, "--lang", "km"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("measured: 2026-11-02 03:17:05 (UTC) from ISPNet (AS38623)"),
        "{out}"
    );
    assert!(out.contains("verdict: blocked, dns, dns.nxdomain"), "{out}");
    assert!(out.contains("DNS របស់អ្នកផ្តល់សេវាបានបដិសេធឈ្មោះនេះ"), "{out}");
    assert!(out.contains("  - the ISP resolver said NXDOMAIN"), "{out}");

    let (code, _, err) = run(gw(h.path()).args(["show", "gone.jsonl"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gone.jsonl: no such file"), "{err}");
    let (code, out, err) = run(gw(h.path()).arg("show").arg(&first));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("URLs: 2 (blocked 0, throttled 0, down 1,"),
        "{out}"
    );

    let (code, _, err) = run(gw(h.path()).args(["show", "https://never.example/"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no measurement of https://never.example/"),
        "{err}"
    );
}

#[test]
fn schedule_install_status_cron_and_uninstall_without_systemd() {
    let h = tempfile::tempdir().unwrap();
    let units = h.path().join("units");
    let (code, _, err) = run(gw(h.path())
        .args([
            "schedule",
            "install",
            "--user",
            "--on-calendar",
            "every day at 3",
            "--unit-dir",
        ])
        .arg(&units));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--on-calendar \"every day at 3\""), "{err}");
    assert!(!units.join("gatewatch.timer").exists());

    // The help's own example, with a separate value starting with `--`.
    let (code, out, err) = run(gw(h.path())
        .env("USER", "gw-nolinger-test")
        .args([
            "schedule",
            "install",
            "--user",
            "--yes",
            "--run-args",
            "--config FILE --lang km",
            "--unit-dir",
        ])
        .arg(&units));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("enable it with: systemctl --user"), "{out}");
    assert!(
        out.contains("loginctl enable-linger gw-nolinger-test"),
        "{out}"
    );
    let service = std::fs::read_to_string(units.join("gatewatch.service")).unwrap();
    assert!(
        service.contains(" run --yes --no-progress --config FILE --lang km\n")
            || service.contains("--config FILE --lang km"),
        "{service}"
    );
    let doc = service
        .lines()
        .find_map(|l| l.strip_prefix("Documentation=file://"))
        .expect("Documentation=");
    assert!(
        Path::new(doc).is_file(),
        "Documentation= names {doc}, which must exist"
    );
    assert!(!service.contains('@'), "{service}");

    let (code, out, _) = run(gw(h.path())
        .args(["schedule", "status", "--user", "--unit-dir"])
        .arg(&units));
    assert_eq!(code, 0);
    assert!(out.contains("schedule: OnCalendar=*-*-* 03:17:00"), "{out}");

    let (code, out, err) = run(gw(h.path()).args(["schedule", "cron", "--yes"]));
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| !l.starts_with('#')).unwrap();
    let bin = line.split_whitespace().nth(5).unwrap();
    assert!(
        Path::new(bin).is_absolute() && Path::new(bin).is_file(),
        "{line}"
    );
    let log = line.split(">> ").nth(1).unwrap().trim_end_matches(" 2>&1");
    assert!(Path::new(log).parent().unwrap().is_dir(), "{line}");
    // Without a journal for the unit, `logs` shows the cron log's tail.
    std::fs::write(log, "old line\ngatewatch: 3/3 URLs done\n").unwrap();
    let (code, out, err) = run(gw(h.path()).args(["schedule", "logs", "--user", "--lines", "1"]));
    assert_eq!(code, 0, "{err}");
    if !out.contains("-- Logs begin") && !out.contains("gatewatch.service") {
        assert!(out.ends_with("gatewatch: 3/3 URLs done\n"), "{out}");
        assert!(!out.contains("old line"), "{out}");
    }

    let (code, out, _) = run(gw(h.path())
        .args(["schedule", "uninstall", "--user", "--unit-dir"])
        .arg(&units));
    assert_eq!(code, 0);
    assert_eq!(out.matches("removed ").count(), 3, "{out}");
    let (_, out, _) = run(gw(h.path())
        .args(["schedule", "status", "--user", "--unit-dir"])
        .arg(&units));
    assert!(out.starts_with("not installed in "), "{out}");
}

#[test]
fn help_has_examples_and_run_has_grouped_options() {
    let h = tempfile::tempdir().unwrap();
    let (code, out, _) = run(gw(h.path()).args(["run", "--help"]));
    assert_eq!(code, 0);
    for heading in [
        "\nInput:\n",
        "\nMeasurement:\n",
        "\nControl:\n",
        "\nOutput:\n",
        "\nPrivacy:\n",
        "\nUnattended:\n",
        "\nExamples:\n",
    ] {
        assert!(out.contains(heading), "missing {heading:?} in\n{out}");
    }
    assert!(
        out.contains("--ca-file <FILE>") && out.contains("--resolver <ADDR>"),
        "{out}"
    );
    for sub in [
        "compare", "report", "history", "upload", "trace", "runs", "show", "lists", "schedule",
    ] {
        let (code, out, _) = run(gw(h.path()).args([sub, "--help"]));
        assert_eq!(code, 0, "{sub}");
        assert!(
            out.contains("Examples:\n  gatewatch "),
            "{sub} --help:\n{out}"
        );
    }
}

/// A control server (std threads) giving the same answer to every
/// request: the site loaded from the control at `endpoint`.
fn fixed_control(endpoint: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let answer = serde_json::json!({
        "tcp_connect": {endpoint.to_string(): {"status": true, "failure": null}},
        "tls_handshake": {}, "quic_handshake": {},
        "http_request": {
            "body_length": 5000, "discovered_h3_endpoint": "", "failure": null,
            "title": "Elsewhere", "headers": {"Content-Type": "text/html"}, "status_code": 200
        },
        "http3_request": null,
        "dns": {"failure": null, "addrs": ["127.0.0.1"]},
        "ip_info": {},
    })
    .to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by Content-Length.
                loop {
                    let Ok(n) = s.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(resp.as_bytes());
            });
        }
    });
    addr
}

/// A tmux session removed on drop.
struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Captures until `want` is on the screen (the run ends on its own: a
    /// URL deadline bounds it); panics with the screen if the session ends
    /// first.
    fn wait_for(&self, want: &str) -> String {
        loop {
            let screen = self.capture();
            if screen.contains(want) {
                return screen;
            }
            if screen.contains("EXIT=") {
                panic!("{want:?} never appeared:\n{screen}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn tmux_shows_progress_and_summary_in_khmer_and_english() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux test skipped: tmux is not installed");
        return;
    }
    // One URL refused from the probe but loaded from the control (blocked,
    // tcp.refused); one that accepts and never answers, so the progress
    // bar stays up until its HTTP timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = hold.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in hold.incoming() {
            kept.push(s);
        }
    });
    let control = fixed_control(closed);
    for (lang, progress_word, next, plain) in [
        (
            "km",
            "/2 ភាពមិនប្រក្រតី: ",
            "បន្ទាប់:",
            "ការតភ្ជាប់ទៅអាសយដ្ឋានគេហទំព័រត្រូវបានបដិសេធនៅតាមផ្លូវ",
        ),
        (
            "en",
            "/2 anomalies: ",
            "Next: the evidence for one URL",
            "connections to the site's address were refused on the way",
        ),
    ] {
        let h = tempfile::tempdir().unwrap();
        let out = h.path().join("r.jsonl");
        let cmd = format!(
            "env HOME={home} XDG_DATA_HOME={home}/data XDG_CONFIG_HOME={home}/config {bin} run --yes --lang {lang} \
             --no-system-resolver --stun none --reference none --treat-as-public 127.0.0.0/8 --control http://{control}/ \
             --http-timeout 4s --url-deadline 8s -o {out} http://{closed}/ http://{slow}/; echo EXIT=$?; sleep 60",
            home = h.path().display(),
            bin = env!("CARGO_BIN_EXE_gatewatch"),
            out = out.display(),
        );
        let name = format!("gw-cli-{}-{lang}", std::process::id());
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "220",
                "-y",
                "50",
                "-s",
                &name,
                &cmd,
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let t = Tmux(name);
        let bar = t.wait_for(progress_word);
        let eta = if lang == "km" {
            "នៅសល់"
        } else {
            "ETA"
        };
        assert!(bar.contains(eta), "{lang}:\n{bar}");
        let screen = t.wait_for("EXIT=");
        assert!(screen.contains("EXIT=0"), "{screen}");
        assert!(screen.contains(next), "{lang}:\n{screen}");
        assert!(screen.contains(&format!("→ {plain}")), "{lang}:\n{screen}");
        assert!(
            screen.contains(&format!("gatewatch report {}", out.display())),
            "{screen}"
        );
    }
}
