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
//! runs a real TLS server on :443 and a resolver on 203.0.113.53:53. The
//! sites and the injector are this test binary re-executed inside their
//! namespaces (the ignored `lab_helper` test). Root only; skipped otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use gatewatch::trace::report::{Role, Trigger};
use gatewatch::trace::TraceReport;

const ROLE_ENV: &str = "GATEWATCH_TRACE_LAB_ROLE";
const FORGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);

#[test]
fn trace_localises_the_sni_reset_at_hop_two_and_the_dns_injector() {
    let Some(lab) = Lab::start() else { return };
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
fn trace_finds_nothing_on_a_clean_site() {
    let Some(lab) = Lab::start() else { return };
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

/// Helper process entry: the sites or the injector, inside a namespace.
/// Does nothing unless the lab started it.
#[test]
#[ignore = "run by the trace lab inside its namespaces"]
fn lab_helper() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "sites" => helper::sites().await,
            "injector" => helper::injector().await,
            other => panic!("unknown role {other}"),
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        // Exit when the parent goes away (stdin closes).
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .unwrap();
    });
}

/// The lab: namespaces, links, rules and helper processes; all torn down
/// on drop, even when an assertion fails.
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    fn start() -> Option<Lab> {
        if !is_root() || !has_tools() {
            eprintln!("skipping trace lab: needs root with ip, iptables and nft");
            return None;
        }
        clean_stale();
        let n = next_id();
        let mut lab = Lab {
            prefix: format!("gwtr{}x{n}", std::process::id()),
            children: Vec::new(),
        };
        lab.build();
        lab.spawn("sites", "s");
        lab.spawn("injector", "inj");
        Some(lab)
    }

    fn ns(&self, short: &str) -> String {
        format!("{}{}", self.prefix, short)
    }

    fn build(&self) {
        for short in ["p", "r1", "r2", "s", "inj"] {
            ip(&["netns", "add", &self.ns(short)]);
            self.exec(short, &["ip", "link", "set", "lo", "up"]);
        }
        // Before the links exist, so every interface inherits the defaults.
        for r in ["r1", "r2"] {
            for kv in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ] {
                self.exec(r, &["sysctl", "-qw", kv]);
            }
        }
        self.link(
            "p",
            "p0",
            "198.51.100.10/25",
            "r1",
            "a0",
            "198.51.100.11/25",
        );
        self.link("r1", "b0", "192.0.2.20/24", "r2", "b1", "192.0.2.21/24");
        self.link("r2", "c0", "203.0.113.30/24", "s", "c1", "203.0.113.40/24");
        self.link(
            "r2",
            "d0",
            "198.51.100.129/25",
            "inj",
            "d1",
            "198.51.100.130/25",
        );
        self.exec("s", &["ip", "addr", "add", "203.0.113.41/24", "dev", "c1"]);
        self.exec("s", &["ip", "addr", "add", "203.0.113.53/24", "dev", "c1"]);
        self.exec(
            "p",
            &["ip", "route", "add", "default", "via", "198.51.100.11"],
        );
        self.exec(
            "r1",
            &["ip", "route", "add", "default", "via", "192.0.2.21"],
        );
        self.exec(
            "r2",
            &["ip", "route", "add", "198.51.100.0/25", "via", "192.0.2.20"],
        );
        self.exec(
            "s",
            &["ip", "route", "add", "default", "via", "203.0.113.30"],
        );
        self.exec(
            "inj",
            &["ip", "route", "add", "default", "via", "198.51.100.129"],
        );
        // The injector takes packets for any site address as its own.
        self.exec(
            "inj",
            &["ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo"],
        );
        // The middlebox on r2.
        self.exec(
            "r2",
            &[
                "iptables",
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                "443",
                "-m",
                "string",
                "--algo",
                "bm",
                "--string",
                "blocked.example",
                "-j",
                "MARK",
                "--set-mark",
                "0x4",
            ],
        );
        self.exec(
            "r2",
            &[
                "iptables",
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--string",
                "blocked",
                "-j",
                "TEE",
                "--gateway",
                "198.51.100.130",
            ],
        );
        self.exec("r2", &["nft", "add", "table", "ip", "gwtrace"]);
        let chain = "{ type filter hook prerouting priority -100 ; }";
        self.exec(
            "r2",
            &["nft", "add", "chain", "ip", "gwtrace", "pre", chain],
        );
        let rule = "meta mark 0x4 reject with tcp reset";
        self.exec("r2", &["nft", "add", "rule", "ip", "gwtrace", "pre", rule]);
    }

    fn link(&self, a: &str, a_if: &str, a_ip: &str, b: &str, b_if: &str, b_ip: &str) {
        let (na, nb) = (self.ns(a), self.ns(b));
        ip(&[
            "link", "add", a_if, "netns", &na, "type", "veth", "peer", "name", b_if, "netns", &nb,
        ]);
        self.exec(a, &["ip", "addr", "add", a_ip, "dev", a_if]);
        self.exec(b, &["ip", "addr", "add", b_ip, "dev", b_if]);
        self.exec(a, &["ip", "link", "set", a_if, "up"]);
        self.exec(b, &["ip", "link", "set", b_if, "up"]);
    }

    fn exec(&self, short: &str, cmd: &[&str]) {
        let mut args = vec!["netns", "exec"];
        let ns = self.ns(short);
        args.push(&ns);
        args.extend_from_slice(cmd);
        ip(&args);
    }

    fn spawn(&mut self, role: &str, short: &str) {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .arg(exe)
            .args([
                "--exact",
                "trace::lab_helper",
                "--ignored",
                "--nocapture",
                "-q",
            ])
            .env(ROLE_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        self.children.push(child);
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "helper {role} exited before it was ready");
            if line.trim() == "ready" {
                break;
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
    }

    /// Runs the real binary in the probe namespace and parses its JSON.
    fn trace(&self, url: &str, address: &str, extra: &[&str]) -> TraceReport {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("p"),
                env!("CARGO_BIN_EXE_gatewatch"),
            ])
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

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for short in ["p", "r1", "r2", "s", "inj"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(short)])
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn has_tools() -> bool {
    ["ip", "iptables", "nft"].iter().all(|t| {
        // Spawning is enough: the binary exists.
        Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// Removes namespaces left by a killed run (their pid is gone).
fn clean_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("gwtr") else {
            continue;
        };
        let pid = rest.split('x').next().unwrap_or_default();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

mod helper {
    //! The lab's sites and injector (run inside their namespaces).

    use super::*;
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    use tokio::net::{TcpListener, UdpSocket};

    /// A TLS server on :443 for every name, and the resolver.
    pub async fn sites() {
        let names = ["blocked.example", "clean.example", "control.example"];
        let key = rcgen::generate_simple_self_signed(names.map(String::from).to_vec()).unwrap();
        let cert = key.cert.der().clone();
        let der =
            rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], der)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("0.0.0.0:443").await.unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        let resolver = UdpSocket::bind("203.0.113.53:53").await.unwrap();
        tokio::spawn(answer_loop(resolver, |name| {
            let ip = if name.starts_with("blocked.") {
                Ipv4Addr::new(203, 0, 113, 40)
            } else {
                Ipv4Addr::new(203, 0, 113, 41)
            };
            Some(ip)
        }));
    }

    /// Forged answers for `blocked` names, from any site address.
    pub async fn injector() {
        for addr in ["203.0.113.53:53", "203.0.113.40:53", "203.0.113.41:53"] {
            let sock = UdpSocket::bind(addr).await.unwrap();
            tokio::spawn(answer_loop(sock, |name| {
                name.starts_with("blocked.").then_some(FORGED)
            }));
        }
    }

    async fn answer_loop(sock: UdpSocket, answer: fn(&str) -> Option<Ipv4Addr>) {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)): std::io::Result<(usize, SocketAddr)> =
                sock.recv_from(&mut buf).await
            else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries.first().cloned() else {
                continue;
            };
            let name = query.name().to_ascii();
            let Some(ip) = answer(&name) else { continue };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = true;
            r.metadata.recursion_available = true;
            r.metadata.message_type = MessageType::Response;
            r.add_query(query.clone());
            r.add_answer(Record::from_rdata(
                query.name().clone(),
                60,
                RData::A(A(ip)),
            ));
            if let Ok(wire) = r.to_vec() {
                let _ = sock.send_to(&wire, from).await;
            }
        }
    }
}
