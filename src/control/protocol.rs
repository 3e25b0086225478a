//! The control (test-helper) protocol: OONI's web-connectivity request and
//! response, field for field, plus our `x_` extensions. These are boundary
//! types shared by the control client and server.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// At most this many addresses of one name are measured, by the probe
/// (per lookup) and by the control (its own resolution). A name answering
/// hundreds of addresses costs no more than this.
pub const MAX_ADDRS_PER_NAME: usize = 16;

/// At most this many addresses are measured per URL and redirect depth by
/// the probe (all resolvers together).
pub const MAX_ADDRS_PER_URL: usize = 32;

/// At most this many `tcp_connect` entries per control request: every
/// address of [`MAX_ADDRS_PER_URL`] on both the http and https ports.
pub const MAX_TCP_CONNECT: usize = 2 * MAX_ADDRS_PER_URL;

/// Reads `null` as the type's default: Go test helpers marshal empty maps
/// and slices as `null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `POST /` body (OONI `THRequest`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The URL to measure.
    pub http_request: String,
    /// Headers to use; only User-Agent, Accept and Accept-Language count.
    #[serde(default, deserialize_with = "null_as_default")]
    pub http_request_headers: BTreeMap<String, Vec<String>>,
    /// `ip:port` endpoints the probe resolved.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tcp_connect: Vec<String>,
    /// QUIC opt-in: the control answers `quic_handshake` for the https
    /// endpoints when the site announces HTTP/3 (`Alt-Svc`), as oohelperd.
    #[serde(default)]
    pub x_quic_enabled: bool,
    /// With `x_quic_enabled`: QUIC handshakes even without `Alt-Svc`
    /// (the probe's `--quic`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub x_quic_always: bool,
}

/// The control's answer (OONI `THResponse`) plus our extensions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Per `ip:port`: did the control connect?
    #[serde(default, deserialize_with = "null_as_default")]
    pub tcp_connect: BTreeMap<String, ControlTcp>,
    /// Per `ip:port` (443 endpoints): did a TLS handshake with the URL's SNI
    /// verify?
    #[serde(default, deserialize_with = "null_as_default")]
    pub tls_handshake: BTreeMap<String, ControlTls>,
    /// Per `ip:port` (UDP): did a QUIC handshake with the URL's SNI and
    /// ALPN `h3` verify? Empty unless the request had `x_quic_enabled`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub quic_handshake: BTreeMap<String, ControlTls>,
    /// The page as the control fetched it (after redirects).
    #[serde(default)]
    pub http_request: ControlHttp,
    /// The page fetched once over HTTP/3 (the first verified QUIC
    /// connection); null unless `quic_handshake` was measured and one
    /// handshake verified.
    #[serde(default)]
    pub http3_request: Option<ControlHttp>,
    /// The control's DNS answer for the URL's host.
    #[serde(default)]
    pub dns: ControlDns,
    /// Per IP: ASN and flags (1 probe, 2 control, 4 bogon, 8 TLS-valid).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ip_info: BTreeMap<String, ControlIpInfo>,
    /// The redirect chain the control followed, each hop's own DNS/TCP/TLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x_redirect_chain: Vec<ControlHop>,
    /// Facts about the final body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_body: Option<ControlBody>,
    /// What the final body says (its text fingerprint), so the probe
    /// compares text rather than lengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_body_text: Option<ControlText>,
    /// SHA-256 (hex) of the leaf certificate per `ip:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub x_tls_leaf_sha256: BTreeMap<String, String>,
    /// Seconds the control's TLS handshake took per `ip:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub x_tls_handshake_time: BTreeMap<String, f64>,
    /// The final body's transfer rate in bytes/s as the control saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_transfer_rate_bps: Option<f64>,
    /// The client's public address as the control saw it. The probe uses it
    /// for its ASN lookup and scrubbing, and never stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_client_addr: Option<String>,
    /// Endpoints, addresses and URLs the control refused to contact (its
    /// address policy: special-purpose addresses, other ports, other
    /// schemes), each with the reason. Their `tcp_connect` entry says
    /// `connect_error`; this says why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub x_refused: BTreeMap<String, String>,
    /// The control's clock when it answered, UTC RFC 3339 (set by our
    /// server), so the probe can tell whether its own clock is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_time: Option<String>,
    /// The `Date` header of the control's HTTP answer, as received (set
    /// by our client; OONI's helpers send no `x_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_date_header: Option<String>,
}

/// TCP result per endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlTcp {
    /// Connected.
    pub status: bool,
    /// `connection_refused_error`, `generic_timeout_error`, `connect_error`.
    pub failure: Option<String>,
}

/// TLS result per endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlTls {
    /// SNI used.
    pub server_name: String,
    /// Handshake and verification succeeded.
    pub status: bool,
    /// OONI failure string.
    pub failure: Option<String>,
}

/// The control's HTTP result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlHttp {
    /// Body length, -1 on failure.
    pub body_length: i64,
    /// `host:port` of the HTTP/3 endpoint the final response announced in
    /// `Alt-Svc` (`h3=...`), or empty.
    #[serde(default)]
    pub discovered_h3_endpoint: String,
    /// `dns_lookup_error`, `generic_timeout_error`, `connection_refused_error`,
    /// `unknown_error`, or null.
    pub failure: Option<String>,
    /// The page title.
    #[serde(default)]
    pub title: String,
    /// Response headers (first value).
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: BTreeMap<String, String>,
    /// Status code, -1 on failure.
    pub status_code: i64,
}

impl Default for ControlHttp {
    fn default() -> Self {
        ControlHttp {
            body_length: -1,
            discovered_h3_endpoint: String::new(),
            failure: None,
            title: String::new(),
            headers: BTreeMap::new(),
            status_code: -1,
        }
    }
}

/// The control's DNS result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlDns {
    /// `dns_name_error`, `dns_server_failure`, `unknown_error`, or null.
    pub failure: Option<String>,
    /// Addresses (A and AAAA).
    #[serde(default, deserialize_with = "null_as_default")]
    pub addrs: Vec<String>,
}

/// ASN and flags of one IP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlIpInfo {
    /// ASN, 0 when unknown.
    pub asn: u32,
    /// 1 probe, 2 control, 4 bogon, 8 TLS-valid for the domain (the
    /// `FLAG_*` constants of [`ControlIpInfo`]).
    pub flags: u32,
}

impl ControlIpInfo {
    /// `flags` bit: the probe resolved this address.
    pub const FLAG_PROBE: u32 = 1;
    /// `flags` bit: the control resolved this address.
    pub const FLAG_CONTROL: u32 = 2;
    /// `flags` bit: a special-purpose (bogon) address.
    pub const FLAG_BOGON: u32 = 4;
    /// `flags` bit: a TLS handshake for the URL's name verified on it.
    pub const FLAG_TLS_VALID: u32 = 8;
}

/// A body's text fingerprint (see `analysis::pagetext`): a bottom-k sketch
/// of its visible text's features, its visible word count and the
/// blockpage words it contains.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlText {
    /// Visible words (an estimate for scripts written without spaces).
    pub words: u32,
    /// The smallest FNV-1a hashes of the distinct features, sorted (at most
    /// 128).
    #[serde(default, deserialize_with = "null_as_default")]
    pub sketch: Vec<u32>,
    /// Blocking-lexicon terms found in the text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub block_terms: Vec<String>,
}

/// One hop of the control's redirect chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlHop {
    /// The URL of this hop.
    pub url: String,
    /// DNS for this hop's host.
    pub dns: ControlDns,
    /// TCP per endpoint tried.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tcp_connect: BTreeMap<String, ControlTcp>,
    /// TLS per endpoint tried (https hops).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tls_handshake: BTreeMap<String, ControlTls>,
    /// Status code, -1 on failure.
    pub status_code: i64,
    /// Failure of the HTTP step.
    pub failure: Option<String>,
    /// The Location, for a redirect.
    #[serde(default)]
    pub location: Option<String>,
}

/// Facts about the control's final body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlBody {
    /// Bytes.
    pub length: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The first bytes as text (at most 256 characters).
    pub prefix: String,
}
