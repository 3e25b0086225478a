//! HTTP/3 in the lab: `gatewatch run --quic` in the probe namespace, the
//! real control server, quinn QUIC servers beside the sites' TLS servers,
//! and the censor dropping UDP/443 to one site with nft.
//!
//! Rows: a site whose QUIC answers (reachable), the same kind of site with
//! UDP/443 dropped at the censor (`quic.timeout`; the headline verdict over
//! TCP stays `accessible`), and the twin, a site without HTTP/3 (`down` for
//! QUIC: the control cannot handshake either; not censorship).
//!
//! QUIC filtering by SNI is not a row: a QUIC Initial is encrypted with keys
//! derived from its destination connection id, so a per-packet string match
//! never sees the name; the censor would have to decrypt each Initial and
//! decide inline (NFQUEUE), which the lab does not do.

use std::net::SocketAddr;
use std::sync::Arc;

use super::e2e::{probe_command, read_results, start_control, write_list};
use super::scenarios::{Censor, Expect, Scenario, Site};
use super::topology::CENSOR_DOWN_IF;
use super::world::World;
use crate::quic_fake;

const OPEN: Expect = Expect {
    status: "accessible",
    layer: None,
    blocking: "false",
    mechanism: None,
};

/// (name, QUIC server at the site, UDP/443 dropped by the censor,
/// expected `x_quic_verdict` status and mechanism).
const ROWS: [(&str, bool, bool, &str, Option<&str>); 3] = [
    ("h3-open", true, false, "accessible", None),
    ("h3-udp-drop", true, true, "blocked", Some("quic.timeout")),
    ("no-h3", false, false, "down", None),
];

#[test]
fn udp_443_dropped_is_quic_timeout_and_a_site_without_h3_is_not_censorship() {
    let scenarios: Vec<Scenario> = ROWS
        .iter()
        .map(|r| Scenario {
            name: r.0,
            scheme: "https",
            site: Site::Static,
            censor: Censor::None,
            expect: OPEN,
        })
        .collect();
    let Some(world) = World::start_or_skip(&scenarios) else {
        return;
    };
    // QUIC servers beside the TLS servers, with the same certificate.
    let mut tls = (*world.site_tls).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut binds: Vec<SocketAddr> = Vec::new();
    let mut drops = String::new();
    for r in &ROWS {
        let (_, ip) = world.find(r.0);
        if r.1 {
            binds.push(SocketAddr::from((ip, 443)));
        }
        if r.2 {
            drops.push_str(&format!(
                "    iifname \"{CENSOR_DOWN_IF}\" ip daddr {ip} udp dport 443 drop\n"
            ));
        }
    }
    let service = world
        .topo
        .internet
        .serve(
            move || {
                binds
                    .iter()
                    .map(|a| quic_fake::try_spawn_at(config.clone(), *a))
                    .collect::<std::io::Result<Vec<_>>>()
            },
            |servers, stop| async move {
                stop.cancelled().await;
                drop(servers);
            },
        )
        .expect("QUIC servers");
    world.lab.keep(service);
    world
        .topo
        .censor
        .nft(&format!(
            "table inet gwlab_quic {{\n  chain drop_udp443 {{\n    type filter hook prerouting priority -140; policy accept;\n{drops}  }}\n}}\n"
        ))
        .expect("nft");

    let control = start_control(&world);
    let list = write_list(&world, "quic.txt", &world.scenarios);
    let out = world.dir.path().join("quic.jsonl");
    let run = probe_command(&world, &list, &out, &control)
        .arg("--quic")
        .output()
        .unwrap();
    let results = read_results(&out);
    let mut bad = Vec::new();
    for (name, _, _, status, mechanism) in ROWS {
        let (sc, ip) = world.find(name);
        let Some(m) = results.get(&sc.url()) else {
            bad.push(format!("{name}: no result"));
            continue;
        };
        let tk = &m["test_keys"];
        let headline = tk["x_verdict"]["status"].as_str();
        let q = &tk["x_quic_verdict"];
        let got = (headline, q["status"].as_str(), q["mechanism"].as_str());
        let want = (Some("accessible"), Some(status), mechanism);
        let key = format!("{ip}:443");
        let control_quic = tk["control"]["quic_handshake"][&key]["status"].as_bool();
        let probe_quic: Vec<(String, String)> = tk["quic_handshakes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        (
                            h["server_name"].as_str().unwrap_or("").to_string(),
                            h["failure"].as_str().unwrap_or("ok").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{name:<12} want {want:?} got {got:?} control QUIC {control_quic:?} probe QUIC {probe_quic:?}"
        );
        if got != want {
            bad.push(format!("{name}: want {want:?}, got {got:?}: {}", q));
        }
        // The control is not behind the censor: its QUIC handshake works
        // wherever a QUIC server runs.
        let has_h3 = name != "no-h3";
        if control_quic != Some(has_h3) {
            bad.push(format!("{name}: control QUIC {control_quic:?}"));
        }
    }
    assert!(
        bad.is_empty() && run.status.success(),
        "{bad:#?}\ngatewatch run: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}
