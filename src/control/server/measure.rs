//! One control measurement: DNS for the URL's host, TCP (and TLS on 443)
//! to every endpoint, and the HTTP fetch with its redirect chain — all with
//! the `probes` primitives, and every connection checked against the
//! [`AddressPolicy`] first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use probes::flow::{self, Next, Stage};
use probes::http::HttpParams;
use probes::records::{HttpTransaction, Trace};
use probes::tls::{TlsParams, TrustRoots};
use probes::Failure;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use super::resolver::{self, ResolverSpec};
use super::ssrf::{self, AddressPolicy, Refusal, TargetHost};
use crate::control::protocol::{
    ControlBody, ControlDns, ControlHop, ControlHttp, ControlIpInfo, ControlRequest,
    ControlResponse, ControlTcp, ControlText, ControlTls,
};

/// At most this many `tcp_connect` entries per request (shared with the
/// probe, which never sends more).
pub use crate::control::protocol::MAX_TCP_CONNECT;
/// At most this many of the control's own addresses are measured per host
/// (the probe's cap per name).
const MAX_OWN_ADDRS: usize = crate::control::protocol::MAX_ADDRS_PER_NAME;
/// Redirects followed: the probe's default.
const MAX_REDIRECTS: usize = probes::flow::redirect::MAX_REDIRECTS as usize;
/// The `failure` of a hop the control refused to connect for.
pub const REFUSED_FAILURE: &str = "x_refused_by_control_policy";
/// Characters of the final body kept in `x_body.prefix`.
const BODY_PREFIX_CHARS: usize = 256;

/// Timeouts of the individual steps (each also bounded by the request's
/// deadline).
#[derive(Clone, Debug)]
pub struct StepTimeouts {
    /// One DNS lookup.
    pub dns: Duration,
    /// One TCP connect.
    pub connect: Duration,
    /// One TLS handshake.
    pub tls: Duration,
    /// One HTTP round trip, body included.
    pub http: Duration,
}

impl Default for StepTimeouts {
    fn default() -> Self {
        StepTimeouts {
            dns: Duration::from_secs(4),
            connect: Duration::from_secs(10),
            tls: Duration::from_secs(10),
            http: Duration::from_secs(15),
        }
    }
}

/// Everything a measurement needs, shared by all requests.
#[derive(Debug)]
pub struct Measurer {
    /// Which addresses may be contacted.
    pub policy: AddressPolicy,
    /// The control's resolver.
    pub resolver: ResolverSpec,
    /// Trust anchors for TLS (webpki plus `--ca-file`).
    pub roots: Arc<TrustRoots>,
    /// Body bytes read per HTTP response.
    pub body_cap: usize,
    /// Step timeouts.
    pub steps: StepTimeouts,
    /// ASN lookups for `ip_info`, when a database was given.
    pub geo: Option<crate::geo::GeoDb>,
}

/// A request the control will not measure (answered with 400).
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// `http_request` is not a URL.
    #[error("http_request is not a URL: {0}")]
    NotAUrl(String),
    /// The scheme is not http or https.
    #[error("http_request must be an http or https URL, not {0:?}")]
    Scheme(String),
    /// The URL has no host.
    #[error("http_request has no host")]
    NoHost,
    /// Too many `tcp_connect` entries.
    #[error("too many tcp_connect entries: {0} (at most {MAX_TCP_CONNECT})")]
    TooManyEndpoints(usize),
}

/// Checks what can be checked before measuring; returns the parsed URL.
pub fn validate(req: &ControlRequest) -> Result<Url, BadRequest> {
    if req.tcp_connect.len() > MAX_TCP_CONNECT {
        return Err(BadRequest::TooManyEndpoints(req.tcp_connect.len()));
    }
    let url =
        Url::parse(req.http_request.trim()).map_err(|e| BadRequest::NotAUrl(e.to_string()))?;
    if ssrf::check_scheme(&url).is_err() {
        return Err(BadRequest::Scheme(url.scheme().to_string()));
    }
    if ssrf::target_host(&url).is_none() {
        return Err(BadRequest::NoHost);
    }
    Ok(url)
}

/// What was decided for one endpoint before connecting.
enum Plan {
    Measure(SocketAddr),
    Refuse(String),
}

/// The TCP (and TLS) outcome of one endpoint.
struct EndpointResult {
    key: String,
    addr: SocketAddr,
    tcp: ControlTcp,
    tls: Option<TlsResult>,
    /// Why the policy refused it (not expected: endpoints are planned).
    refused: Option<String>,
}

struct TlsResult {
    tls: ControlTls,
    leaf_sha256: Option<String>,
    seconds: f64,
}

/// How the HTTP fetch ended.
enum HopOutcome {
    Page(Box<HttpTransaction>),
    Redirect(Url),
    /// The failure in the test helper's `http_request` vocabulary.
    Failed(String),
}

impl Measurer {
    /// Measures `url` (already validated from `req`) before `deadline`: a
    /// list of named steps.
    pub async fn measure(
        self: Arc<Self>,
        req: ControlRequest,
        url: Url,
        deadline: Instant,
    ) -> ControlResponse {
        let trace = Trace::new();
        let mut resp = ControlResponse::default();
        let Some(host) = ssrf::target_host(&url) else {
            return resp;
        };
        let dns = self
            .resolve(&trace.child(1, vec!["dns".into()]), &host, deadline)
            .await;
        resp.dns = dns.dns;
        let own_addrs = dns.addrs;
        let (plans, probe_ips) = self.plan(&req, &url, &own_addrs);
        // TCP/TLS to every endpoint, in parallel with the HTTP fetch.
        let (set, quic_targets) =
            self.start_endpoints(&trace, plans, &host, &url, deadline, &mut resp);
        let headers = honoured_headers(&req);
        let (chain, outcome) = self
            .fetch(&trace, url.clone(), headers, deadline, &mut resp)
            .await;
        let tls_ok = collect_endpoints(set, &mut resp).await;
        self.record_ip_info(&probe_ips, &own_addrs, &tls_ok, &mut resp);
        let discovered = record_fetch(chain, outcome, &mut resp);
        if super::quic::wanted(&req, &discovered) {
            let timeout = bounded(self.steps.tls, deadline);
            let mut get = HttpParams::new(url);
            get.body_cap = self.body_cap;
            get.timeout = bounded(self.steps.http, deadline);
            (resp.quic_handshake, resp.http3_request) =
                super::quic::handshakes(quic_targets, &host, &self.roots, timeout, Some(get)).await;
        }
        resp
    }

    /// DNS for `host` through the control's resolver (an IP literal is its
    /// own answer).
    async fn resolve(
        &self,
        trace: &Trace,
        host: &TargetHost,
        deadline: Instant,
    ) -> resolver::Resolution {
        match host {
            TargetHost::Ip(ip) => resolver::Resolution {
                dns: ControlDns {
                    failure: None,
                    addrs: vec![ip.to_string()],
                },
                addrs: vec![*ip],
                failure: None,
            },
            TargetHost::Name(n) => {
                let timeout = bounded(self.steps.dns, deadline);
                resolver::resolve(&self.resolver, trace, n, &self.roots, timeout).await
            }
        }
    }

    /// The endpoints: the probe's (`tcp_connect`), then the control's own
    /// addresses on the URL's ports, each decided before any connection.
    /// Also returns the probe's addresses.
    fn plan(
        &self,
        req: &ControlRequest,
        url: &Url,
        own_addrs: &[IpAddr],
    ) -> (BTreeMap<String, Plan>, BTreeSet<IpAddr>) {
        let ports: Vec<u16> = match url.port() {
            Some(p) => vec![p],
            None if url.scheme() == "https" => vec![443],
            None => vec![80, 443],
        };
        let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
        let mut probe_ips: BTreeSet<IpAddr> = BTreeSet::new();
        for s in &req.tcp_connect {
            let plan = match ssrf::parse_endpoint(s) {
                Ok(sa) => {
                    probe_ips.insert(sa.ip());
                    self.plan_endpoint(url, sa)
                }
                Err(r) => Plan::Refuse(r.to_string()),
            };
            plans.insert(s.clone(), plan);
        }
        for ip in own_addrs.iter().take(MAX_OWN_ADDRS) {
            for port in &ports {
                let sa = SocketAddr::new(*ip, *port);
                plans
                    .entry(sa.to_string())
                    .or_insert_with(|| self.plan_endpoint(url, sa));
            }
        }
        (plans, probe_ips)
    }

    /// Records the refused endpoints and starts the others (TLS too on 443
    /// and on an https URL's port). Returns the running endpoints and the
    /// QUIC targets (the https URL's port).
    fn start_endpoints(
        self: &Arc<Self>,
        trace: &Trace,
        plans: BTreeMap<String, Plan>,
        host: &TargetHost,
        url: &Url,
        deadline: Instant,
        resp: &mut ControlResponse,
    ) -> (JoinSet<EndpointResult>, Vec<SocketAddr>) {
        let tls_port = if url.scheme() == "https" {
            url.port_or_known_default()
        } else {
            None
        };
        let mut set = JoinSet::new();
        let mut quic_targets = Vec::new();
        for (key, plan) in plans {
            match plan {
                Plan::Refuse(reason) => {
                    resp.tcp_connect.insert(key.clone(), refused_tcp());
                    resp.x_refused.insert(key, reason);
                }
                Plan::Measure(addr) => {
                    let me = Arc::clone(self);
                    let tr = trace.child(2, vec!["tcptls".into()]);
                    let with_tls = addr.port() == 443 || Some(addr.port()) == tls_port;
                    if Some(addr.port()) == tls_port {
                        quic_targets.push(addr);
                    }
                    let h = with_tls.then(|| host.clone());
                    set.spawn(async move { me.measure_endpoint(tr, key, addr, h, deadline).await });
                }
            }
        }
        (set, quic_targets)
    }

    /// `ip_info` over the probe's and the control's addresses.
    fn record_ip_info(
        &self,
        probe_ips: &BTreeSet<IpAddr>,
        own_addrs: &[IpAddr],
        tls_ok: &BTreeSet<IpAddr>,
        resp: &mut ControlResponse,
    ) {
        let own: BTreeSet<IpAddr> = own_addrs.iter().copied().collect();
        for ip in probe_ips.union(&own) {
            let mut flags = 0;
            if probe_ips.contains(ip) {
                flags |= ControlIpInfo::FLAG_PROBE;
            }
            if own.contains(ip) {
                flags |= ControlIpInfo::FLAG_CONTROL;
            }
            if !self.policy.is_public(*ip) {
                flags |= ControlIpInfo::FLAG_BOGON;
            }
            if tls_ok.contains(ip) {
                flags |= ControlIpInfo::FLAG_TLS_VALID;
            }
            resp.ip_info.insert(
                ip.to_string(),
                ControlIpInfo {
                    asn: self.asn(*ip),
                    flags,
                },
            );
        }
    }

    /// The ASN of a public address, 0 when unknown.
    fn asn(&self, ip: IpAddr) -> u32 {
        match &self.geo {
            Some(g) if self.policy.is_public(ip) => g.asn(ip).unwrap_or(0),
            _ => 0,
        }
    }

    /// Decides whether `sa` may be contacted for `url`.
    fn plan_endpoint(&self, url: &Url, sa: SocketAddr) -> Plan {
        if !ssrf::port_allowed(url, sa.port()) {
            return Plan::Refuse(Refusal::Port(sa.port()).to_string());
        }
        match self.policy.check(sa.ip()) {
            Ok(()) => Plan::Measure(sa),
            Err(r) => Plan::Refuse(r.to_string()),
        }
    }

    /// The handshake parameters for `host` (the one builder the probe uses
    /// too), bounded by `deadline`.
    fn tls_params(&self, host: &TargetHost, deadline: Instant) -> TlsParams {
        let host = match host {
            TargetHost::Ip(IpAddr::V4(a)) => url::Host::Ipv4(*a),
            TargetHost::Ip(IpAddr::V6(a)) => url::Host::Ipv6(*a),
            TargetHost::Name(n) => url::Host::Domain(n.as_str()),
        };
        flow::tls_params(
            &host,
            Arc::clone(&self.roots),
            bounded(self.steps.tls, deadline),
            0,
        )
    }

    /// TCP connect, then (when `tls` names the host) a verified handshake:
    /// [`flow::connect`], as the probe's endpoint flows.
    async fn measure_endpoint(
        &self,
        trace: Trace,
        key: String,
        addr: SocketAddr,
        tls: Option<TargetHost>,
        deadline: Instant,
    ) -> EndpointResult {
        let params = tls.as_ref().map(|h| self.tls_params(h, deadline));
        let timeout = bounded(self.steps.connect, deadline);
        let connected =
            match flow::connect(&trace, addr, timeout, params.as_ref(), &self.policy).await {
                Ok(c) => c,
                Err(flow::Refused(reason)) => {
                    // Planned endpoints were checked already; say so anyway.
                    return EndpointResult {
                        key,
                        addr,
                        tcp: refused_tcp(),
                        tls: None,
                        refused: Some(reason),
                    };
                }
            };
        let tcp = control_tcp(&connected);
        let tls = connected.tls.map(|hs| {
            let leaf_sha256 = hs.x_leaf.as_ref().map(|l| l.sha256.clone()).or_else(|| {
                hs.peer_certificates
                    .first()
                    .map(|c| hex::encode(Sha256::digest(c.decode())))
            });
            TlsResult {
                tls: control_tls(&hs, params.as_ref()),
                leaf_sha256,
                seconds: (hs.t - hs.t0).max(0.0),
            }
        });
        EndpointResult {
            key,
            addr,
            tcp,
            tls,
            refused: None,
        }
    }

    /// Fetches `url`, following redirects with fresh DNS/TCP/TLS per hop.
    async fn fetch(
        &self,
        trace: &Trace,
        mut url: Url,
        headers: Vec<(String, String)>,
        deadline: Instant,
        resp: &mut ControlResponse,
    ) -> (Vec<ControlHop>, HopOutcome) {
        let mut chain = Vec::new();
        for n in 0..=MAX_REDIRECTS {
            let tr = trace.child(10 + n as u64, vec![format!("redirect_{n}")]);
            let (hop, outcome) = self.fetch_hop(&tr, &url, &headers, deadline, resp).await;
            chain.push(hop);
            match outcome {
                HopOutcome::Redirect(next) => url = next,
                other => return (chain, other),
            }
        }
        let too_many = Failure::parse(probes::flow::redirect::TOO_MANY_REDIRECTS);
        (chain, HopOutcome::Failed(too_many.helper_http().into()))
    }

    /// A hop's host and addresses: its scheme checked, its own DNS. On
    /// failure, the hop says why and the helper's `http_request` word is
    /// returned.
    async fn hop_addrs(
        &self,
        trace: &Trace,
        url: &Url,
        deadline: Instant,
        hop: &mut ControlHop,
        resp: &mut ControlResponse,
    ) -> Result<(TargetHost, Vec<IpAddr>), &'static str> {
        if let Err(r) = ssrf::check_scheme(url) {
            hop.failure = Some(REFUSED_FAILURE.into());
            resp.x_refused.insert(url.to_string(), r.to_string());
            return Err("unknown_error");
        }
        let Some(host) = ssrf::target_host(url) else {
            hop.failure = Some(Failure::HttpInvalidRedirectLocationHost.to_string());
            return Err("unknown_error");
        };
        let r = self.resolve(trace, &host, deadline).await;
        hop.dns = r.dns;
        if r.addrs.is_empty() {
            let f = r.failure.unwrap_or(Failure::DnsNoAnswer);
            hop.failure = Some(f.to_string());
            return Err("dns_lookup_error");
        }
        Ok((host, r.addrs))
    }

    /// One hop of the fetch: its own DNS, TCP, TLS and GET.
    async fn fetch_hop(
        &self,
        trace: &Trace,
        url: &Url,
        headers: &[(String, String)],
        deadline: Instant,
        resp: &mut ControlResponse,
    ) -> (ControlHop, HopOutcome) {
        let mut hop = ControlHop {
            url: url.to_string(),
            status_code: -1,
            ..ControlHop::default()
        };
        let (host, addrs) = match self.hop_addrs(trace, url, deadline, &mut hop, resp).await {
            Ok(found) => found,
            Err(helper) => return (hop, HopOutcome::Failed(helper.into())),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let params = (url.scheme() == "https").then(|| self.tls_params(&host, deadline));
        let mut any_allowed = false;
        let mut last_tcp_failure: Option<Failure> = None;
        for ip in addrs.into_iter().take(MAX_OWN_ADDRS) {
            let addr = SocketAddr::new(ip, port);
            let key = addr.to_string();
            let timeout = bounded(self.steps.connect, deadline);
            let connected =
                match flow::connect(trace, addr, timeout, params.as_ref(), &self.policy).await {
                    Ok(c) => c,
                    Err(flow::Refused(reason)) => {
                        hop.tcp_connect.insert(key.clone(), refused_tcp());
                        resp.x_refused.insert(key, reason);
                        continue;
                    }
                };
            any_allowed = true;
            hop.tcp_connect.insert(key.clone(), control_tcp(&connected));
            if let Some(hs) = &connected.tls {
                hop.tls_handshake
                    .insert(key, control_tls(hs, params.as_ref()));
            }
            let (conn, alpn) = match connected.conn {
                Ok(c) => c,
                Err((Stage::Tcp, f)) => {
                    last_tcp_failure = Some(f);
                    continue;
                }
                Err((Stage::Tls, f)) => return failed(hop, f),
            };
            let get = HttpParams {
                url: url.clone(),
                host_header: None,
                headers: headers.to_vec(),
                body_cap: self.body_cap,
                timeout: bounded(self.steps.http, deadline),
            };
            let txn = flow::fetch(trace, conn, addr, &alpn, &get).await;
            if txn.response.code > 0 {
                hop.status_code = txn.response.code;
            }
            hop.location = txn.location().map(str::to_string);
            return match flow::next(url, &txn) {
                Next::Redirect(next) => (hop, HopOutcome::Redirect(next)),
                Next::Failed(f) => failed(hop, f),
                Next::Final => (hop, HopOutcome::Page(Box::new(txn))),
            };
        }
        if !any_allowed {
            hop.failure = Some(REFUSED_FAILURE.into());
            // OONI's helper resolves through a resolver that rejects bogon
            // answers, so a name resolving only to them is a DNS failure.
            let f = match host {
                TargetHost::Name(_) => "dns_lookup_error",
                TargetHost::Ip(_) => "unknown_error",
            };
            return (hop, HopOutcome::Failed(f.into()));
        }
        failed(hop, last_tcp_failure.unwrap_or(Failure::GenericTimeout))
    }
}

/// A hop that failed with `f`: the failure string on the hop, the legacy
/// helper's name for it as the `http_request` failure.
fn failed(mut hop: ControlHop, f: Failure) -> (ControlHop, HopOutcome) {
    let helper = f.helper_http().to_string();
    hop.failure = Some(f.to_string());
    (hop, HopOutcome::Failed(helper))
}

/// The `tcp_connect` entry of an endpoint the policy refused.
fn refused_tcp() -> ControlTcp {
    ControlTcp {
        status: false,
        failure: Some("connect_error".into()),
    }
}

/// The `tcp_connect` entry of a connect, in the legacy helper's words.
fn control_tcp(c: &flow::Connected) -> ControlTcp {
    let failure = match &c.conn {
        Err((Stage::Tcp, f)) => Some(f.helper_tcp().to_string()),
        _ => None,
    };
    ControlTcp {
        status: failure.is_none(),
        failure,
    }
}

/// The `tls_handshake` entry of a handshake (failure as the probe records
/// it), named for the host the chain was judged against.
fn control_tls(hs: &probes::records::TlsHandshake, params: Option<&TlsParams>) -> ControlTls {
    ControlTls {
        server_name: params.map(|p| p.verify_as.clone()).unwrap_or_default(),
        status: hs.failure.is_none(),
        failure: hs.failure.as_ref().map(Failure::to_string),
    }
}

/// Waits for the endpoints and records them; returns the addresses whose
/// TLS handshake succeeded.
async fn collect_endpoints(
    mut set: JoinSet<EndpointResult>,
    resp: &mut ControlResponse,
) -> BTreeSet<IpAddr> {
    let mut tls_ok: BTreeSet<IpAddr> = BTreeSet::new();
    while let Some(r) = set.join_next().await {
        let Ok(r) = r else { continue };
        if let Some(reason) = r.refused {
            resp.x_refused.insert(r.key.clone(), reason);
        }
        resp.tcp_connect.insert(r.key.clone(), r.tcp);
        if let Some(t) = r.tls {
            if t.tls.status {
                tls_ok.insert(r.addr.ip());
            }
            if let Some(sha) = t.leaf_sha256 {
                resp.x_tls_leaf_sha256.insert(r.key.clone(), sha);
            }
            resp.x_tls_handshake_time.insert(r.key.clone(), t.seconds);
            resp.tls_handshake.insert(r.key, t.tls);
        }
    }
    tls_ok
}

/// Records the redirect chain and how the fetch ended (`http_request`, the
/// body's facts); returns the HTTP/3 endpoint the final response
/// announced, or "".
fn record_fetch(chain: Vec<ControlHop>, outcome: HopOutcome, resp: &mut ControlResponse) -> String {
    let final_url = chain.last().and_then(|h| Url::parse(&h.url).ok());
    resp.x_redirect_chain = chain;
    let txn = match outcome {
        HopOutcome::Page(txn) => txn,
        HopOutcome::Failed(f) => {
            resp.http_request = ControlHttp {
                failure: Some(f),
                ..ControlHttp::default()
            };
            return String::new();
        }
        HopOutcome::Redirect(_) => {
            resp.http_request = ControlHttp {
                failure: Some("unknown_error".into()),
                ..ControlHttp::default()
            };
            return String::new();
        }
    };
    let body = txn.response.body.to_bytes();
    let title = txn
        .response
        .x_title
        .clone()
        .or_else(|| probes::http::extract_title(&body))
        .unwrap_or_default();
    let discovered = match &final_url {
        Some(u) => {
            let alt_svc = txn.response.headers.get("alt-svc").map(String::as_str);
            super::quic::discovered_h3(u, alt_svc)
        }
        None => String::new(),
    };
    resp.http_request = ControlHttp {
        body_length: body.len() as i64,
        discovered_h3_endpoint: discovered.clone(),
        failure: None,
        title,
        headers: txn.response.headers.clone(),
        status_code: txn.response.code,
    };
    resp.x_body = Some(ControlBody {
        length: body.len() as i64,
        sha256: hex::encode(Sha256::digest(&body)),
        prefix: String::from_utf8_lossy(&body)
            .chars()
            .take(BODY_PREFIX_CHARS)
            .collect(),
    });
    let text = crate::analysis::pagetext::fingerprint(&String::from_utf8_lossy(&body));
    resp.x_body_text = Some(ControlText {
        words: text.words,
        sketch: text.sketch,
        block_terms: text.block_terms,
    });
    if txn.x_transfer.bytes > 0 {
        resp.x_transfer_rate_bps = Some(txn.x_transfer.rate_bps);
    }
    discovered
}

/// The request headers the helper honours (User-Agent, Accept,
/// Accept-Language, first value), over browser-like defaults.
fn honoured_headers(req: &ControlRequest) -> Vec<(String, String)> {
    let mut headers = probes::http::default_headers();
    for (name, values) in &req.http_request_headers {
        let lname = name.to_ascii_lowercase();
        if !matches!(lname.as_str(), "user-agent" | "accept" | "accept-language") {
            continue;
        }
        let Some(v) = values.first() else { continue };
        if v.contains(['\r', '\n']) {
            continue;
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&lname));
        headers.push((name.clone(), v.clone()));
    }
    headers
}

/// `step`, or less when the deadline is nearer.
fn bounded(step: Duration, deadline: Instant) -> Duration {
    step.min(deadline.saturating_duration_since(Instant::now()))
}
