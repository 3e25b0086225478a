//! The lab, for issues 21 and 22: the probe's clock off by days and years
//! (the TLS-interception box still reads as `tls.mitm`, the genuine sites
//! never do), and a café's captive portal (every HTTP request answered
//! with the Wi-Fi login page, HTTPS dropped; DNS and the control
//! unaffected): the run stops before measuring, exit 3, nothing `blocked`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::e2e::{read_results, start_control, write_list};
use super::scenarios::SCENARIOS;
use super::topology::{addr, CENSOR_DOWN_IF};
use super::world::World;

const GATEWATCH: &str = env!("CARGO_BIN_EXE_gatewatch");
const DAY: i64 = 86_400;

/// `gatewatch run` in the probe namespace over `list`, with these
/// reference targets (`none` for none).
fn probe(world: &World, list: &Path, out: &Path, control: &str, refs: &[String]) -> Command {
    let mut c = world.topo.probe.command(GATEWATCH);
    c.arg("run")
        .args(["--stun", "none"])
        .arg("--input-file")
        .arg(list)
        .args(["--control", control])
        .args(["--resolver", &format!("{}:53", addr::PUBLIC_RESOLVER)])
        .arg("--ca-file")
        .arg(&world.ca_file);
    for r in refs {
        c.args(["--reference", r]);
    }
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

fn verdict(m: &Value) -> (String, String) {
    let v = &m["test_keys"]["x_verdict"];
    (
        v["status"].as_str().unwrap_or("").to_string(),
        v["mechanism"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_wrong_clock_never_reads_as_interception_and_interception_still_does() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    let control = start_control(&world);
    let names = ["clean", "dynamic", "tls-mitm"];
    let list: Vec<_> = names.iter().map(|n| world.find(n).0).collect();
    let input = write_list(&world, "clock.txt", &list);
    let url = |n: &str| world.find(n).0.url();
    let none = ["none".to_string()];
    let mut table = Vec::new();
    for skew in [0, -400 * DAY, -3 * DAY, 3 * DAY, 3 * 365 * DAY] {
        let out = world.dir.path().join(format!("clock{skew}.jsonl"));
        let run = probe(&world, &input, &out, &control, &none)
            .env("GATEWATCH_CLOCK_SKEW", skew.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "skew {skew}: {stderr}");
        let results: BTreeMap<String, Value> = read_results(&out);
        for n in names {
            let m = &results[&url(n)];
            let (status, mech) = verdict(m);
            table.push(format!("skew {skew:>10}s {n:<8} {status} {mech}"));
            if n == "tls-mitm" {
                // The interception box's chain: untrusted issuer, another
                // leaf than the control's — reported whatever the clock.
                assert_eq!(
                    (status.as_str(), mech.as_str()),
                    ("blocked", "tls.mitm"),
                    "{m:#}"
                );
            } else {
                assert_eq!(status, "accessible", "skew {skew} {n}: {m:#}");
            }
            if skew != 0 {
                assert_eq!(m["x_clock"]["in_doubt"], true, "{m:#}");
            }
        }
        assert_eq!(
            skew != 0,
            stderr.contains("this device's clock is"),
            "{stderr}"
        );
    }
    println!("{}", table.join("\n"));
}

const PORTAL_PORT: u16 = 8099;
const PORTAL_PAGE: &str = "<html><head><title>Riverside Cafe Wi-Fi</title></head><body>\
<h1>Welcome</h1><form method=\"post\" action=\"/login\"><label>Room or voucher code \
<input name=\"code\"></label><label><input type=\"checkbox\" name=\"terms\"> I accept the \
terms of use</label><button>Connect</button></form></body></html>";

#[test]
fn a_captive_portal_stops_the_run_and_blocks_nothing() {
    let Some(world) = World::start_or_skip(SCENARIOS) else {
        return;
    };
    // The café's router: every HTTP request from the probe goes to the
    // login page; HTTPS is dropped; DNS and the control's port pass.
    world
        .lab
        .keep(super::web::portal_box(&world.topo.censor, PORTAL_PORT, PORTAL_PAGE).unwrap());
    world
        .topo
        .censor
        .nft(&format!(
            "table ip gwlab_portal {{\n\
             chain divert {{ type nat hook prerouting priority -110; policy accept;\n\
               iifname \"{CENSOR_DOWN_IF}\" tcp dport 80 redirect to :{PORTAL_PORT}\n\
             }}\n\
             chain hold {{ type filter hook prerouting priority -150; policy accept;\n\
               iifname \"{CENSOR_DOWN_IF}\" tcp dport 443 drop\n\
             }}\n\
             }}\n"
        ))
        .unwrap();
    let control = start_control(&world);
    let names = ["clean", "clean-http", "dynamic", "slow", "http-to-https"];
    let list: Vec<_> = names.iter().map(|n| world.find(n).0).collect();
    let input = write_list(&world, "portal.txt", &list);
    let out = world.dir.path().join("portal.jsonl");
    let refs = [
        world.find("clean-http").0.url(),
        world.find("clean").0.url(),
    ];
    let run = probe(&world, &input, &out, &control, &refs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("network-wide interception (captive portal, walled garden, or the connection stopped working) from"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the login or top-up page \"Riverside Cafe Wi-Fi\""),
        "{stderr}"
    );
    // Nothing was measured: nothing can be published as blocked.
    assert!(read_results(&out).is_empty());
    println!("{stderr}");
}
