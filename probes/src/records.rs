//! Records: what each measurement step observed, in OONI's data format.
//!
//! Every record carries `t0`/`t` (seconds since the measurement's [`Clock`]
//! started), a `transaction_id` and `tags`, and a `failure` that is `None`
//! on success. Field names follow OONI's df-001/002/005/006/008 so results
//! can be read with OONI's tools; our additions start with `x_`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// The clock of one measurement: every record's `t0`/`t` is relative to it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    t0: Instant,
}

impl Clock {
    /// Starts a clock now.
    pub fn start() -> Clock {
        Clock { t0: Instant::now() }
    }

    /// Seconds since the clock started.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Seconds from the clock's start to `at`.
    pub fn at(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }
}

/// The context a primitive records into: the clock, the transaction id and
/// tags to stamp on records, and the shared list of network events.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The measurement clock.
    pub clock: Clock,
    /// Stamped on every record and event made under this trace.
    pub transaction_id: u64,
    /// Stamped on every record and event made under this trace.
    pub tags: Vec<String>,
    events: Arc<Mutex<Vec<NetworkEvent>>>,
}

impl Trace {
    /// A new trace with its own clock and an empty event list.
    pub fn new() -> Trace {
        Trace {
            clock: Clock::start(),
            transaction_id: 0,
            tags: Vec::new(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A trace sharing this one's clock and event list, with another
    /// transaction id and tags.
    pub fn child(&self, transaction_id: u64, tags: Vec<String>) -> Trace {
        Trace {
            clock: self.clock,
            transaction_id,
            tags,
            events: Arc::clone(&self.events),
        }
    }

    /// Records a network event, stamped with this trace's id and tags.
    pub fn event(
        &self,
        operation: &str,
        address: Option<String>,
        num_bytes: Option<u64>,
        failure: Option<Failure>,
        t0: f64,
    ) {
        let ev = NetworkEvent {
            address,
            failure,
            num_bytes,
            operation: operation.to_string(),
            proto: Some("tcp".to_string()),
            t0,
            t: self.clock.now(),
            tags: self.tags.clone(),
            transaction_id: self.transaction_id,
        };
        if let Ok(mut v) = self.events.lock() {
            v.push(ev);
        }
    }

    /// Takes the events recorded so far, sorted by time.
    pub fn take_events(&self) -> Vec<NetworkEvent> {
        let mut v = self
            .events
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

/// Bytes that may not be UTF-8: a plain string when they are, else base64
/// (OONI's "MaybeBinaryData").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaybeBinary {
    /// Valid UTF-8.
    Text(String),
    /// Anything else.
    Binary(BinaryData),
}

impl MaybeBinary {
    /// Wraps bytes: text when they are UTF-8, base64 otherwise.
    pub fn from_bytes(b: &[u8]) -> MaybeBinary {
        match std::str::from_utf8(b) {
            Ok(s) => MaybeBinary::Text(s.to_string()),
            Err(_) => MaybeBinary::Binary(BinaryData::new(b)),
        }
    }

    /// The bytes back.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            MaybeBinary::Text(s) => s.as_bytes().to_vec(),
            MaybeBinary::Binary(b) => b.decode(),
        }
    }
}

impl Default for MaybeBinary {
    fn default() -> Self {
        MaybeBinary::Text(String::new())
    }
}

/// `{"format":"base64","data":...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryData {
    /// Always `base64`.
    pub format: String,
    /// The base64 text.
    pub data: String,
}

impl BinaryData {
    /// Encodes bytes.
    pub fn new(b: &[u8]) -> BinaryData {
        use base64::Engine;
        BinaryData {
            format: "base64".to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(b),
        }
    }

    /// Decodes; invalid base64 gives an empty vector.
    pub fn decode(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .unwrap_or_default()
    }
}

/// One answer of a DNS lookup (df-002 `answers[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsAnswer {
    /// `A`, `AAAA` or `CNAME`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub answer_type: String,
    /// The address of an A answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// The address of an AAAA answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// The target of a CNAME answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The record's TTL (absent for getaddrinfo).
    #[serde(default)]
    pub ttl: Option<u32>,
    /// The address's ASN, when a database or the control told us.
    #[serde(default)]
    pub asn: Option<u32>,
    /// The AS's name, when known.
    #[serde(default)]
    pub as_org_name: Option<String>,
}

impl DnsAnswer {
    /// The IP address of an A or AAAA answer.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.ipv4
            .as_deref()
            .or(self.ipv6.as_deref())
            .and_then(|s| s.parse().ok())
    }
}

/// One DNS reply datagram as received (our extension `x_replies`): every
/// reply to a UDP query is kept, so an injected reply racing the genuine one
/// is visible.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsReply {
    /// Arrival time, seconds on the measurement clock.
    pub t: f64,
    /// Source address of the datagram.
    pub source: String,
    /// The IP TTL of the datagram (IP_RECVTTL), when the kernel gave it.
    pub ip_ttl: Option<u8>,
    /// DNS message id.
    pub id: u16,
    /// Response code (numeric, as OONI's `rcode`); 0 and meaningless when
    /// the reply did not decode (`failure` then says so).
    pub rcode: u16,
    /// Decoded answers.
    pub answers: Vec<DnsAnswer>,
    /// The raw datagram, base64.
    pub raw: String,
    /// Why the datagram could not be used (undecodable, wrong id, ...).
    pub failure: Option<Failure>,
    /// Answer records for names we did not ask about (not the question
    /// name, nor on its CNAME chain), as `name TYPE data`: left out of
    /// `answers`, kept as evidence of a forged or hostile reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x_unasked: Vec<String>,
}

/// A DNS lookup (df-002 `queries[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsQuery {
    /// Answers of the reply used (the first valid reply for UDP).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub answers: Vec<DnsAnswer>,
    /// `getaddrinfo`, `udp`, `tcp` or `doh`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub engine: String,
    /// The failure, if the lookup failed.
    pub failure: Option<Failure>,
    /// The getaddrinfo return code, for the system resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub getaddrinfo_error: Option<i64>,
    /// The name looked up.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub hostname: String,
    /// `A`, `AAAA`, or `ANY` for getaddrinfo.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub query_type: String,
    /// The reply's raw bytes, base64 (not for getaddrinfo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_response: Option<String>,
    /// The rcode of the reply used (not for getaddrinfo). Unset when no
    /// reply could be used (undecodable, wrong id or question): a decoded
    /// unusable reply's rcode is in `x_replies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u16>,
    /// `ip:port` of the resolver, a DoH URL, or empty for the system resolver.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub resolver_address: String,
    /// Start time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t0: f64,
    /// End time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t: f64,
    /// Tags.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub tags: Vec<String>,
    /// Transaction id.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub transaction_id: u64,
    /// Every reply datagram received (UDP), in arrival order; for TCP and
    /// DoH, the reply when it decoded but could not be used (wrong id or
    /// question), with its failure.
    #[serde(
        deserialize_with = "crate::lenient::null_as_default",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub x_replies: Vec<DnsReply>,
    /// How many times the query was sent (UDP resends it after a silence,
    /// see [`crate::dns::udp`]; the system resolver may be asked twice).
    /// Absent (0) when it was sent once or not at all.
    #[serde(default, skip_serializing_if = "is_single_attempt")]
    pub x_attempts: u32,
}

fn is_single_attempt(n: &u32) -> bool {
    *n <= 1
}

impl DnsQuery {
    /// The IP addresses among the answers.
    pub fn addrs(&self) -> Vec<std::net::IpAddr> {
        self.answers.iter().filter_map(DnsAnswer::ip).collect()
    }

    /// How many times the query went out (at least 1).
    pub fn attempts(&self) -> u32 {
        self.x_attempts.max(1)
    }
}

/// The status of a TCP connect (df-005).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpStatus {
    /// Whether the connection was established.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub success: bool,
    /// The failure otherwise.
    pub failure: Option<Failure>,
    /// Deprecated v0.4 key; kept null.
    #[serde(default)]
    pub blocked: Option<bool>,
}

/// A TCP connect to one endpoint (df-005 `tcp_connect[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpConnect {
    /// The IP address.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub ip: String,
    /// The port.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub port: u16,
    /// The outcome.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub status: TcpStatus,
    /// Start time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t0: f64,
    /// End time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t: f64,
    /// Tags.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub tags: Vec<String>,
    /// Transaction id.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub transaction_id: u64,
}

impl TcpConnect {
    /// The endpoint as a socket address.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        let ip: std::net::IpAddr = self.ip.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

/// A TLS handshake (df-006 `tls_handshakes[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsHandshake {
    /// `tcp`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub network: String,
    /// `ip:port`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub address: String,
    /// The negotiated cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub cipher_suite: String,
    /// The failure, if the handshake failed (or the certificate was refused).
    pub failure: Option<Failure>,
    /// The ALPN protocol negotiated, or empty.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub negotiated_protocol: String,
    /// True when the handshake did not verify the certificate.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub no_tls_verify: bool,
    /// The peer's chain as received, leaf first (DER, base64).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub peer_certificates: Vec<BinaryData>,
    /// The SNI sent (empty when none was sent).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub server_name: String,
    /// `TLSv1.3`, `TLSv1.2`, ...
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub tls_version: String,
    /// Start time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t0: f64,
    /// End time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t: f64,
    /// Tags.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub tags: Vec<String>,
    /// Transaction id.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub transaction_id: u64,
    /// The name the chain was verified against (may differ from the SNI).
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub x_verify_as: String,
    /// What verifying the chain said, even when the handshake went on
    /// regardless (null: the chain is valid for `x_verify_as`).
    #[serde(default)]
    pub x_certificate_failure: Option<Failure>,
    /// The finer reason of `x_certificate_failure`: `expired`,
    /// `not_yet_valid`, `unknown_issuer`, `name_mismatch`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_certificate_reason: Option<String>,
    /// For an `expired`/`not_yet_valid` chain: what verifying it at a time
    /// inside the leaf's validity window said — `valid` (the chain is
    /// fine apart from the time) or a failure string. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_certificate_untimed: Option<String>,
    /// Issuer and subject of the leaf, for reading without decoding DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_leaf: Option<CertSummary>,
}

/// The readable parts of a certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertSummary {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

/// An HTTP request as sent (df-001).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRequestRecord {
    /// The request body (always empty for GET).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub body: MaybeBinary,
    /// Whether `body` was truncated.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub body_is_truncated: bool,
    /// Headers, first value of each.
    #[serde(deserialize_with = "crate::lenient::header_map")]
    pub headers: BTreeMap<String, String>,
    /// Headers in order, every value.
    #[serde(deserialize_with = "crate::lenient::header_pairs")]
    pub headers_list: Vec<(String, String)>,
    /// `GET`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub method: String,
    /// The full URL.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub url: String,
}

/// An HTTP response as received (df-001).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpResponseRecord {
    /// The body, up to the cap.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub body: MaybeBinary,
    /// True when the body reached the cap and the rest was not read.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub body_is_truncated: bool,
    /// The status code (0 when no response arrived).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub code: i64,
    /// Headers, first value of each (names lower-case).
    #[serde(deserialize_with = "crate::lenient::header_map")]
    pub headers: BTreeMap<String, String>,
    /// Headers in order, every value (names as received, lower-cased by hyper).
    #[serde(deserialize_with = "crate::lenient::header_pairs")]
    pub headers_list: Vec<(String, String)>,
    /// Bytes of body read (up to the cap).
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub x_body_length: u64,
    /// SHA-256 of the body read, hex.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub x_body_sha256: String,
    /// The `<title>`, when there is one.
    #[serde(default)]
    pub x_title: Option<String>,
}

/// How fast the body arrived (our extension, for throttling analysis).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferStats {
    /// Seconds from sending the request to the first response byte.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub ttfb: f64,
    /// Seconds from the first to the last body byte.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub body_seconds: f64,
    /// Body bytes read.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub bytes: u64,
    /// Body bytes per second: `bytes / max(body_seconds, 0.01)`
    /// ([`crate::http::rate_lower_bound`]), 0 only when no body byte arrived.
    /// When `body_seconds` is under 10 ms (a small body, often one read) the
    /// clock cannot time it and the value is a lower bound of the true rate.
    /// A bound is safe for throttling checks: on the control's side it can
    /// only make the control look slower, and on the probe's side any body
    /// big enough to be judged (64 KiB) gets a bound of at least 6.5 MB/s.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub rate_bps: f64,
}

/// One HTTP round trip (df-001 `requests[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpTransaction {
    /// `tcp`.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub network: String,
    /// `ip:port` the request went to.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub address: String,
    /// ALPN of the connection, or empty.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub alpn: String,
    /// The failure, if the round trip failed.
    pub failure: Option<Failure>,
    /// The request.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub request: HttpRequestRecord,
    /// The response (code 0 when none arrived).
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub response: HttpResponseRecord,
    /// Start time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t0: f64,
    /// End time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t: f64,
    /// Tags.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub tags: Vec<String>,
    /// Transaction id.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub transaction_id: u64,
    /// Transfer timing.
    #[serde(default)]
    pub x_transfer: TransferStats,
}

impl HttpTransaction {
    /// The `Location` of a 301/302/303/307/308 response, unresolved.
    pub fn location(&self) -> Option<&str> {
        if matches!(self.response.code, 301 | 302 | 303 | 307 | 308) {
            self.response.headers.get("location").map(String::as_str)
        } else {
            None
        }
    }
}

/// A low-level network event (df-008 `network_events[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkEvent {
    /// `ip:port`, when there is one.
    pub address: Option<String>,
    /// The failure of the operation.
    pub failure: Option<Failure>,
    /// Bytes read or written.
    pub num_bytes: Option<u64>,
    /// `connect`, `read`, `write`, `tls_handshake_start`, ...
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub operation: String,
    /// `tcp` or `udp`.
    pub proto: Option<String>,
    /// Start time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t0: f64,
    /// End time.
    #[serde(deserialize_with = "crate::lenient::null_as_default")]
    pub t: f64,
    /// Tags.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub tags: Vec<String>,
    /// Transaction id.
    #[serde(deserialize_with = "crate::lenient::null_as_default", default)]
    pub transaction_id: u64,
}
