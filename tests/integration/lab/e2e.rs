//! End to end: the real `gatewatch` binary measures the lab's list from the
//! probe namespace, with the real control server (`gatewatch control serve`)
//! in the control namespace, and every URL's verdict is checked against its
//! scenario row.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gatewatch::control::protocol::ControlResponse;
use serde_json::Value;

use super::scenarios::{Scenario, SCENARIOS};
use super::topology::addr;
use super::world::World;

const GATEWATCH: &str = env!("CARGO_BIN_EXE_gatewatch");

#[test]
fn the_probe_classifies_every_scenario() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    let list = write_list(&world, "lab.txt", &world.scenarios);
    let out = world.dir.path().join("out.jsonl");
    let started = Instant::now();
    // With reference checks on two clean sites: the many blocked rows make
    // bursts of failures, the checks find the references fine, and every
    // verdict stays as the table says (no overcorrection).
    let run = probe_command(&world, &list, &out, &control)
        .args(["--reference", &world.find("clean-http").0.url()])
        .args(["--reference", &world.find("clean").0.url()])
        .output()
        .unwrap();
    println!(
        "lab run: {} URLs in {:.1}s",
        world.scenarios.len(),
        started.elapsed().as_secs_f64()
    );

    let results = read_results(&out);
    let rows: Vec<Row> = world
        .scenarios
        .iter()
        .map(|sc| Row::new(sc, results.get(&sc.url())))
        .collect();
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.ok()).count();
    assert!(
        failed == 0 && run.status.success(),
        "{failed} of {} scenarios got an unexpected verdict (table above); gatewatch run: {}\n{}",
        rows.len(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn an_unreachable_control_is_no_evidence() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    // Nobody owns this address: the internet router answers unreachable.
    let control = format!("http://{}:{}", addr::BLACKHOLE, addr::CONTROL_PORT);
    // Without a control: a page fetched over TLS verified for the name is
    // accessible; a RST alone proves nothing; a loopback answer while the
    // other resolver agrees on a public address is self-evident, weakly.
    let cases = [
        ("clean", "accessible", None, None),
        ("tcp-syn-rst", "inconclusive", None, None),
        (
            "dns-localhost",
            "blocked",
            Some("dns"),
            Some("dns.localhost"),
        ),
    ];
    let list: Vec<Scenario> = cases.iter().map(|c| world.find(c.0).0).collect();
    let input = write_list(&world, "no-control.txt", &list);
    let out = world.dir.path().join("no-control.jsonl");
    let run = probe_command(&world, &input, &out, &control)
        .args(["--reference", "none"])
        .output()
        .unwrap();
    let results = read_results(&out);
    let mut bad = Vec::new();
    for ((name, status, layer, mechanism), sc) in cases.iter().zip(&list) {
        let Some(m) = results.get(&sc.url()) else {
            bad.push(format!("{name}: no result"));
            continue;
        };
        let tk = &m["test_keys"];
        let v = &tk["x_verdict"];
        let got = (
            v["status"].as_str(),
            v["layer"].as_str(),
            v["mechanism"].as_str(),
            tk["control_failure"].is_string(),
        );
        let want = (Some(*status), *layer, *mechanism, true);
        let confidence = v["confidence"].as_str();
        // Blocked without a control is at most "possible".
        let weak = *status != "blocked" || confidence == Some("possible");
        println!("{name:<15} want {want:?} got {got:?} confidence {confidence:?}");
        if got != want || !weak {
            bad.push(format!(
                "{name}: want {want:?}, got {got:?}, confidence {confidence:?}"
            ));
        }
    }
    assert!(
        bad.is_empty() && run.status.success(),
        "{bad:#?}\ngatewatch run: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn trace_blocked_finds_the_censor_at_hop_2() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    // (scenario, trigger that must show interference at hop 2, its kinds)
    let cases: [(&str, &str, &[&str]); 4] = [
        ("tls-sni-rst", "tls_client_hello", &["rst"]),
        ("http-host-rst", "http_get", &["rst"]),
        ("tcp-syn-rst", "tcp_syn", &["rst", "rst_unconfirmed"]),
        ("dns-injected", "dns_non_resolver", &["forged_dns"]),
    ];
    let mut list: Vec<Scenario> = cases.iter().map(|c| world.find(c.0).0).collect();
    list.push(world.find("clean").0);
    let input = write_list(&world, "trace.txt", &list);
    let out = world.dir.path().join("trace.jsonl");
    let mut cmd = probe_command(&world, &input, &out, &control);
    cmd.args(["--reference", "none"]);
    cmd.arg("--trace-blocked");
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results = read_results(&out);
    let trace = |name: &str| results[&world.find(name).0.url()]["test_keys"]["x_trace"].clone();
    let censor = addr::CENSOR_DOWN.to_string();

    for (name, trigger, kinds) in cases {
        let t = trace(name);
        let hit = t["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["trigger"] == trigger && kinds.iter().any(|k| f["kind"] == *k));
        let Some(f) = hit else {
            panic!("{name}: no {trigger} finding: {t:#}");
        };
        assert_eq!(f["first_hop"], 2, "{name}: {f:#}");
        assert!(
            f["hop_address"].is_null() || f["hop_address"] == censor.as_str(),
            "{name}: {f:#}"
        );
        // The hop map names r1 and then the censor.
        assert_eq!(
            t["hops"][0]["address"],
            addr::R1_DOWN.to_string(),
            "{name}: {t:#}"
        );
    }
    assert_eq!(trace("tls-sni-rst")["hops"][1]["address"], censor.as_str());
    // The non-resolver check fires for the injected name only.
    let dns = trace("dns-injected")["non_resolver_dns"].clone();
    let by_role = |role: &str| {
        dns.as_array()
            .into_iter()
            .flatten()
            .find(|d| d["role"] == role)
            .cloned()
            .unwrap_or_else(|| panic!("no {role} entry: {dns:#}"))
    };
    assert_eq!(by_role("test")["answered"], true, "{dns:#}");
    assert_eq!(by_role("test")["first_hop"], 2, "{dns:#}");
    assert_eq!(by_role("control")["answered"], false, "{dns:#}");
    // A site that is not blocked is not traced.
    assert!(trace("clean").is_null(), "{:#}", trace("clean"));
}

#[test]
fn a_killed_run_resumes_with_exactly_one_line_per_url() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    // Resuming is the run's business, not the control's: no control here.
    let control = "none";
    let list = write_list(&world, "lab.txt", &world.scenarios);
    let out = world.dir.path().join("out.jsonl");

    // Two at a time so the run is still going when a few lines are written.
    let mut first = probe_command(&world, &list, &out, control);
    first.args(["--reference", "none"]);
    first.args(["--parallel", "2"]);
    let pid = world.lab.spawn_command(first).unwrap();
    let mut child = world.lab.take_child(pid).expect("the probe process");
    let deadline = Instant::now() + Duration::from_secs(90);
    while lines(&out) < 3 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "no results after 90 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush or clean up
    child.wait().unwrap();
    let before = lines(&out);
    assert!(
        before < world.scenarios.len(),
        "the run finished before the kill"
    );

    let mut second = probe_command(&world, &list, &out, control);
    second.args(["--reference", "none"]);
    second.arg("--resume");
    let run = second.output().unwrap();
    assert!(
        run.status.success(),
        "resumed run: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let text = std::fs::read_to_string(&out).unwrap();
    let mut per_url: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:.200}"));
        let input = v["input"].as_str().expect("input").to_string();
        *per_url.entry(input).or_default() += 1;
    }
    for sc in &world.scenarios {
        assert_eq!(
            per_url.get(&sc.url()),
            Some(&1),
            "{}: lines {per_url:?}",
            sc.url()
        );
    }
    assert_eq!(per_url.len(), world.scenarios.len(), "{per_url:?}");
}

#[test]
fn the_control_sees_the_sites_the_censor_hides() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    // Asked from the probe's namespace: the request itself crosses the
    // censor, the control's own measurement does not.
    let ask = |name: &str, port: u16| {
        let (sc, ip) = world.find(name);
        let body = serde_json::json!({
            "http_request": sc.url(),
            "http_request_headers": {},
            "tcp_connect": [format!("{ip}:{port}")],
        });
        (ip, control_post(&world, &control, &body))
    };

    let (ip, r) = ask("tls-sni-rst", 443);
    let ep = format!("{ip}:443");
    assert!(r.tcp_connect[&ep].status, "{r:#?}");
    assert!(r.tls_handshake[&ep].status, "{r:#?}");
    assert_eq!(r.tls_handshake[&ep].failure, None);
    assert_eq!(r.http_request.status_code, 200);
    assert_eq!(
        r.http_request.title,
        "tls-sni-rst.example - independent news"
    );
    assert_eq!(r.dns.addrs, vec![ip.to_string()]);

    let (ip, r) = ask("dns-nxdomain", 80);
    assert_eq!(r.dns.failure, None);
    assert_eq!(r.dns.addrs, vec![ip.to_string()]);
    assert_eq!(r.http_request.status_code, 200);

    let (_, r) = ask("nxdomain-everywhere", 443);
    assert_eq!(r.dns.failure.as_deref(), Some("dns_name_error"), "{r:#?}");

    let (ip, r) = ask("down-everywhere", 443);
    let ep = format!("{ip}:443");
    assert!(!r.tcp_connect[&ep].status);
    assert_eq!(
        r.tcp_connect[&ep].failure.as_deref(),
        Some("connection_refused_error")
    );
}

/// POSTs a control request from the probe's namespace; the parsed answer.
fn control_post(world: &World, control: &str, body: &Value) -> ControlResponse {
    let body = body.to_string();
    let host = control.trim_start_matches("http://").to_string();
    let text = world
        .topo
        .probe
        .thread(move || {
            let mut s = TcpStream::connect(&host)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            write!(
                s,
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            std::io::Result::Ok(out)
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let (head, json) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{json}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// `gatewatch control serve` in the control namespace; returns its URL once
/// it accepts connections.
pub(super) fn start_control(world: &World) -> String {
    let listen = SocketAddr::from((addr::CONTROL, addr::CONTROL_PORT));
    let mut args: Vec<String> = vec![
        "control".into(),
        "serve".into(),
        "--listen".into(),
        listen.to_string(),
    ];
    for r in addr::PUBLIC_RANGES {
        args.extend(["--treat-as-public".into(), r.into()]);
    }
    args.extend(["--ca-file".into(), world.ca_file.display().to_string()]);
    args.extend(["--resolver".into(), format!("{}:53", addr::PUBLIC_RESOLVER)]);
    let pid = world
        .lab
        .spawn(&world.topo.control, Path::new(GATEWATCH), &args)
        .unwrap();
    let up = world
        .topo
        .control
        .thread(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .unwrap()
        .join()
        .unwrap();
    if !up {
        let mut err = String::new();
        if let Some(mut c) = world.lab.take_child(pid) {
            let _ = c.kill();
            let _ = c.wait();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
        }
        panic!("the control server did not start on {listen}: {err}");
    }
    format!("http://{listen}")
}

/// `gatewatch run` in the probe namespace, with short timeouts.
pub(super) fn probe_command(world: &World, list: &Path, out: &Path, control: &str) -> Command {
    probe_command_with(world, Path::new(GATEWATCH), list, out, control)
}

/// [`probe_command`] with another gatewatch binary (for before/after
/// figures).
pub(super) fn probe_command_with(
    world: &World,
    bin: &Path,
    list: &Path,
    out: &Path,
    control: &str,
) -> Command {
    let mut c = world.topo.probe.command(bin);
    c.arg("run")
        .args(["--stun", "none"])
        .arg("--input-file")
        .arg(list)
        .args(["--control", control])
        .args(["--resolver", &format!("{}:53", addr::PUBLIC_RESOLVER)])
        .arg("--ca-file")
        .arg(&world.ca_file);
    for r in addr::PUBLIC_RANGES {
        c.args(["--treat-as-public", r]);
    }
    c.args(["--dns-timeout", "2s", "--tcp-timeout", "3s"])
        .args(["--tls-timeout", "4s", "--http-timeout", "8s"])
        .args(["--url-deadline", "40s"])
        .args(["--probe-asn", "AS64496", "--probe-cc", "ZZ"])
        .args(["--yes", "--no-progress", "--lang", "en"])
        .arg("--output")
        .arg(out)
        .env("XDG_CONFIG_HOME", world.dir.path().join("config"))
        .env("XDG_DATA_HOME", world.dir.path().join("data"))
        .env("HOME", world.dir.path());
    c
}

pub(super) fn write_list(world: &World, name: &str, list: &[Scenario]) -> PathBuf {
    let p = world.dir.path().join(name);
    let text: String = list.iter().map(|s| s.url() + "\n").collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().filter(|l| l.ends_with('}')).count())
        .unwrap_or(0)
}

/// input URL → its measurement (the last one, if a URL appears twice).
pub(super) fn read_results(p: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["input"].as_str()?.to_string(), v)))
        .collect()
}

/// One line of the result table.
pub(super) struct Row {
    pub(super) name: &'static str,
    /// status, layer, blocking, mechanism.
    want: [String; 4],
    pub(super) got: [String; 4],
    pub(super) detail: String,
}

impl Row {
    pub(super) fn new(sc: &Scenario, m: Option<&Value>) -> Row {
        let want = [
            sc.expect.status.to_string(),
            sc.expect.layer.unwrap_or("null").to_string(),
            sc.expect.blocking.to_string(),
            sc.expect.mechanism.unwrap_or("null").to_string(),
        ];
        let Some(m) = m else {
            return Row {
                name: sc.name,
                want,
                got: [
                    "(no result)".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                detail: String::new(),
            };
        };
        let tk = &m["test_keys"];
        let v = &tk["x_verdict"];
        let s = |x: &Value| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let detail = format!(
            "{} dns:{} http:{} ctl:{}",
            s(&v["confidence"]),
            s(&tk["dns_experiment_failure"]),
            s(&tk["http_experiment_failure"]),
            s(&tk["control_failure"]),
        );
        Row {
            name: sc.name,
            want,
            got: [
                s(&v["status"]),
                s(&v["layer"]),
                s(&tk["blocking"]),
                s(&v["mechanism"]),
            ],
            detail,
        }
    }

    pub(super) fn ok(&self) -> bool {
        self.want == self.got
    }
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "{:<20} {:<52} {:<52} confidence, failures seen",
        "scenario", "expected status/layer/blocking/mechanism", "got"
    );
    for r in rows {
        println!(
            "{:<20} {:<52} {:<52} {}{}",
            r.name,
            r.want.join(" / "),
            r.got.join(" / "),
            if r.ok() { "" } else { "MISMATCH " },
            r.detail
        );
    }
}
