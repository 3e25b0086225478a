//! Tests: `gatewatch trace` in a namespace lab with two router hops and a
//! censoring middlebox on the second.
//!
//! ```text
//! probe 198.51.100.10 -- r1 (.11 | 192.0.2.20) -- r2 (192.0.2.21 | 203.0.113.30) -- sites 203.0.113.40/.41/.53
//!                                                   | 192.0.2.49
//!                                                 injector 192.0.2.50
//! ```
//!
//! r2 resets TLS connections whose ClientHello carries `blocked.example`
//! (marked by an iptables string match in PREROUTING, rejected by nftables
//! before the TTL check, as a DPI box on r2's ingress link would), and
//! copies (TEE) every DNS query for a `blocked` name to the injector, which
//! answers 192.0.2.66 from whatever address the query was sent to while
//! the original query travels on (an on-path injector). The sites namespace
//! runs a real TLS server on :443 and a resolver on 203.0.113.53:53. Built
//! with the lab's namespace API (`lab::netns`); root only, skipped
//! otherwise with one line.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use std::time::Duration;

use gatewatch::trace::report::{Role, Trigger};
use gatewatch::trace::{TraceReport, TraceSettings};
use hickory_proto::op::{Message, ResponseCode};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::fakes;
use super::lab::dns::{host_of, reply};
use super::lab::netns::{Lab, Ns};

const FORGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);

/// No privilege, no namespaces: a TLS site on loopback is one hop away,
/// shows no interference, and what was not measured is listed.
#[tokio::test]
async fn trace_on_loopback_reaches_the_site_at_ttl_one_without_raw() {
    let cert = fakes::ca::self_signed(&["127.0.0.1"]);
    let site = fakes::tls::spawn(
        &cert,
        fakes::http::Behaviour::Respond(fakes::http::response(
            200,
            "OK",
            &[],
            &fakes::http::page("Site", "ok"),
        )),
    )
    .await;
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/", site.addr.port())).unwrap();
    let settings = TraceSettings {
        max_ttl: 4,
        pace: Duration::from_millis(10),
        probe_timeout: Duration::from_secs(2),
        control_name: "control.example".into(),
        use_raw: false,
        ..TraceSettings::default()
    };
    let out = gatewatch::trace::trace_url(&url, &settings).await;
    assert_eq!(out.failure, None);
    assert_eq!(out.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(out.server_hop, Some(1));
    assert!(out.findings.is_empty(), "{out:#?}");
    assert!(!out.raw_capability);
    for expected in [
        "rst_ip_ttl: disabled (--no-raw)",
        "packets_after_rst: disabled (--no-raw)",
        "dns: the URL's host is an address",
    ] {
        assert!(
            out.skipped.iter().any(|s| s == expected),
            "{:?}",
            out.skipped
        );
    }
    let tls: Vec<_> = out
        .series
        .iter()
        .filter(|s| s.trigger == Trigger::TlsClientHello)
        .collect();
    assert_eq!(tls.len(), 2, "test and control");
    for s in tls {
        // The server answers at TTL 1 and 2; the series stops there.
        let got: Vec<(u8, &str)> = s
            .probes
            .iter()
            .map(|p| (p.ttl, p.outcome.label()))
            .collect();
        assert_eq!(got, vec![(1, "resp"), (2, "resp")], "{s:#?}");
        let first = s.probes[0].response.as_deref().unwrap_or_default();
        assert!(first.starts_with("tls handshake"), "{first}");
    }
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["series"][0]["trigger"], "tcp_syn");
    assert_eq!(json["series"][0]["probes"][0]["outcome"], "response");
}

/// The total time bound is honoured and said: nothing measured reads as
/// interrupted, never as clean.
#[tokio::test]
async fn a_trace_out_of_time_says_so() {
    let site = fakes::tcp::closed_port();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/", site.port())).unwrap();
    let settings = TraceSettings {
        max_time: Duration::ZERO,
        use_raw: false,
        ..TraceSettings::default()
    };
    let out = gatewatch::trace::trace_url(&url, &settings).await;
    assert!(out.interrupted.is_some(), "{out:#?}");
    assert!(out.series.iter().all(|s| s.probes.is_empty()), "{out:#?}");
    assert!(out.findings.is_empty());
    let table = gatewatch::trace::render_table(&out);
    assert!(table.contains("interrupted: max_time"), "{table}");
}

/// A control name no ClientHello can carry is a skipped TLS series, said
/// in the report, not a silent gap.
#[tokio::test]
async fn an_unusable_control_name_is_a_listed_skip() {
    let site = fakes::tcp::closed_port();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/", site.port())).unwrap();
    let settings = TraceSettings {
        max_time: Duration::ZERO,
        control_name: "not a name!".into(),
        use_raw: false,
        ..TraceSettings::default()
    };
    let out = gatewatch::trace::trace_url(&url, &settings).await;
    assert!(
        out.skipped
            .iter()
            .any(|s| s == "stream: invalid DNS name \"not a name!\""),
        "{:?}",
        out.skipped
    );
    assert!(!out
        .series
        .iter()
        .any(|s| s.trigger == Trigger::TlsClientHello));
}

#[test]
fn trace_localises_the_sni_reset_at_hop_two_and_the_dns_injector() {
    let Some(lab) = TraceLab::start() else { return };
    let out = lab.trace("https://blocked.example/", "203.0.113.40", &[]);
    let tls = out
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::TlsClientHello)
        .unwrap_or_else(|| panic!("no TLS finding: {out:#?}"));
    assert_eq!(tls.first_hop, 2, "{out:#?}");
    assert_eq!(tls.kind, "rst");
    assert_eq!(tls.hop_address.as_deref(), Some("192.0.2.21"));
    assert_eq!(tls.previous_hop_address.as_deref(), Some("198.51.100.11"));
    assert_eq!(tls.path, "in_path", "raw sniffer saw nothing past r2");
    assert_eq!(out.server_hop, Some(3));
    assert!(out.raw_capability);
    let hops: Vec<Option<&str>> = out.hops.iter().map(|h| h.address.as_deref()).collect();
    assert_eq!(
        &hops[..2],
        &[Some("198.51.100.11"), Some("192.0.2.21")],
        "{:#?}",
        out.hops
    );

    // The resolver: forged answer from hop 2, the genuine one still comes.
    let dns = out
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::Dns)
        .unwrap_or_else(|| panic!("no DNS finding: {out:#?}"));
    assert_eq!((dns.first_hop, dns.kind.as_str()), (2, "forged_dns"));
    assert_eq!(dns.hop_address.as_deref(), Some("192.0.2.21"));
    assert_eq!(dns.path, "on_path", "{dns:#?}");

    // The non-resolver check fires for the injected name only.
    let check = |role| {
        out.non_resolver_dns
            .iter()
            .find(|c| c.role == role)
            .unwrap_or_else(|| panic!("no non-resolver check: {out:#?}"))
    };
    let test = check(Role::Test);
    assert!(test.answered);
    assert_eq!(test.first_hop, Some(2));
    assert_eq!(test.addresses, vec![FORGED.to_string()]);
    assert_eq!(test.destination, "203.0.113.40:53");
    let injected = out
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::DnsNonResolver)
        .unwrap_or_else(|| panic!("no non-resolver finding: {out:#?}"));
    assert_eq!((injected.first_hop, injected.path.as_str()), (2, "on_path"));
    assert_eq!(injected.hop_address.as_deref(), Some("192.0.2.21"));
    assert!(
        !check(Role::Control).answered,
        "control name drew an answer"
    );

    // Without raw sockets the hop is the same; what cannot be seen is said.
    let plain = lab.trace("https://blocked.example/", "203.0.113.40", &["--no-raw"]);
    let tls = plain
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::TlsClientHello)
        .unwrap_or_else(|| panic!("no TLS finding without raw: {plain:#?}"));
    assert_eq!((tls.first_hop, tls.path.as_str()), (2, "unknown"));
    assert_eq!(
        tls.hop_address.as_deref(),
        Some("192.0.2.21"),
        "from the SYN series"
    );
    assert!(!plain.raw_capability);
    assert!(plain
        .skipped
        .iter()
        .any(|s| s.starts_with("rst_ip_ttl: disabled")));
}

#[test]
fn trace_localises_the_host_reset_and_an_ip_block_at_hop_two() {
    let Some(lab) = TraceLab::start() else { return };
    let out = lab.trace("http://blocked.example/", "203.0.113.40", &[]);
    let get = out
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::HttpGet)
        .unwrap_or_else(|| panic!("no HTTP finding: {out:#?}"));
    assert_eq!((get.first_hop, get.kind.as_str()), (2, "rst"), "{out:#?}");
    assert_eq!(get.hop_address.as_deref(), Some("192.0.2.21"));
    let control = out
        .series
        .iter()
        .find(|s| s.trigger == Trigger::HttpGet && s.role == Role::Control)
        .unwrap();
    let third = control.probes.iter().find(|p| p.ttl == 3).unwrap();
    assert_eq!(
        third.response.as_deref(),
        Some("HTTP/1.1 200 OK; title \"Site\""),
        "{control:#?}"
    );

    // Every SYN to .42 is reset at r2: localised, but not confirmed (normal
    // connects fail too, so the site could be the sender).
    let out = lab.trace("https://ipblocked.example/", "203.0.113.42", &[]);
    let syn = out
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::TcpSyn)
        .unwrap_or_else(|| panic!("no SYN finding: {out:#?}"));
    assert_eq!((syn.first_hop, syn.kind.as_str()), (2, "rst_unconfirmed"));
    assert_eq!(out.server_hop, None);
}

#[test]
fn trace_finds_nothing_on_a_clean_site() {
    let Some(lab) = TraceLab::start() else { return };
    let out = lab.trace("https://clean.example/", "203.0.113.41", &[]);
    assert!(out.findings.is_empty(), "{out:#?}");
    assert_eq!(out.server_hop, Some(3));
    assert!(out.non_resolver_dns.iter().all(|c| !c.answered), "{out:#?}");
    let at_site = out
        .series
        .iter()
        .find(|s| s.trigger == Trigger::DnsNonResolver && s.role == Role::Test)
        .unwrap();
    let third = at_site.probes.iter().find(|p| p.ttl == 3).unwrap();
    assert_eq!(
        third.outcome.label(),
        "unreach",
        "the site itself: port unreachable"
    );
    let tls_test = out
        .series
        .iter()
        .find(|s| s.trigger == Trigger::TlsClientHello && s.role == Role::Test)
        .unwrap();
    // Routers at TTL 1 and 2, the server's TLS answer from TTL 3 on.
    let outcomes: Vec<&str> = tls_test.probes.iter().map(|p| p.outcome.label()).collect();
    assert_eq!(&outcomes[..3], &["icmp", "icmp", "resp"], "{tls_test:#?}");
}

#[test]
fn run_flags_the_injected_rst_by_its_ip_ttl_and_traces_the_blocked_url() {
    let Some(lab) = TraceLab::start() else { return };
    let control = lab.start_control();
    let dir = &lab.dir;
    let out = dir.path().join("out.jsonl");
    let status = lab
        .probe
        .command(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "https://tlsreset.example/", "https://clean.example/"])
        .args(["--stun", "none", "--reference", "none"])
        .args([
            "--control",
            &control,
            "--no-system-resolver",
            "--trace-blocked",
        ])
        .arg("--ca-file")
        .arg(&lab.ca_file)
        .args(["--resolver", "203.0.113.53:53"])
        .args(["--treat-as-public", "203.0.113.0/24"])
        .args(["--treat-as-public", "192.0.2.0/24"])
        .args([
            "--dns-timeout",
            "2s",
            "--tcp-timeout",
            "3s",
            "--tls-timeout",
            "3s",
        ])
        .args(["--http-timeout", "4s", "--url-deadline", "30s"])
        .args(["--probe-asn", "AS64496", "--probe-cc", "ZZ"])
        .args(["--yes", "--no-progress", "--lang", "en"])
        .arg("--output")
        .arg(&out)
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |url: &str| {
        lines
            .iter()
            .find(|m| m["input"] == url)
            .unwrap_or_else(|| {
                panic!(
                    "no line for {url}; run said {}\n{text}",
                    String::from_utf8_lossy(&status.stderr)
                )
            })
            .clone()
    };
    // Its name draws no forged DNS answer (that race would let the web
    // measurement pick the forged address and never meet the RST).
    let blocked = find("https://tlsreset.example/");
    let kinds: Vec<&str> = blocked["test_keys"]["x_injection"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kinds.contains(&"tcp.rst_ttl_mismatch"),
        "{:#}",
        blocked["test_keys"]
    );
    let ev = blocked["test_keys"]["x_injection"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "tcp.rst_ttl_mismatch")
        .unwrap();
    assert_eq!(ev["target"], "203.0.113.41:443");
    // r2 is one hop closer than the site: TTL 63 against the SYN-ACK's 62.
    let detail = ev["detail"].as_str().unwrap();
    assert!(
        detail.contains("IP TTL 63") && detail.contains("TTL 62"),
        "{detail}"
    );
    // --trace-blocked: the blocked URL carries its trace, hop 2.
    let verdict = &blocked["test_keys"]["x_verdict"];
    assert_eq!(verdict["status"], "blocked", "{verdict:#}");
    let x_trace: TraceReport = serde_json::from_value(blocked["test_keys"]["x_trace"].clone())
        .unwrap_or_else(|e| panic!("x_trace ({e}): {:#}", blocked["test_keys"]));
    let tls = x_trace
        .findings
        .iter()
        .find(|f| f.trigger == Trigger::TlsClientHello)
        .unwrap_or_else(|| panic!("no TLS finding: {x_trace:#?}"));
    eprintln!("{}", gatewatch::trace::render_table(&x_trace));
    assert_eq!((tls.first_hop, tls.kind.as_str()), (2, "rst"));
    assert_eq!(x_trace.address.as_deref(), Some("203.0.113.41"));
    let clean = find("https://clean.example/");
    assert!(
        clean["test_keys"]["x_injection"].is_null(),
        "{:#}",
        clean["test_keys"]
    );
    assert_eq!(
        clean["test_keys"]["x_verdict"]["status"], "accessible",
        "{:#}",
        clean["test_keys"]
    );
    assert!(
        clean["test_keys"]["x_trace"].is_null(),
        "only blocked URLs are traced"
    );
}

/// The trace lab: the namespaces (deleted with `lab`) and the probe's.
struct TraceLab {
    /// Deletes the namespaces and stops the servers when dropped.
    lab: Lab,
    probe: Ns,
    sites: Ns,
    /// The test CA's PEM (the sites' certificates chain to it).
    ca_file: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl TraceLab {
    fn start() -> Option<TraceLab> {
        let lab = Lab::new_or_skip(&["nft", "iptables"])?;
        let dir = tempfile::tempdir().unwrap();
        let ca = fakes::ca::TestCa::new("gatewatch trace lab CA");
        let ca_file = ca.write_pem(dir.path());
        let (probe, sites) = build(&lab, &ca).expect("build the trace lab");
        Some(TraceLab {
            lab,
            probe,
            sites,
            ca_file,
            dir,
        })
    }

    /// `gatewatch control serve` in the sites' namespace (its fetches never
    /// cross r2); returns its URL once it accepts connections.
    fn start_control(&self) -> String {
        let listen: SocketAddr = "203.0.113.60:9000".parse().unwrap();
        let ca = self.ca_file.display().to_string();
        let args = [
            "control",
            "serve",
            "--listen",
            "203.0.113.60:9000",
            "--treat-as-public",
            "203.0.113.0/24",
            "--ca-file",
            &ca,
            "--resolver",
            "203.0.113.53:53",
        ];
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_gatewatch"));
        self.lab.spawn(&self.sites, exe, &args).unwrap();
        let up = self
            .sites
            .thread(move || {
                (0..200).any(|_| {
                    let ok =
                        std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(100))
                            .is_ok();
                    if !ok {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    ok
                })
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(up, "the control server did not start");
        format!("http://{listen}")
    }

    /// Runs the real binary in the probe namespace and parses its JSON.
    fn trace(&self, url: &str, address: &str, extra: &[&str]) -> TraceReport {
        let out = self
            .probe
            .command(env!("CARGO_BIN_EXE_gatewatch"))
            .args([
                "trace",
                url,
                "--address",
                address,
                "--resolver",
                "203.0.113.53:53",
            ])
            .args(["--control-name", "control.example", "--max-ttl", "8"])
            .args(["--pace", "20ms", "--probe-timeout", "1s", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "trace failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: TraceReport =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
        // Shown with --nocapture, and on failure.
        eprintln!("{}", gatewatch::trace::render_table(&report));
        report
    }
}

/// Namespaces, links, routes, the middlebox and the servers; returns the
/// probe's namespace.
fn build(lab: &Lab, ca: &fakes::ca::TestCa) -> io::Result<(Ns, Ns)> {
    let p = lab.add_ns("tp")?;
    let r1 = lab.add_ns("tr1")?;
    let r2 = lab.add_ns("tr2")?;
    let s = lab.add_ns("ts")?;
    let inj = lab.add_ns("tinj")?;
    // Before the links exist, so every interface inherits the defaults.
    for r in [&r1, &r2] {
        r.enable_forwarding()?;
        for kv in [
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ] {
            r.exec("sysctl", &["-qw", kv])?;
        }
    }
    lab.link(&p, "p0", "198.51.100.10/25", &r1, "a0", "198.51.100.11/25")?;
    lab.link(&r1, "b0", "192.0.2.20/24", &r2, "b1", "192.0.2.21/24")?;
    lab.link(&r2, "c0", "203.0.113.30/24", &s, "c1", "203.0.113.40/24")?;
    lab.link(
        &r2,
        "d0",
        "198.51.100.129/25",
        &inj,
        "d1",
        "198.51.100.130/25",
    )?;
    s.add_addr("c1", "203.0.113.41/24")?;
    s.add_addr("c1", "203.0.113.53/24")?;
    s.add_addr("c1", "203.0.113.42/24")?;
    s.add_addr("c1", "203.0.113.60/24")?;
    for dst in ["192.0.2.0/24", "203.0.113.0/24", "198.51.100.128/25"] {
        p.add_route(dst, "198.51.100.11")?;
    }
    r1.add_route("203.0.113.0/24", "192.0.2.21")?;
    r1.add_route("198.51.100.128/25", "192.0.2.21")?;
    r2.add_route("198.51.100.0/25", "192.0.2.20")?;
    for dst in ["192.0.2.0/24", "198.51.100.0/24"] {
        s.add_route(dst, "203.0.113.30")?;
        inj.add_route(dst, "198.51.100.129")?;
    }
    // The injector takes packets for any site address as its own.
    inj.ip(&["route", "add", "local", "203.0.113.0/24", "dev", "lo"])?;
    // The middlebox on r2.
    let mark = "-t mangle -A PREROUTING -p tcp -m multiport --dports 80,443 -m string \
                --algo bm --string blocked.example -j MARK --set-mark 0x4";
    let tee = "-t mangle -A PREROUTING -p udp --dport 53 -m string --algo bm \
               --string blocked -j TEE --gateway 198.51.100.130";
    // A second SNI, reset the same way, that no DNS injector touches.
    let mark2 = "-t mangle -A PREROUTING -p tcp --dport 443 -m string --algo bm \
                 --string tlsreset.example -j MARK --set-mark 0x4";
    for rule in [mark, mark2, tee] {
        r2.exec("iptables", &rule.split_whitespace().collect::<Vec<_>>())?;
    }
    r2.nft(
        "table ip gwtrace {\n  chain pre {\n    type filter hook prerouting priority -100;\n    \
         meta mark 0x4 reject with tcp reset\n    \
         ip daddr 203.0.113.42 tcp flags syn reject with tcp reset\n  }\n}\n",
    )?;
    lab.keep(sites(&s, ca)?);
    lab.keep(plain_http(&s)?);
    for addr in ["203.0.113.53:53", "203.0.113.40:53", "203.0.113.41:53"] {
        lab.keep(dns_server(&inj, addr, |host| {
            host.starts_with("blocked.").then_some(FORGED)
        })?);
    }
    lab.keep(dns_server(&s, "203.0.113.53:53", |host| {
        Some(if host.starts_with("blocked.") {
            Ipv4Addr::new(203, 0, 113, 40)
        } else {
            Ipv4Addr::new(203, 0, 113, 41)
        })
    })?);
    Ok((p, s))
}

/// A real TLS server on :443 for every lab name.
fn sites(ns: &Ns, ca: &fakes::ca::TestCa) -> io::Result<super::lab::netns::Service> {
    let names = [
        "blocked.example",
        "clean.example",
        "control.example",
        "tlsreset.example",
    ];
    let cert = ca.issue(&names);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    ns.serve(
        || {
            let l = std::net::TcpListener::bind("0.0.0.0:443")?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        },
        move |listener: TcpListener, stop: CancellationToken| async move {
            while let Some(Ok((tcp, _))) = stop.run_until_cancelled(listener.accept()).await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let body = fakes::http::page("Site", "the same page everywhere");
                        let html = [("Content-Type", "text/html; charset=utf-8")];
                        let page = fakes::http::response(200, "OK", &html, &body);
                        let log = Default::default();
                        fakes::http::serve(tls, fakes::http::Behaviour::Respond(page), log).await;
                    }
                });
            }
        },
    )
}

/// A plain HTTP server on :80: a small page for any request.
fn plain_http(ns: &Ns) -> io::Result<super::lab::netns::Service> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ns.serve(
        || {
            let l = std::net::TcpListener::bind("0.0.0.0:80")?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        },
        |listener: TcpListener, stop: CancellationToken| async move {
            while let Some(Ok((mut tcp, _))) = stop.run_until_cancelled(listener.accept()).await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    if tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let page = "HTTP/1.1 200 OK\r\nContent-Length: 35\r\nConnection: close\r\n\r\n<html><title>Site</title>ok</html>\n";
                        let _ = tcp.write_all(page.as_bytes()).await;
                    }
                });
            }
        },
    )
}

/// A UDP DNS server on `addr` answering A queries with `answer(host)`
/// (silent when it gives `None`).
fn dns_server(
    ns: &Ns,
    addr: &'static str,
    answer: fn(&str) -> Option<Ipv4Addr>,
) -> io::Result<super::lab::netns::Service> {
    ns.serve(
        move || {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        },
        move |sock: UdpSocket, stop: CancellationToken| async move {
            let mut buf = [0u8; 1500];
            loop {
                let got: Option<io::Result<(usize, SocketAddr)>> =
                    stop.run_until_cancelled(sock.recv_from(&mut buf)).await;
                let Some(Ok((n, from))) = got else { break };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(ip) = host_of(&q).and_then(|h| answer(&h)) else {
                    continue;
                };
                let _ = sock
                    .send_to(&reply(&q, ResponseCode::NoError, Some(ip)), from)
                    .await;
            }
        },
    )
}
