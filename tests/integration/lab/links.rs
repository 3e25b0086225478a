//! Real links in the lab: a lossy line (issue 23) and a slow line (issue
//! 20), both on r1, the probe's first router, so every URL crosses them.
//!
//! The loss is deterministic, so these tests cannot flake: per host, exactly
//! the first DNS query for the name to each resolver and the first SYN to
//! its address are dropped (iptables `statistic --mode nth` with a period
//! no run reaches, one counter per rule). Random loss is for the benchmark
//! (`bench/run_bench.sh`).

use serde_json::Value;

use super::e2e::{
    print_table, probe_command, probe_command_with, read_results, start_control, write_list, Row,
};
use super::scenarios::Scenario;
use super::topology::addr;
use super::world::World;

/// A period no run reaches: `--packet 0` then drops the first match only.
const NEVER_AGAIN: &str = "1000000";

/// `|05|clean|07|example|00|`: the name as it is in a DNS question.
fn qname_hex(host: &str) -> String {
    let mut s = String::from("|");
    for label in host.split('.') {
        s.push_str(&format!("{:02x}|{label}|", label.len()));
    }
    s.push_str("00|");
    s
}

/// Drops, on r1 towards the internet, the first DNS query for `sc`'s name
/// to each resolver and the first SYN to `ip`.
fn drop_first_packets(world: &World, sc: &Scenario, ip: std::net::Ipv4Addr) {
    let nth = [
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        NEVER_AGAIN,
        "--packet",
        "0",
    ];
    let hex = qname_hex(&sc.host());
    for resolver in [addr::ISP_RESOLVER, addr::PUBLIC_RESOLVER] {
        let dst = resolver.to_string();
        let mut args = vec![
            "-A",
            "FORWARD",
            "-i",
            "down0",
            "-p",
            "udp",
            "--dport",
            "53",
            "-d",
            &dst,
            "-m",
            "string",
            "--algo",
            "bm",
            "--hex-string",
            &hex,
        ];
        args.extend(nth);
        args.extend(["-j", "DROP"]);
        world.topo.r1.exec("iptables", &args).unwrap();
    }
    let dst = ip.to_string();
    let mut args = vec![
        "-A", "FORWARD", "-i", "down0", "-p", "tcp", "--syn", "-d", &dst,
    ];
    args.extend(nth);
    args.extend(["-j", "DROP"]);
    world.topo.r1.exec("iptables", &args).unwrap();
}

fn run_rows(world: &World, name: &str, list: &[Scenario], control: &str) -> (Vec<Row>, Value) {
    run_rows_with(world, name, list, control, &[])
}

/// [`run_rows`] with more arguments for `gatewatch run`.
fn run_rows_with(
    world: &World,
    name: &str,
    list: &[Scenario],
    control: &str,
    extra: &[&str],
) -> (Vec<Row>, Value) {
    let input = write_list(world, &format!("{name}.txt"), list);
    let out = world.dir.path().join(format!("{name}.jsonl"));
    let summary = world.dir.path().join(format!("{name}-summary.json"));
    let run = probe_command(world, &input, &out, control)
        .arg("--json-summary")
        .arg(&summary)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "gatewatch run: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let results = read_results(&out);
    let rows: Vec<Row> = list
        .iter()
        .map(|sc| Row::new(sc, results.get(&sc.url())))
        .collect();
    print_table(&rows);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (rows, Value::Object(results_with_summary(results, summary)))
}

fn results_with_summary(
    results: std::collections::BTreeMap<String, Value>,
    summary: Value,
) -> serde_json::Map<String, Value> {
    let mut m: serde_json::Map<String, Value> = results.into_iter().collect();
    m.insert("summary".into(), summary);
    m
}

fn attempts(m: &Value, engine: &str) -> Vec<u64> {
    m["test_keys"]["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["engine"] == engine)
        .map(|q| q["x_attempts"].as_u64().unwrap_or(1))
        .collect()
}

#[test]
fn a_lossy_line_blocks_nothing_and_hides_no_block() {
    let Some(world) = World::start_or_skip(super::scenarios::SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    let names = [
        "clean",
        "clean-http",
        "big",
        "dynamic",
        "http-to-https",
        "dns-nxdomain",
        "dns-silent",
        "tcp-syn-drop",
        "tls-sni-drop",
        "tls-sni-rst",
    ];
    // The run's preflight asks the resolvers for the first few names of
    // its list: those are clean sites without drop rules, so the first
    // query the measurement itself sends for a name below is the one lost.
    let preflight = ["small-site", "dynamic-40", "client-dependent", "slow"];
    assert!(gatewatch::run::preflight::HOSTS_CHECKED <= preflight.len());
    let mut list: Vec<Scenario> = preflight[..gatewatch::run::preflight::HOSTS_CHECKED]
        .iter()
        .map(|n| world.find(n).0)
        .collect();
    list.extend(names.iter().map(|n| {
        let (sc, ip) = world.find(n);
        drop_first_packets(&world, &sc, ip);
        sc
    }));
    let (rows, results) = run_rows(&world, "lossy", &list, &control);
    let bad: Vec<&str> = rows.iter().filter(|r| !r.ok()).map(|r| r.name).collect();
    assert!(
        bad.is_empty(),
        "unexpected verdicts on a lossy line: {bad:?}"
    );
    // The lost first queries were resent and answered: recorded as a
    // second attempt, not as a failure.
    for n in ["clean", "clean-http", "big", "dynamic"] {
        let m = &results[&world.find(n).0.url()];
        assert!(
            attempts(m, "udp").contains(&2),
            "{n}: {:?}",
            attempts(m, "udp")
        );
        // The system resolver's tries come every 250 ms: the second one
        // answers, or a later one when the machine is slow.
        let gai = attempts(m, "getaddrinfo");
        assert!(gai.len() == 1 && gai[0] >= 2, "{n}: {gai:?}");
        assert!(m["test_keys"]["dns_experiment_failure"].is_null(), "{n}");
        let ev = m["test_keys"]["x_verdict"]["evidence"].to_string();
        assert!(ev.contains("answered only after a resend"), "{n}: {ev}");
    }
    // dns-silent: the system resolver was silent on every one of its many
    // tries, which loss does not do; the other resolver's answer does not
    // excuse that.
    let m = &results[&world.find("dns-silent").0.url()];
    let gai = attempts(m, "getaddrinfo");
    assert!(
        gai.len() == 1 && gai[0] >= u64::from(gatewatch::analysis::lossy::PERSISTENT_TRIES),
        "dns-silent: {gai:?}"
    );
    let s = &results["summary"];
    assert!(s["retried_steps"].as_u64().unwrap() >= 8, "{s}");
    assert!(s["line_loss_estimate"].as_f64().unwrap() > 0.0, "{s}");
    // The SNI rows: the primary ClientHello is one segment, the split one
    // slips past the lab's per-packet match, the repeat is blocked again.
    for n in ["tls-sni-drop", "tls-sni-rst"] {
        let m = &results[&world.find(n).0.url()];
        let ev = m["test_keys"]["x_verdict"]["evidence"].to_string();
        assert!(
            ev.contains("this filter only sees a name inside one packet"),
            "{n}: {ev}"
        );
        assert_eq!(m["test_keys"]["x_sni_split"][0]["failure"], Value::Null);
    }
}

/// Shapes what r1 sends towards the probe to `rate` (the volunteer's line).
fn shape_line(world: &World, verb: &str, rate: &str) {
    world
        .topo
        .r1
        .exec(
            "tc",
            &[
                "qdisc", verb, "dev", "down0", "root", "tbf", "rate", rate, "burst", "32kbit",
                "latency", "400ms",
            ],
        )
        .unwrap();
}

fn evidence(results: &Value, world: &World, name: &str) -> String {
    results[&world.find(name).0.url()]["test_keys"]["x_verdict"]["evidence"].to_string()
}

#[test]
fn a_slow_line_is_not_throttling_but_a_throttled_site_on_it_is() {
    let Some(world) = World::start_or_skip(super::scenarios::SCENARIOS) else {
        return;
    };
    let control = start_control(&world);

    // 1.5 Mbit/s: the large page arrives at ~1.4 Mbit/s against the
    // control's 50 Mbit/s. Judged against the line, it is not throttled.
    shape_line(&world, "add", "1500kbit");
    let list: Vec<Scenario> = ["big", "clean"].iter().map(|n| world.find(n).0).collect();
    let (rows, results) = run_rows(&world, "slow-line", &list, &control);
    assert!(rows.iter().all(Row::ok), "a slow line is not throttling");
    let ev = evidence(&results, &world, "big");
    assert!(ev.contains("no baseline"), "{ev}");

    // 4 Mbit/s with the throttled site at 512 kbit/s: an eighth of what the
    // line does for the large clean page. One URL at a time, the large
    // clean page first: the line's baseline is learnt before the throttled
    // site is judged, whatever the machine's load (with URLs in parallel
    // the throttled page could finish first and find no baseline).
    shape_line(&world, "change", "4mbit");
    let list: Vec<Scenario> = ["big", "throttled", "clean"]
        .iter()
        .map(|n| world.find(n).0)
        .collect();
    let (rows, results) = run_rows_with(
        &world,
        "slow-line-throttled",
        &list,
        &control,
        &["--parallel", "1"],
    );
    assert!(
        rows.iter().all(Row::ok),
        "the throttled site is still found"
    );
    let ev = evidence(&results, &world, "throttled");
    assert!(ev.contains("this line fetched other pages"), "{ev}");
}

/// Not a test: before/after figures on a randomly lossy line (issue 23) and
/// for the SNI rows at MTU 1500 (issue 20). Random loss can flake by design,
/// so this only prints; run it by hand:
///
/// ```sh
/// GW_BIN=path/to/gatewatch GW_RUNS=8 GW_LOSS=0.1 \
///   cargo test --test integration lab::links::field_figures -- --ignored --nocapture
/// ```
///
/// `GW_LOSS` drops that share of every packet crossing r1, both ways
/// (iptables `statistic --mode random`); `GW_ONLY=a,b` limits the rows;
/// `GW_LINE=1500kbit` shapes the line towards the probe.
#[test]
#[ignore = "a measurement, not a test: random loss"]
fn field_figures() {
    let Some(world) = World::start_or_skip(super::scenarios::SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    let bin = std::env::var("GW_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gatewatch").into());
    let runs: usize = std::env::var("GW_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let loss = std::env::var("GW_LOSS").unwrap_or_default();
    let only = std::env::var("GW_ONLY").unwrap_or_default();
    if let Ok(rate) = std::env::var("GW_LINE") {
        shape_line(&world, "add", &rate);
    }
    if !loss.is_empty() && loss != "0" {
        world
            .topo
            .r1
            .exec(
                "iptables",
                &[
                    "-A",
                    "FORWARD",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &loss,
                    "-j",
                    "DROP",
                ],
            )
            .unwrap();
    }
    let list: Vec<Scenario> = world
        .scenarios
        .iter()
        .filter(|s| only.is_empty() || only.split(',').any(|o| o == s.name))
        .copied()
        .collect();
    let input = write_list(&world, "figures.txt", &list);
    println!(
        "binary {bin}, {runs} runs, loss {loss:?}, {} URLs",
        list.len()
    );
    let mut tally: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for run in 0..runs {
        let out = world.dir.path().join(format!("figures-{run}.jsonl"));
        let _ = probe_command_with(&world, std::path::Path::new(&bin), &input, &out, &control)
            .output()
            .unwrap();
        let results = read_results(&out);
        let (mut false_blocked, mut missed, mut other) = (Vec::new(), Vec::new(), 0);
        for sc in &list {
            let row = Row::new(sc, results.get(&sc.url()));
            let want_blocked = sc.expect.status == "blocked";
            let got = results
                .get(&sc.url())
                .and_then(|m| m["test_keys"]["x_verdict"]["status"].as_str())
                .unwrap_or("(none)")
                .to_string();
            *tally.entry((sc.name.to_string(), got.clone())).or_default() += 1;
            if !want_blocked && got == "blocked" {
                false_blocked.push(sc.name);
            } else if want_blocked && got != "blocked" {
                missed.push(sc.name);
            } else if !row.ok() {
                other += 1;
            }
            if !row.ok() {
                let ev = results
                    .get(&sc.url())
                    .map(|m| m["test_keys"]["x_verdict"]["evidence"].to_string())
                    .unwrap_or_default();
                println!(
                    "  {}: {} ({}) {}",
                    sc.name,
                    row.got.join("/"),
                    row.detail,
                    ev.chars().take(400).collect::<String>()
                );
            }
        }
        println!(
            "run {run}: false blocked {false_blocked:?}, missed blocks {missed:?}, other mismatches {other}"
        );
    }
    for ((name, got), n) in &tally {
        println!("{name:<20} {got:<12} {n}");
    }
}
