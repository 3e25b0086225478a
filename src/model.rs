//! The measurement: OONI's base data format (df-000) with Web Connectivity
//! test keys, plus our `x_` extensions. One [`Measurement`] is one line of a
//! results file.

use std::collections::BTreeMap;

use probes::records::{DnsQuery, HttpTransaction, NetworkEvent, TcpConnect, TlsHandshake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::control::protocol::{ControlRequest, ControlResponse};

/// `software_name` in every measurement.
pub const SOFTWARE_NAME: &str = "gatewatch";
/// `software_version` in every measurement.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// OONI's test name; our keys are a superset of Web Connectivity's.
pub const TEST_NAME: &str = "web_connectivity";
/// Our test version (OONI LTE is 0.5.28).
pub const TEST_VERSION: &str = "0.5.28-gatewatch.1";
/// OONI's data format version.
pub const DATA_FORMAT_VERSION: &str = "0.2.0";
/// What `probe_ip` always says: the probe's address is never written.
pub const SCRUBBED_PROBE_IP: &str = "127.0.0.1";

/// One measurement of one URL (df-000 base keys).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Measurement {
    /// Free-form annotations (`category_code`, `platform`, ...).
    #[serde(deserialize_with = "probes::lenient::text_map", default)]
    pub annotations: BTreeMap<String, String>,
    /// `0.2.0`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub data_format_version: String,
    /// The URL measured.
    pub input: Option<String>,
    /// UTC, `YYYY-MM-DD hh:mm:ss`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub measurement_start_time: String,
    /// `AS<n>`, `AS0` when unknown.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub probe_asn: String,
    /// Two upper-case letters, `ZZ` when unknown.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub probe_cc: String,
    /// Always `127.0.0.1`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub probe_ip: String,
    /// The network's name, when known.
    #[serde(default)]
    pub probe_network_name: Option<String>,
    /// Set by a collector.
    #[serde(default)]
    pub report_id: Option<String>,
    /// The system resolver's egress address, when known (never the probe's).
    #[serde(default)]
    pub resolver_ip: Option<String>,
    /// `gatewatch`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub software_name: String,
    /// Our version.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub software_version: String,
    /// The control(s) used, e.g. `{"backend":{"address":..,"type":"https"}}`.
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub test_helpers: BTreeMap<String, serde_json::Value>,
    /// The Web Connectivity keys.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub test_keys: WebTestKeys,
    /// `web_connectivity`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub test_name: String,
    /// Seconds this URL took.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub test_runtime: f64,
    /// When the run (the whole list) started, UTC `YYYY-MM-DD hh:mm:ss`.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub test_start_time: String,
    /// Our test version.
    #[serde(deserialize_with = "probes::lenient::null_as_default")]
    pub test_version: String,
    /// The reference time minus this machine's clock, in seconds, when a
    /// reference was available (see `run::clock`). The times above are
    /// already corrected by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_clock_offset: Option<i64>,
    /// Where the reference time came from and the local clock's own
    /// readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_clock: Option<ClockNote>,
}

/// The probe's clock against the reference time (`x_clock`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClockNote {
    /// Where the reference came from (`control x_time`, `control Date
    /// header`, `Date headers of reference targets`, or `none`).
    pub source: String,
    /// True when the local clock is off by more than the tolerance, or no
    /// reference was available: certificate validity-window failures are
    /// then not evidence of anything.
    pub in_doubt: bool,
    /// `measurement_start_time` as this machine's clock read it.
    pub local_measurement_start_time: String,
    /// `test_start_time` as this machine's clock read it.
    pub local_test_start_time: String,
}

/// An offset in seconds for people (sign dropped): `400 days`, `3 hours`, `5 minutes`.
pub fn describe_offset(secs: i64) -> String {
    let a = secs.unsigned_abs();
    // Rounded to the nearest unit: a measured offset is a second or so
    // short of the true one.
    let round = |unit: u64| (a + unit / 2) / unit;
    if a >= 2 * 86_400 {
        format!("{} days", round(86_400))
    } else if a >= 2 * 3_600 {
        format!("{} hours", round(3_600))
    } else if a >= 120 {
        format!("{} minutes", round(60))
    } else {
        format!("{a} seconds")
    }
}

/// A measurement taken while the whole network was intercepted
/// (`test_keys.x_network_interception`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkNote {
    /// Since when (UTC `YYYY-MM-DD hh:mm:ss`, reference time).
    pub since: String,
    /// The portal recognised, when one was (its host or page title).
    pub portal: Option<String>,
    /// What the reference checks saw.
    pub references: Vec<String>,
    /// The verdict before it was set aside (`blocked` ...).
    pub original_status: String,
    /// The mechanism before it was set aside.
    pub original_mechanism: Option<String>,
}

/// Web Connectivity test keys (ts-017) plus ours.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebTestKeys {
    /// `redirect`: redirects are followed.
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub agent: String,
    /// Every DNS lookup (all resolvers, all redirect depths).
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub queries: Vec<DnsQuery>,
    /// Every TCP connect.
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub tcp_connect: Vec<TcpConnect>,
    /// Every TLS handshake.
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub tls_handshakes: Vec<TlsHandshake>,
    /// Every QUIC handshake (`network: "udp"`; HTTP/3's first step).
    /// Handshakes with a harmless SNI that tell SNI filtering from a UDP
    /// drop carry the tag `quic_control_name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quic_handshakes: Vec<TlsHandshake>,
    /// The one HTTP/3 GET made over a completed QUIC handshake (`network:
    /// "udp"`, `alpn: "h3"`). OONI lists it in `requests`; it is kept apart
    /// here because `requests` is the redirect chain the analysis reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x_http3_requests: Vec<HttpTransaction>,
    /// HTTP round trips, newest first (the final response first).
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub requests: Vec<HttpTransaction>,
    /// Low-level events, sorted by time.
    #[serde(deserialize_with = "probes::lenient::null_as_default", default)]
    pub network_events: Vec<NetworkEvent>,
    /// What we asked the control.
    #[serde(default)]
    pub x_control_request: Option<ControlRequest>,
    /// The control's answer.
    #[serde(default)]
    pub control: Option<ControlResponse>,
    /// Why there is no control answer.
    #[serde(default)]
    pub control_failure: Option<String>,
    /// The failure of the system-resolver lookup.
    #[serde(default)]
    pub dns_experiment_failure: Option<String>,
    /// The failure that decided the outcome at the HTTP level.
    #[serde(default)]
    pub http_experiment_failure: Option<String>,
    /// `consistent`, `inconsistent` or null.
    #[serde(default)]
    pub dns_consistency: Option<String>,
    /// Body length ratio > 0.7.
    #[serde(default)]
    pub body_length_match: Option<bool>,
    /// min/max of the body lengths.
    #[serde(default)]
    pub body_proportion: Option<f64>,
    /// Same status code as the control.
    #[serde(default)]
    pub status_code_match: Option<bool>,
    /// A shared uncommon header name.
    #[serde(default)]
    pub headers_match: Option<bool>,
    /// Title words agree.
    #[serde(default)]
    pub title_match: Option<bool>,
    /// OONI's classic label.
    #[serde(default)]
    pub blocking: Blocking,
    /// OONI's classic accessibility.
    #[serde(default)]
    pub accessible: Option<bool>,
    /// Our verdict.
    #[serde(default)]
    pub x_verdict: Option<Verdict>,
    /// The HTTP/3 (QUIC) verdict, when QUIC was measured: beside
    /// `x_verdict`, never changing it (mechanisms `quic.timeout`,
    /// `quic.sni_block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_quic_verdict: Option<Verdict>,
    /// OONI LTE's DNS flags (1 bogon, 2 unexpected failure, 4 unexpected
    /// addresses), over every resolver at depth 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_dns_flags: Option<u32>,
    /// OONI LTE's blocking flags (1 DNS, 2 TCP/IP, 4 TLS, 8 HTTP failure,
    /// 16 HTTP diff, 32 success); not exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_blocking_flags: Option<u32>,
    /// Injection evidence found while measuring (duplicate DNS replies,
    /// odd IP TTLs, answers from non-resolvers).
    #[serde(
        deserialize_with = "probes::lenient::null_as_default",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub x_injection: Vec<InjectionEvidence>,
    /// Censor localisation, when `--trace-blocked` ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_trace: Option<serde_json::Value>,
    /// Set when the URL's measurement was cut short (Ctrl-C, deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_interrupted: Option<String>,
    /// Probes that were not run and why (e.g. `no_cap_net_raw`).
    #[serde(
        deserialize_with = "probes::lenient::null_as_default",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub x_skipped: Vec<String>,
    /// Second TLS handshakes after one failed the way an SNI filter makes
    /// it fail: the same endpoint, the ClientHello split in two TCP segments
    /// inside the server name (tag `sni_split`). Completing where the
    /// one-segment handshake failed means the filter does not reassemble.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x_sni_split: Vec<TlsHandshake>,
    /// Set when the whole network was intercepted while this URL was
    /// measured (captive portal, walled garden, dead connection); the
    /// verdict is then `inconclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_network_interception: Option<NetworkNote>,
}

/// OONI's `blocking` key: `false`, a layer string, or `null`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Blocking {
    /// `null`: could not decide.
    #[default]
    Undecided,
    /// `false`: no blocking (accessible, or down everywhere).
    No,
    /// `"dns"`.
    Dns,
    /// `"tcp_ip"`.
    TcpIp,
    /// `"http-failure"`.
    HttpFailure,
    /// `"http-diff"`.
    HttpDiff,
}

impl Blocking {
    /// The string form, or `None` for `false`/`null`.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Blocking::Dns => Some("dns"),
            Blocking::TcpIp => Some("tcp_ip"),
            Blocking::HttpFailure => Some("http-failure"),
            Blocking::HttpDiff => Some("http-diff"),
            Blocking::Undecided | Blocking::No => None,
        }
    }
}

impl Serialize for Blocking {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Blocking::Undecided => s.serialize_none(),
            Blocking::No => s.serialize_bool(false),
            other => s.serialize_str(other.as_str().unwrap_or_default()),
        }
    }
}

impl<'de> Deserialize<'de> for Blocking {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match v {
            serde_json::Value::Bool(false) => Blocking::No,
            serde_json::Value::String(s) => match s.as_str() {
                "dns" => Blocking::Dns,
                "tcp_ip" => Blocking::TcpIp,
                "http-failure" => Blocking::HttpFailure,
                "http-diff" => Blocking::HttpDiff,
                _ => Blocking::Undecided,
            },
            _ => Blocking::Undecided,
        })
    }
}

/// Our verdict for one URL (`test_keys.x_verdict`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    /// `accessible`, `blocked`, `throttled`, `down` or `inconclusive`.
    pub status: VerdictStatus,
    /// `dns`, `tcp_ip`, `tls`, `http`, `throttling`, or null.
    pub layer: Option<String>,
    /// A stable dotted name such as `dns.nxdomain` or `tls.reset`.
    pub mechanism: Option<String>,
    /// `confirmed`, `likely` or `possible` (null when not blocked).
    pub confidence: Option<String>,
    /// `block`, `disconnect`, `degrade` or null: which power of the NIG
    /// sub-decree's article 6 the observed interference corresponds to.
    pub nig_article6: Option<String>,
    /// Short sentences naming the observations behind the verdict.
    pub evidence: Vec<String>,
    /// Names of blocking fingerprints that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
    /// Interference seen beside the status, e.g. `dns.diverted` (the name
    /// led to a middlebox that passed the genuine site through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interference: Vec<String>,
    /// The probe's page was served for other sites too in this run: a
    /// blockpage nobody has fingerprinted yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<PageCluster>,
}

/// A probe-side page shared by several unrelated sites (run-wide
/// clustering, see `analysis::cluster`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageCluster {
    /// SHA-256 (hex) of the page that started the cluster.
    pub page_sha256: String,
    /// Distinct sites (hosts) that got this page so far in the run, this
    /// one included.
    pub sites: u32,
}

/// The verdict's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    /// The site loaded as it does from the control.
    Accessible,
    /// Interference was observed.
    Blocked,
    /// The site loaded, far slower than from the control.
    Throttled,
    /// The site fails from the control too.
    Down,
    /// Not enough data to decide.
    #[default]
    Inconclusive,
}

impl VerdictStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictStatus::Accessible => "accessible",
            VerdictStatus::Blocked => "blocked",
            VerdictStatus::Throttled => "throttled",
            VerdictStatus::Down => "down",
            VerdictStatus::Inconclusive => "inconclusive",
        }
    }
}

/// One piece of injection evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InjectionEvidence {
    /// `dns.duplicate_replies`, `dns.ttl_mismatch`, `dns.non_resolver_answer`,
    /// `tcp.rst_ttl_mismatch`, ...
    pub kind: String,
    /// The name or endpoint concerned.
    pub target: String,
    /// What was seen, in a sentence.
    pub detail: String,
}
