//! The dual-stack lab: IPv6 from 2001:db8::/32 on every link, sites with
//! AAAA records, `gatewatch run` in the probe namespace and the real control
//! server (which reaches the sites over IPv6 too).
//!
//! Rows, one run each way:
//! - `v6-open`: a dual-stack site nobody touches: accessible, and the probe
//!   connects over IPv6 as well as IPv4.
//! - `v6-block`: the censor drops TCP/443 to the site's IPv6 address only,
//!   while IPv4 works. The site loads (over IPv4), so the verdict stays
//!   `accessible`, and the evidence names the IPv6-only failure where the
//!   control connected. `v6-rst`: the same with a TCP RST instead of a drop
//!   (`connection_refused` over IPv6 only).
//! - The twin, a host without IPv6: the same two sites after the probe's
//!   IPv6 route is removed. Every IPv6 connect fails as unreachable, which
//!   is the probe's own limit: accessible, and no IPv6 sentence in the
//!   evidence.

use serde_json::Value;

use super::e2e::{probe_command, read_results, start_control, write_list};
use super::scenarios::{Censor, Expect, Scenario, Site};
use super::topology::{addr6, CENSOR_DOWN_IF};
use super::world::World;

const OPEN: Expect = Expect {
    status: "accessible",
    layer: None,
    blocking: "false",
    mechanism: None,
};

/// The sentence `analysis::family` adds for IPv6-only interference.
const V6_ONLY: &str = "over IPv6 only";

fn site(name: &'static str) -> Scenario {
    Scenario {
        name,
        scheme: "https",
        site: Site::Static,
        censor: Censor::None,
        expect: OPEN,
    }
}

/// (status, IPv6 connect failures at the probe, control connected over
/// IPv6, evidence has the IPv6-only sentence) of one measurement.
fn summary(m: &Value, v6: std::net::Ipv6Addr) -> (String, Vec<String>, Option<bool>, bool) {
    let tk = &m["test_keys"];
    let status = tk["x_verdict"]["status"].as_str().unwrap_or("").to_string();
    let prefix = format!("{v6}");
    let v6_connects: Vec<String> = tk["tcp_connect"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ip"].as_str() == Some(prefix.as_str()) && c["port"] == 443)
        .map(|c| c["status"]["failure"].as_str().unwrap_or("ok").to_string())
        .collect();
    let control = tk["control"]["tcp_connect"][format!("[{v6}]:443")]["status"].as_bool();
    let sentence = tk["x_verdict"]["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e.as_str().is_some_and(|s| s.contains(V6_ONLY)));
    (status, v6_connects, control, sentence)
}

#[test]
fn an_ipv6_only_block_is_named_and_a_host_without_ipv6_is_not_censorship() {
    let scenarios = [site("v6-open"), site("v6-block"), site("v6-rst")];
    let names = ["v6-open", "v6-block", "v6-rst"];
    let Some(world) = World::start_dual_or_skip(&scenarios, &names) else {
        return;
    };
    let (open6, blocked6) = (world.find6("v6-open"), world.find6("v6-block"));
    let reset6 = world.find6("v6-rst");
    world
        .topo
        .censor
        .nft(&format!(
            "table inet gwlab_v6 {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"{CENSOR_DOWN_IF}\" ip6 daddr {blocked6} tcp dport 443 drop\n    iifname \"{CENSOR_DOWN_IF}\" ip6 daddr {reset6} tcp dport 443 reject with tcp reset\n  }}\n}}\n"
        ))
        .expect("nft");
    let control = start_control(&world);
    let list = write_list(&world, "v6.txt", &world.scenarios);

    let mut bad = Vec::new();
    let mut run_once =
        |label: &str, out: &str, want: [(&str, std::net::Ipv6Addr, &str, bool); 3]| {
            let out = world.dir.path().join(out);
            let run = probe_command(&world, &list, &out, &control)
                .output()
                .unwrap();
            if !run.status.success() {
                bad.push(format!(
                    "{label}: gatewatch run {}: {}",
                    run.status,
                    String::from_utf8_lossy(&run.stderr)
                ));
            }
            let results = read_results(&out);
            for (name, v6, failure, sentence) in want {
                let (sc, _) = world.find(name);
                let Some(m) = results.get(&sc.url()) else {
                    bad.push(format!("{label} {name}: no result"));
                    continue;
                };
                let got = summary(m, v6);
                println!("{label:<8} {name:<9} got {got:?}");
                let want = (
                    "accessible".to_string(),
                    vec![failure.to_string()],
                    Some(true),
                    sentence,
                );
                if got != want {
                    bad.push(format!(
                        "{label} {name}: want {want:?}, got {got:?}; evidence {}",
                        m["test_keys"]["x_verdict"]["evidence"]
                    ));
                }
            }
        };
    run_once(
        "dual",
        "dual.jsonl",
        [
            ("v6-open", open6, "ok", false),
            ("v6-block", blocked6, "generic_timeout_error", true),
            ("v6-rst", reset6, "connection_refused", true),
        ],
    );
    // The twin: the same sites from a host without an IPv6 route.
    world
        .topo
        .probe
        .ip(&["-6", "route", "del", addr6::ALL])
        .expect("remove the probe's IPv6 route");
    run_once(
        "no-v6",
        "nov6.jsonl",
        [
            ("v6-open", open6, "network_unreachable", false),
            ("v6-block", blocked6, "network_unreachable", false),
            ("v6-rst", reset6, "network_unreachable", false),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

/// `trace` over IPv6 in the dual-stack lab. Its TCP SYN probe at hop
/// limits 1, 2, 3 towards an open site and towards one whose IPv6 TCP/443
/// the censor drops: ICMPv6 time exceeded (`IPV6_RECVERR`) names r1 at hop
/// 1 and the censor at hop 2; at hop 3 the open site answers and the
/// dropped one is silent, which puts the interference at the censor. Then
/// `gatewatch trace --address <IPv6>` on both: the same hop map, the open
/// site at hop 3, no server hop for the dropped one.
#[test]
fn trace_localises_an_ipv6_block_at_hop_2() {
    use gatewatch::trace::probe::{tcp_syn, ProbeContext};
    use gatewatch::trace::report::Outcome;

    let scenarios = [site("v6-open"), site("v6-block")];
    let Some(world) = World::start_dual_or_skip(&scenarios, &["v6-open", "v6-block"]) else {
        return;
    };
    let (open6, blocked6) = (world.find6("v6-open"), world.find6("v6-block"));
    world
        .topo
        .censor
        .nft(&format!(
            "table inet gwlab_v6 {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"{CENSOR_DOWN_IF}\" ip6 daddr {blocked6} tcp dport 443 drop\n  }}\n}}\n"
        ))
        .expect("nft");
    // A used line, not a cold one: neighbour discovery along the path, and
    // one TCP connection through the censor (below). Without it, in this lab
    // the censor's time exceeded for the very first TCP flow it sees (its
    // conntrack has NAT hooks) reaches the probe but no socket (the probe
    // counts it in Icmp6InErrors), so hop 2 looks silent.
    for ip in [open6, blocked6] {
        let _ = world
            .topo
            .probe
            .exec("ping", &["-6", "-c", "1", "-W", "2", &ip.to_string()]);
    }
    let got = world
        .topo
        .probe
        .thread(move || {
            let ctx = ProbeContext {
                timeout: std::time::Duration::from_millis(1500),
                listen_after: std::time::Duration::from_millis(100),
                sniffer: None,
                start: std::time::Instant::now(),
            };
            // One TCP connection through the censor first (see above).
            let _ = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from((open6, 80)),
                std::time::Duration::from_secs(2),
            );
            let mut rows = Vec::new();
            for ip in [open6, blocked6] {
                for ttl in 1..=3 {
                    // The trace's default pace between probes.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let p = tcp_syn(&ctx, std::net::SocketAddr::from((ip, 443)), ttl);
                    rows.push((ip, ttl, p.outcome, p.hop));
                }
            }
            rows
        })
        .expect("probe thread")
        .join()
        .expect("probes ran");
    let r1 = Some(addr6::R1_DOWN.to_string());
    let censor = Some(addr6::CENSOR_DOWN.to_string());
    let want = vec![
        (open6, 1, Outcome::TimeExceeded, r1.clone()),
        (open6, 2, Outcome::TimeExceeded, censor.clone()),
        (open6, 3, Outcome::Response, None),
        (blocked6, 1, Outcome::TimeExceeded, r1),
        (blocked6, 2, Outcome::TimeExceeded, censor),
        (blocked6, 3, Outcome::Silence, None),
    ];
    for row in &got {
        println!("{row:?}");
    }
    assert_eq!(got, want);

    let hops = [
        (1, Some(addr6::R1_DOWN.to_string())),
        (2, Some(addr6::CENSOR_DOWN.to_string())),
    ];
    for (name, ip, server_hop) in [("v6-open", open6, Some(3)), ("v6-block", blocked6, None)] {
        let (sc, _) = world.find(name);
        let out = world
            .topo
            .probe
            .command(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["trace", &sc.url(), "--address", &ip.to_string()])
            .args([
                "--json",
                "--no-raw",
                "--max-ttl",
                "4",
                "--probe-timeout",
                "1s",
            ])
            .args(["--pace", "20ms", "--max-time", "60s"])
            .args(["--resolver", "198.51.100.53:53"])
            .env("HOME", world.dir.path())
            .output()
            .expect("gatewatch trace");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: trace JSON: {e}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let got_hops: Vec<(u64, Option<String>)> = report["hops"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["ttl"].as_u64() <= Some(2))
            .map(|h| {
                (
                    h["ttl"].as_u64().unwrap_or(0),
                    h["address"].as_str().map(str::to_string),
                )
            })
            .collect();
        let syn_dest = report["series"][0]["destination"].as_str();
        println!(
            "trace {name}: server_hop {} hops {got_hops:?} syn to {syn_dest:?}",
            report["server_hop"]
        );
        assert_eq!(report["address"].as_str(), Some(ip.to_string().as_str()));
        assert_eq!(report["server_hop"].as_u64(), server_hop, "{name}");
        assert_eq!(got_hops, hops, "{name}");
        assert_eq!(syn_dest, Some(format!("[{ip}]:443").as_str()));
        assert!(report["failure"].is_null(), "{name}: {}", report["failure"]);
    }
}
