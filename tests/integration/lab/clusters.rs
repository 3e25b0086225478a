//! Run-wide clustering end to end: the censor answers two unrelated sites
//! (different pages from the control) with the same 200 notice, which has
//! no blocking words and no fingerprint. The URL measured second is judged
//! a blockpage at once (`x_verdict.cluster`: 2 sites); the first was
//! written before the cluster existed and stays `inconclusive`, and the run
//! summary and `gatewatch compare` name both sites.

use std::process::Command;

use serde_json::Value;

use super::e2e::{probe_command, read_results, start_control, write_list};
use super::scenarios::{Censor, Expect, Scenario, Site};
use super::world::World;

const GATEWATCH: &str = env!("CARGO_BIN_EXE_gatewatch");

fn notice_row(name: &'static str, site: Site) -> Scenario {
    Scenario {
        name,
        scheme: "http",
        site,
        censor: Censor::NoticePage,
        // Which of the two is measured first is not fixed: the test below
        // checks the pair.
        expect: Expect {
            status: "blocked",
            layer: Some("http"),
            blocking: "http-diff",
            mechanism: Some("http.blockpage"),
        },
    }
}

#[test]
fn one_notice_for_two_unrelated_sites_is_a_blockpage() {
    let list = [
        notice_row("notice-news", Site::Static),
        notice_row("notice-radio", Site::Small),
    ];
    let Some(world) = World::start_or_skip(&list) else {
        return;
    };
    let control = start_control(&world);
    let input = write_list(&world, "clusters.txt", &world.scenarios);
    let out = world.dir.path().join("out.jsonl");
    let summary = world.dir.path().join("summary.json");
    let run = probe_command(&world, &input, &out, &control)
        .arg("--json-summary")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results = read_results(&out);
    let mut seen: Vec<(String, Option<u64>)> = list
        .iter()
        .map(|s| {
            let v = &results[&s.url()]["test_keys"]["x_verdict"];
            (
                v["status"].as_str().unwrap_or("").to_string(),
                v["cluster"]["sites"].as_u64(),
            )
        })
        .collect();
    seen.sort();
    println!("clustered pair: {seen:?}");
    assert_eq!(
        seen,
        vec![
            ("blocked".to_string(), Some(2)),
            ("inconclusive".to_string(), None)
        ]
    );

    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let hosts = &s["page_clusters"][0]["hosts"];
    assert_eq!(s["page_clusters"][0]["sites"], 2, "{s}");
    for h in ["notice-news.example", "notice-radio.example"] {
        assert!(hosts.as_array().unwrap().iter().any(|x| x == h), "{s}");
    }

    let cmp = Command::new(GATEWATCH)
        .args(["compare", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    let c: Value = serde_json::from_slice(&cmp.stdout)
        .unwrap_or_else(|_| panic!("compare: {}", String::from_utf8_lossy(&cmp.stderr)));
    assert_eq!(c["page_clusters"][0]["sites"], 2, "{c}");
}
