//! Generates synthetic results files for bench/report_bench.sh: LINES
//! measurements spread over four Cambodian vantage points (one file each),
//! 1,000 URLs and as many daily runs as needed, with DNS sinkholes, a
//! shared sinkhole, TLS resets, a blockpage and traced hops, so `compare`
//! and `report` exercise every aggregate. Deterministic; addresses are from
//! the documentation ranges except the published Cambodian sinkholes.
//!
//! Usage: cargo run --release --example report_gen -- LINES OUTDIR

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use gatewatch::model::{Measurement, Verdict, VerdictStatus, WebTestKeys};
use probes::records::{
    DnsAnswer, DnsQuery, HttpResponseRecord, HttpTransaction, MaybeBinary, TcpConnect, TcpStatus,
    TlsHandshake,
};
use probes::Failure;

const URLS: usize = 1000;
const CATEGORIES: [&str; 6] = ["NEWS", "HUMR", "POLR", "GMB", "LGBT", "ANON"];
const VANTAGES: [(&str, &str); 4] = [
    ("AS38623", "Metfone"),
    ("AS17976", "Cellcard"),
    ("AS45498", "Smart"),
    ("AS131207", "SINET"),
];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let lines: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "bench-out".to_string()));
    std::fs::create_dir_all(&dir)?;
    let per_vantage = lines / VANTAGES.len();
    for (v, (asn, name)) in VANTAGES.iter().enumerate() {
        let path = dir.join(format!("{}.jsonl", name.to_lowercase()));
        let mut out = BufWriter::new(std::fs::File::create(&path)?);
        for i in 0..per_vantage {
            let (day, u) = (i / URLS, i % URLS);
            let m = measurement(v, asn, name, day, u);
            serde_json::to_writer(&mut out, &m)?;
            out.write_all(b"\n")?;
            if i == per_vantage / 2 {
                out.write_all(b"{\"this line\": \"is not a measurement\"}\n")?;
            }
        }
        out.flush()?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn measurement(v: usize, asn: &str, name: &str, day: usize, u: usize) -> Measurement {
    let host = format!("site{u}.example.org");
    let url = format!("https://{host}/");
    let time = format!("2026-07-{:02} {:02}:{:02}:00", 1 + day % 28, 10 + v, u % 60);
    let control_ip = format!("203.0.113.{}", 1 + u % 250);
    // Blocking plan: URLs 0-59 sinkholed at Metfone and Cellcard (shared
    // 36.37.242.94) from day 3; 40-79 sinkholed at SINET (10.10.10.1);
    // 0-19 reset at Smart; URL 90 serves a blockpage at Smart.
    let plan: Option<(&str, &str)> = match v {
        0 | 1 if u < 60 && day >= 3 => Some(("dns.sinkhole", "36.37.242.94")),
        3 if (40..80).contains(&u) => Some(("dns.sinkhole", "10.10.10.1")),
        2 if u < 20 => Some(("tls.reset", "")),
        2 if u == 90 => Some(("http.blockpage", "")),
        _ => None,
    };
    let answer_ip = match plan {
        Some(("dns.sinkhole", ip)) => ip.to_string(),
        _ => control_ip.clone(),
    };
    let mut tk = WebTestKeys {
        agent: "redirect".to_string(),
        queries: vec![DnsQuery {
            answers: vec![DnsAnswer {
                answer_type: "A".to_string(),
                ipv4: Some(answer_ip.clone()),
                ..DnsAnswer::default()
            }],
            engine: "getaddrinfo".to_string(),
            hostname: host.clone(),
            query_type: "ANY".to_string(),
            t: 0.02,
            ..DnsQuery::default()
        }],
        tcp_connect: vec![TcpConnect {
            ip: answer_ip.clone(),
            port: 443,
            status: TcpStatus {
                success: true,
                ..TcpStatus::default()
            },
            t: 0.05,
            ..TcpConnect::default()
        }],
        tls_handshakes: vec![TlsHandshake {
            network: "tcp".to_string(),
            address: format!("{answer_ip}:443"),
            server_name: host.clone(),
            tls_version: "TLSv1.3".to_string(),
            failure: (plan.map(|p| p.0) == Some("tls.reset")).then_some(Failure::ConnectionReset),
            t: 0.1,
            ..TlsHandshake::default()
        }],
        ..WebTestKeys::default()
    };
    let blockpage = plan.map(|p| p.0) == Some("http.blockpage");
    let body = if blockpage {
        "<html><head><title>ERROR: Forbidden</title></head><body><h2>ERROR: Forbidden</h2></body></html>".to_string()
    } else {
        format!(
            "<html><head><title>Site {u}</title></head><body>{}</body></html>",
            "lorem ipsum ".repeat(40)
        )
    };
    tk.requests = vec![HttpTransaction {
        network: "tcp".to_string(),
        address: format!("{answer_ip}:443"),
        response: HttpResponseRecord {
            code: 200,
            x_body_length: body.len() as u64,
            x_body_sha256: format!("{:064x}", if blockpage { 0xb10c_u64 } else { u as u64 + 1 }),
            x_title: Some(if blockpage {
                "ERROR: Forbidden".to_string()
            } else {
                format!("Site {u}")
            }),
            body: MaybeBinary::Text(body),
            ..HttpResponseRecord::default()
        },
        t: 0.3,
        ..HttpTransaction::default()
    }];
    let mut control = gatewatch::control::protocol::ControlResponse::default();
    control.dns.addrs = vec![control_ip.clone()];
    tk.control = Some(control);
    tk.x_verdict = Some(match plan {
        Some((mech, ip)) => Verdict {
            status: VerdictStatus::Blocked,
            layer: Some(mech.split('.').next().unwrap_or("dns").to_string()),
            mechanism: Some(mech.to_string()),
            confidence: Some("likely".to_string()),
            nig_article6: Some(
                if mech == "tls.reset" {
                    "disconnect"
                } else {
                    "block"
                }
                .to_string(),
            ),
            evidence: vec![if ip.is_empty() {
                format!("The TLS handshake with {host} was reset; the control completed it.")
            } else {
                format!("The system resolver answered {ip} for {host}; the control resolved {control_ip}.")
            }],
            ..Verdict::default()
        },
        None => Verdict {
            status: VerdictStatus::Accessible,
            evidence: vec!["The page matched the control's.".to_string()],
            ..Verdict::default()
        },
    });
    if plan.map(|p| p.0) == Some("tls.reset") && day == 0 {
        tk.x_trace = Some(serde_json::json!({"findings": [{
            "trigger": "tls_client_hello", "first_hop": 3, "hop_address": "198.51.100.3",
            "kind": "rst", "path": "in_path"}]}));
    }
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        "category_code".to_string(),
        CATEGORIES[u % CATEGORIES.len()].to_string(),
    );
    Measurement {
        annotations,
        data_format_version: gatewatch::model::DATA_FORMAT_VERSION.to_string(),
        input: Some(url),
        measurement_start_time: time.clone(),
        probe_asn: asn.to_string(),
        probe_cc: "KH".to_string(),
        probe_ip: gatewatch::model::SCRUBBED_PROBE_IP.to_string(),
        probe_network_name: Some(name.to_string()),
        software_name: gatewatch::model::SOFTWARE_NAME.to_string(),
        software_version: gatewatch::model::SOFTWARE_VERSION.to_string(),
        test_keys: tk,
        test_name: gatewatch::model::TEST_NAME.to_string(),
        test_runtime: 0.4,
        test_start_time: time,
        test_version: gatewatch::model::TEST_VERSION.to_string(),
        ..Measurement::default()
    }
}
