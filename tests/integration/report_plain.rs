//! The HTML report as a reader sees it: mechanisms in plain words with a
//! legend, every chart on one scale, a print stylesheet, and no citation
//! of documents we do not ship.

use gatewatch::model::{Measurement, Verdict, VerdictStatus};

fn m(url: &str, status: VerdictStatus, mech: Option<&str>) -> String {
    let mut m = Measurement {
        test_name: "web_connectivity".into(),
        input: Some(url.into()),
        measurement_start_time: "2026-11-02 03:17:05".into(),
        probe_asn: "AS38623".into(),
        probe_cc: "KH".into(),
        probe_ip: "127.0.0.1".into(),
        probe_network_name: Some("ISPNet".into()),
        ..Measurement::default()
    };
    m.annotations.insert("category_code".into(), "NEWS".into());
    m.test_keys.x_verdict = Some(Verdict {
        status,
        layer: mech.map(|_| "dns".into()),
        mechanism: mech.map(Into::into),
        confidence: mech.map(|_| "likely".into()),
        nig_article6: mech.map(|_| "block".into()),
        evidence: mech
            .map(|_| vec!["the ISP resolver said NXDOMAIN".into()])
            .unwrap_or_default(),
        ..Verdict::default()
    });
    serde_json::to_string(&m).unwrap()
}

/// The widths of the bars titled `name: value` in the chart `label`.
fn bar_width(html: &str, chart: &str, bar: &str) -> f64 {
    let start = html
        .find(&format!("aria-label=\"{chart}\""))
        .unwrap_or_else(|| panic!("no chart {chart}"));
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let at = svg
        .find(&format!("<title>{bar}</title>"))
        .unwrap_or_else(|| panic!("no bar {bar} in {chart}"));
    let rect = &svg[svg[..at].rfind("<rect").unwrap()..at];
    let w = rect.split("width=\"").nth(1).unwrap();
    w[..w.find('"').unwrap()].parse().unwrap()
}

#[test]
fn report_uses_plain_words_one_scale_and_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![m(
        "https://blocked.example/",
        VerdictStatus::Blocked,
        Some("dns.nxdomain"),
    )];
    for i in 0..4 {
        lines.push(m(
            &format!("https://ok{i}.example/"),
            VerdictStatus::Accessible,
            None,
        ));
    }
    let file = dir.path().join("r.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let html = gatewatch::report::render_files(&[file], &[], "t", &mut |_| {}).unwrap();

    // One blocked measurement is as long in the article-6 chart as in the
    // mechanism chart, and a fifth of the category bar of five.
    let a6 = bar_width(&html, "Measurements per article-6 power", "block: 1");
    let mech = bar_width(
        &html,
        "Blocked and throttled measurements by mechanism",
        "dns.nxdomain: 1",
    );
    let cat_blocked = bar_width(&html, "Verdicts by category", "blocked: 1");
    let cat_ok = bar_width(&html, "Verdicts by category", "accessible: 4");
    assert_eq!(a6, mech, "{html}");
    assert_eq!(a6, cat_blocked);
    assert!((cat_ok - 4.0 * a6).abs() < 0.5, "{cat_ok} vs {a6}");

    let words = "the name was refused by your provider&#39;s DNS";
    assert!(
        html.contains(&format!("<dt>dns.nxdomain</dt><dd>{words}")),
        "no legend: {html}"
    );
    assert!(html.contains(&format!("dns.nxdomain — {words}")), "{html}");
    assert!(
        html.contains("1 vantage point(s): AS38623 KH ISPNet."),
        "network not named: {html}"
    );
    let labelled = dir.path().join("r.jsonl");
    let html2 =
        gatewatch::report::render_files(&[labelled], &["home".into()], "t", &mut |_| {}).unwrap();
    assert!(
        html2.contains("1 vantage point(s): home (network ISPNet)."),
        "{html2}"
    );
    assert!(html.contains("@media print{"), "no print stylesheet");
    assert!(html.contains("details::details-content{content-visibility:visible"));
    assert!(
        !html.contains("literature"),
        "cites a document we do not ship"
    );
    assert!(!html.contains('§'), "cites a document we do not ship");
}
