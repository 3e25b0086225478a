//! A name diverted to a middlebox, end to end with ASN data: the ISP
//! resolver sends `dns-diverted.example` to the censor's transparent proxy
//! (another network), which passes TLS through to the genuine site; the
//! twin `dns-other-node.example` is sent to another node of the site's own
//! network. The probe gets a lab ASN database (`--asn-db`, written by
//! [`super::mmdb`]): sites and their second nodes in AS64500, the censor's
//! boxes in AS64999.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::e2e::{probe_command, read_results, start_control, write_list};
use super::mmdb::write_asn_db;
use super::scenarios::SCENARIOS;
use super::world::World;

#[test]
fn a_diverted_name_is_reported_with_asn_data() {
    let list: Vec<_> = SCENARIOS
        .iter()
        .filter(|s| matches!(s.name, "clean" | "dns-diverted" | "dns-other-node"))
        .copied()
        .collect();
    assert_eq!(list.len(), 3);
    let Some(world) = World::start_or_skip(&list) else {
        return;
    };
    let db = world.dir.path().join("asn.mmdb");
    write_asn_db(
        &db,
        &[
            (Ipv4Addr::new(203, 0, 113, 0), 25, 64500, "Lab Sites"),
            (Ipv4Addr::new(203, 0, 113, 128), 26, 64500, "Lab Sites"),
            (Ipv4Addr::new(203, 0, 113, 248), 29, 64999, "Lab ISP boxes"),
        ],
    )
    .unwrap();
    let control = start_control(&world);
    let input = write_list(&world, "diverted.txt", &world.scenarios);
    let out = world.dir.path().join("out.jsonl");
    let run = probe_command(&world, &input, &out, &control)
        .arg("--asn-db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results = read_results(&out);
    // status, interference, evidence.
    type Seen = (String, Vec<String>, String);
    let verdict = |name: &str| -> Seen {
        let v = &results[&format!("https://{name}.example/")]["test_keys"]["x_verdict"];
        let interference = v["interference"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let evidence = v["evidence"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default();
        (
            v["status"].as_str().unwrap_or("").to_string(),
            interference,
            evidence,
        )
    };
    let table: Vec<(&str, Seen)> = ["clean", "dns-diverted", "dns-other-node"]
        .into_iter()
        .map(|n| (n, verdict(n)))
        .collect();
    for (n, (st, i, _)) in &table {
        println!("{n:<16} {st:<12} interference {i:?}");
    }
    let (st, i, ev) = &table[1].1;
    assert_eq!(
        (st.as_str(), i.as_slice()),
        ("accessible", &["dns.diverted".to_string()][..]),
        "{ev}"
    );
    assert!(
        ev.contains("answered 203.0.113.249 (AS64999)") && ev.contains("(AS64500)"),
        "{ev}"
    );
    for k in [0, 2] {
        let (st, i, ev) = &table[k].1;
        assert_eq!(
            (st.as_str(), i.len()),
            ("accessible", 0),
            "{}: {ev}",
            table[k].0
        );
    }
    assert!(
        table[2].1 .2.contains("the same network, by ASN"),
        "{}",
        table[2].1 .2
    );
}
