//! The trace report (`test_keys.x_trace`) and its terminal table.
//!
//! Shape, top-down: one [`TraceReport`] per URL; it holds one [`Series`]
//! per (trigger, name, destination), each a list of [`HopProbe`]s (one per
//! IP TTL), the merged hop map, the [`Finding`]s (first interfering hop and
//! on-path/in-path) and the list of what was skipped and why. As JSON
//! (`gatewatch trace --json`, and `test_keys.x_trace` of `run
//! --trace-blocked`), abridged:
//!
//! ```json
//! {
//!   "input": "https://blocked.example/", "host": "blocked.example",
//!   "address": "203.0.113.40", "port": 443, "control_name": "example.org",
//!   "resolver": "203.0.113.53:53", "raw_capability": false,
//!   "skipped": ["rst_ip_ttl: no_cap_net_raw", "rst_ip_id: no_cap_net_raw",
//!               "packets_after_rst: no_cap_net_raw"],
//!   "server_hop": 3,
//!   "hops": [{"ttl": 1, "address": "198.51.100.11"},
//!            {"ttl": 2, "address": "192.0.2.21"},
//!            {"ttl": 3, "address": "203.0.113.40"}],
//!   "findings": [{"trigger": "tls_client_hello", "name": "blocked.example",
//!                 "destination": "203.0.113.40:443", "first_hop": 2,
//!                 "hop_address": "192.0.2.21",
//!                 "previous_hop_address": "198.51.100.11",
//!                 "kind": "rst", "path": "unknown", "detail": "..."}],
//!   "non_resolver_dns": [{"name": "blocked.example", "role": "test",
//!                         "destination": "203.0.113.40:53", "answered": true,
//!                         "first_hop": 2, "addresses": ["192.0.2.66"]}],
//!   "series": [{"trigger": "tcp_syn", "role": "test", "name": null,
//!               "destination": "203.0.113.40:443",
//!               "probes": [{"ttl": 1, "t": 0.01, "outcome": "time_exceeded",
//!                           "hop": "198.51.100.11", "rst": false,
//!                           "icmp": [{"from": "198.51.100.11",
//!                                     "kind": "time_exceeded", "code": 0,
//!                                     "raw": false}]}]}],
//!   "failure": null, "interrupted": null, "runtime": 4.2
//! }
//! ```
//!
//! `trigger` is one of `dns` (to the resolver), `dns_non_resolver` (to the
//! site's own address), `tcp_syn`, `tls_client_hello`, `http_get`;
//! `outcome` one of `time_exceeded`, `unreachable`, `icmp_error`, `rst`,
//! `response`, `dns_answer`, `eof`, `silence`, `connect_failed`, `error`.
//! Optional per-probe keys: `response`, `dns_replies[]` (`t`, `ip_ttl`,
//! `rcode`, `addresses`), and with raw sockets `rst_ip_ttl`, `rst_ip_id`,
//! `syn_ack_ip_ttl`, `after_rst`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Everything `gatewatch trace` learned about one URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The URL traced.
    pub input: String,
    /// Its host name.
    pub host: String,
    /// The site's IPv4 address the triggers were sent to.
    pub address: Option<String>,
    /// The site's port (443 for https, 80 for http).
    pub port: u16,
    /// The name sent to the same address as a control.
    pub control_name: String,
    /// The resolver the DNS triggers went to (`ip:port`).
    pub resolver: Option<String>,
    /// Whether raw sockets (CAP_NET_RAW) were available.
    pub raw_capability: bool,
    /// What was not measured and why (`rst_ttl: no_cap_net_raw`). Not
    /// measured never means not blocked.
    pub skipped: Vec<String>,
    /// IP TTL at which the site's address answered a SYN (its hop count).
    pub server_hop: Option<u8>,
    /// Router addresses by TTL on the path to the site (from ICMP time
    /// exceeded; `None` for a hop that never answered).
    pub hops: Vec<HopAddress>,
    /// Interference found: one entry per (trigger, name) that showed it.
    pub findings: Vec<Finding>,
    /// DNS queries sent to the site's own address (which runs no resolver):
    /// any answer there proves an on-path injector.
    pub non_resolver_dns: Vec<NonResolverCheck>,
    /// Every probe, grouped by trigger.
    pub series: Vec<Series>,
    /// Why the trace could not run at all (no address, bad URL).
    pub failure: Option<String>,
    /// Set when the total time bound cut the trace short.
    pub interrupted: Option<String>,
    /// Seconds the trace took.
    pub runtime: f64,
}

/// One hop of the path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopAddress {
    /// The IP TTL the probe was sent with.
    pub ttl: u8,
    /// The router that answered with ICMP time exceeded.
    pub address: Option<String>,
}

/// What was replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A DNS query for the name to the configured resolver.
    Dns,
    /// A DNS query for the name to the site's own address.
    DnsNonResolver,
    /// A bare TCP SYN to the site's address and port.
    TcpSyn,
    /// A TLS ClientHello with the name as SNI, on an established connection.
    TlsClientHello,
    /// An HTTP GET with the name as Host, on an established connection.
    HttpGet,
}

impl Trigger {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Dns => "dns",
            Trigger::DnsNonResolver => "dns_non_resolver",
            Trigger::TcpSyn => "tcp_syn",
            Trigger::TlsClientHello => "tls_client_hello",
            Trigger::HttpGet => "http_get",
        }
    }
}

/// Test or control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The URL's own name.
    Test,
    /// The control name (`--control-name`).
    Control,
}

/// One trigger replayed at increasing TTLs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// What was sent.
    pub trigger: Trigger,
    /// Test or control.
    pub role: Role,
    /// The name carried (none for a SYN).
    pub name: Option<String>,
    /// Where it was sent (`ip:port`).
    pub destination: String,
    /// One entry per TTL, in order.
    pub probes: Vec<HopProbe>,
}

/// The main thing that came back for one TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An ICMP time exceeded from a router: the probe died on the way.
    TimeExceeded,
    /// An ICMP destination unreachable (for DNS to a non-resolver: port
    /// unreachable from the host itself).
    Unreachable,
    /// An ICMP error was reported on the socket but its sender is unknown
    /// (established TCP sockets without raw sockets).
    IcmpError,
    /// A TCP RST.
    Rst,
    /// Application data (TLS records, an HTTP response) or a SYN-ACK.
    Response,
    /// One or more DNS answers.
    DnsAnswer,
    /// The connection was closed (FIN) without data.
    Eof,
    /// Nothing at all within the listening window.
    #[default]
    Silence,
    /// The normal-TTL connection the trigger needs could not be made.
    ConnectFailed,
    /// A local error (recorded in `failure`).
    Error,
}

impl Outcome {
    /// A short label for the table.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::TimeExceeded => "icmp",
            Outcome::Unreachable => "unreach",
            Outcome::IcmpError => "icmp?",
            Outcome::Rst => "RST",
            Outcome::Response => "resp",
            Outcome::DnsAnswer => "ANSWER",
            Outcome::Eof => "EOF",
            Outcome::Silence => "-",
            Outcome::ConnectFailed => "noconn",
            Outcome::Error => "error",
        }
    }
}

/// One ICMP error matched to the probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpNote {
    /// The router or host that sent it.
    pub from: Option<String>,
    /// `time_exceeded` or `unreachable`.
    pub kind: String,
    /// The ICMP code.
    pub code: u8,
    /// Seen by the raw sniffer (true) or the socket's error queue (false).
    pub raw: bool,
}

/// One DNS reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsReplyNote {
    /// Seconds after the query was sent.
    pub t: f64,
    /// The IP TTL it arrived with (`IP_RECVTTL`).
    pub ip_ttl: Option<u8>,
    /// The response code (`NoError`, `NXDomain`, ...).
    pub rcode: String,
    /// The A records.
    pub addresses: Vec<String>,
}

/// What one probe at one TTL observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HopProbe {
    /// The IP TTL of the trigger.
    pub ttl: u8,
    /// Seconds since the trace started.
    pub t: f64,
    /// The main observation.
    pub outcome: Outcome,
    /// The router that sent ICMP time exceeded, if any.
    pub hop: Option<String>,
    /// Every ICMP error matched to this probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmp: Vec<IcmpNote>,
    /// A TCP RST arrived.
    pub rst: bool,
    /// A short description of the data that came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// DNS replies, in arrival order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_replies: Vec<DnsReplyNote>,
    /// IP TTL of the RST (raw sniffer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_ip_ttl: Option<u8>,
    /// IP-ID of the RST (raw sniffer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_ip_id: Option<u16>,
    /// IP TTL of the server's SYN-ACK on the same connection (raw sniffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_ack_ip_ttl: Option<u8>,
    /// What arrived after the RST (raw sniffer): evidence that the genuine
    /// server still got the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_rst: Option<String>,
    /// A local failure (OONI vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Interference localised for one (trigger, name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The trigger that showed it.
    pub trigger: Trigger,
    /// The name (none for a SYN).
    pub name: Option<String>,
    /// Where the trigger was sent.
    pub destination: String,
    /// The first IP TTL at which interference appeared: the censor sits
    /// between hop `first_hop - 1` and hop `first_hop`.
    pub first_hop: u8,
    /// The router at that TTL (from the control or other probes), if known.
    pub hop_address: Option<String>,
    /// The last router before it, if known.
    pub previous_hop_address: Option<String>,
    /// `rst`, `forged_dns`, `injected_response`, `blockpage`, `eof`, `drop`,
    /// or `rst_unconfirmed` (an RST to a SYN when normal connects fail
    /// too: it localises the sender, which may be the site itself).
    pub kind: String,
    /// `on_path` (an injector: the trigger travelled on), `in_path` (a
    /// dropper: it did not), or `unknown` (and why, in `detail`).
    pub path: String,
    /// The observations behind it, in a sentence.
    pub detail: String,
}

/// A DNS query to an address that runs no resolver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NonResolverCheck {
    /// The name asked for.
    pub name: String,
    /// Test or control.
    pub role: Role,
    /// Where it went (the site's address, port 53).
    pub destination: String,
    /// Whether any DNS answer came back (proof of an on-path injector).
    pub answered: bool,
    /// The lowest TTL that drew an answer.
    pub first_hop: Option<u8>,
    /// The addresses in the answers.
    pub addresses: Vec<String>,
}

/// The report as a readable table (one row per TTL, one column per series).
pub fn render_table(r: &TraceReport) -> String {
    let mut out = String::new();
    let addr = r.address.as_deref().unwrap_or("?");
    let _ = writeln!(out, "trace {} -> {}:{}", r.input, addr, r.port);
    let _ = writeln!(
        out,
        "resolver {}, control name {}, raw sockets: {}",
        r.resolver.as_deref().unwrap_or("none"),
        r.control_name,
        if r.raw_capability { "yes" } else { "no" }
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "failed: {f}");
    }
    let headers: Vec<String> = r.series.iter().map(column_title).collect();
    let widths: Vec<usize> = r
        .series
        .iter()
        .zip(&headers)
        .map(|(s, h)| {
            let cells = s.probes.iter().map(|p| cell_of(p).len());
            cells.chain([h.len(), 8]).max().unwrap_or(8)
        })
        .collect();
    let max_ttl = r
        .series
        .iter()
        .flat_map(|s| s.probes.iter().map(|p| p.ttl))
        .max()
        .unwrap_or(0);
    let _ = write!(out, "\n{:>3}  {:<16}", "ttl", "hop");
    for (h, w) in headers.iter().zip(&widths) {
        let _ = write!(out, "  {h:<w$}");
    }
    out.push('\n');
    for ttl in 1..=max_ttl {
        let hop = r
            .hops
            .iter()
            .find(|h| h.ttl == ttl)
            .and_then(|h| h.address.clone())
            .unwrap_or_else(|| "*".to_string());
        let _ = write!(out, "{ttl:>3}  {hop:<16}");
        for (s, w) in r.series.iter().zip(&widths) {
            let cell = s
                .probes
                .iter()
                .find(|p| p.ttl == ttl)
                .map(cell_of)
                .unwrap_or_default();
            let _ = write!(out, "  {cell:<w$}");
        }
        let line_end = out.trim_end_matches(' ').len();
        out.truncate(line_end);
        out.push('\n');
    }
    out.push('\n');
    if r.findings.is_empty() {
        let _ = writeln!(out, "no interference localised");
    }
    for f in &r.findings {
        let _ = writeln!(
            out,
            "{} {}: {} first at hop {} ({}), {}: {}",
            f.trigger.as_str(),
            f.name.as_deref().unwrap_or("-"),
            f.kind,
            f.first_hop,
            f.hop_address.as_deref().unwrap_or("address unknown"),
            f.path,
            f.detail
        );
    }
    for c in &r.non_resolver_dns {
        let _ = writeln!(
            out,
            "dns query for {} to non-resolver {}: {}",
            c.name,
            c.destination,
            if c.answered {
                format!(
                    "ANSWERED ({}) from hop {} -> on-path injector",
                    c.addresses.join(","),
                    c.first_hop.unwrap_or(0)
                )
            } else {
                "no answer".to_string()
            }
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    if let Some(i) = &r.interrupted {
        let _ = writeln!(out, "interrupted: {i}");
    }
    let _ = writeln!(out, "runtime {:.1} s", r.runtime);
    out
}

fn column_title(s: &Series) -> String {
    let short = match s.trigger {
        Trigger::Dns => "dns",
        Trigger::DnsNonResolver => "dns@site",
        Trigger::TcpSyn => "syn",
        Trigger::TlsClientHello => "tls",
        Trigger::HttpGet => "http",
    };
    match (&s.name, s.role) {
        (None, _) => short.to_string(),
        (Some(n), Role::Test) => format!("{short} {n}"),
        (Some(_), Role::Control) => format!("{short} (control)"),
    }
}

fn cell_of(p: &HopProbe) -> String {
    let mut cell = p.outcome.label().to_string();
    if p.outcome == Outcome::DnsAnswer {
        if let Some(first) = p.dns_replies.first() {
            cell = format!("ANSWER {}", first.addresses.join(","));
        }
    }
    if p.rst && p.outcome != Outcome::Rst {
        cell.push_str("+RST");
    }
    if p.outcome != Outcome::TimeExceeded && p.hop.is_some() {
        cell.push_str("+icmp");
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_ttl_and_says_what_was_found_and_skipped() {
        let probe = |ttl, outcome, hop: Option<&str>| HopProbe {
            ttl,
            outcome,
            hop: hop.map(str::to_string),
            rst: outcome == Outcome::Rst,
            ..HopProbe::default()
        };
        let r = TraceReport {
            input: "https://blocked.example/".into(),
            address: Some("203.0.113.40".into()),
            port: 443,
            control_name: "example.org".into(),
            skipped: vec!["rst_ip_ttl: no_cap_net_raw".into()],
            hops: vec![
                HopAddress {
                    ttl: 1,
                    address: Some("198.51.100.11".into()),
                },
                HopAddress {
                    ttl: 2,
                    address: None,
                },
            ],
            series: vec![Series {
                trigger: Trigger::TlsClientHello,
                role: Role::Test,
                name: Some("blocked.example".into()),
                destination: "203.0.113.40:443".into(),
                probes: vec![
                    probe(1, Outcome::TimeExceeded, Some("198.51.100.11")),
                    probe(2, Outcome::Rst, None),
                ],
            }],
            findings: vec![Finding {
                trigger: Trigger::TlsClientHello,
                name: Some("blocked.example".into()),
                destination: "203.0.113.40:443".into(),
                first_hop: 2,
                hop_address: None,
                previous_hop_address: Some("198.51.100.11".into()),
                kind: "rst".into(),
                path: "unknown".into(),
                detail: "RST".into(),
            }],
            ..TraceReport::default()
        };
        let t = render_table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines.contains(&"ttl  hop               tls blocked.example"),
            "{t}"
        );
        assert!(lines.contains(&"  1  198.51.100.11     icmp"), "{t}");
        assert!(lines.contains(&"  2  *                 RST"), "{t}");
        assert!(t.contains(
            "tls_client_hello blocked.example: rst first at hop 2 (address unknown), unknown"
        ));
        assert!(t.contains("skipped: rst_ip_ttl: no_cap_net_raw"));
    }
}
