//! `gatewatch control serve`: the control vantage point. It speaks OONI's
//! web-connectivity test-helper protocol (`POST /` with a
//! [`ControlRequest`], answered with a [`ControlResponse`]) and measures
//! with the same `probes` code as the probe.
//!
//! It fetches URLs for strangers, so it is built to be exposed: every
//! address is checked by [`ssrf::AddressPolicy`] before any connection,
//! requests are capped in size, count and time, load is shed above
//! `--max-in-flight`, clients are rate-limited, and a panic in a
//! measurement becomes a 500 instead of a dead server. It never logs a
//! client's address or the URLs it measures.

pub mod limits;
pub mod listener;
pub mod measure;
pub mod quic;
pub mod resolver;
pub mod ssrf;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ipnet::IpNet;
use probes::tls::TrustRoots;
use tokio::net::TcpListener;

use crate::control::protocol::{ControlRequest, ControlResponse};
use crate::http_server::ConnLimits;
use limits::{ClientLimiter, InFlight};
use listener::TlsListener;
use measure::{Measurer, StepTimeouts};
use resolver::ResolverSpec;
use ssrf::AddressPolicy;

/// Request bodies above this are refused with 413.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// A client must send its request body within this.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `--listen` address: loopback only, so a fresh install is not
/// exposed by accident (use e.g. `0.0.0.0:8080` behind a firewall or proxy).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `gatewatch control serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (leaf first).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra trust anchors (PEM) for the control's own TLS checks, on top of
    /// Mozilla's roots. Repeatable.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// Treat this special-purpose range as public, i.e. allow connecting to
    /// it (for labs and tests). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub treat_as_public: Vec<IpNet>,
    /// The control's resolver: `system`, `IP[:PORT]` (UDP), `tcp://IP[:PORT]`
    /// or a DoH `https://` URL.
    #[arg(long, default_value = "system")]
    pub resolver: ResolverSpec,
    /// Answer 503 when this many measurements are already running.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Requests per minute allowed per client address (0: no limit).
    #[arg(long, default_value_t = limits::DEFAULT_RATE_PER_MINUTE)]
    pub rate_limit: u32,
    /// Requests a client may make in a burst.
    #[arg(long, default_value_t = limits::DEFAULT_RATE_BURST)]
    pub rate_burst: u32,
    /// Take the client address from the last X-Forwarded-For entry (only
    /// behind a reverse proxy that sets it).
    #[arg(long)]
    pub trust_proxy: bool,
    /// Response body bytes read per fetched page.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Deadline for one measurement (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// A MaxMind-format ASN database (GeoLite2-ASN / DB-IP `.mmdb`) to fill
    /// `ip_info[..].asn`; without it every ASN is 0.
    #[arg(long, value_name = "MMDB")]
    pub asn_db: Option<PathBuf>,
    /// Client connections kept at once (at most half the file-descriptor
    /// limit). At the cap the longest-idle connection is closed for a new
    /// one; when all are busy the new one gets 503.
    #[arg(long, default_value_t = crate::http_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The server's configuration (what [`ServeArgs`] becomes; tests and the
/// lab build it directly).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra trust anchors for the control's TLS checks.
    pub ca_files: Vec<PathBuf>,
    /// Special-purpose ranges allowed anyway.
    pub treat_as_public: Vec<IpNet>,
    /// The control's resolver.
    pub resolver: ResolverSpec,
    /// Load-shedding threshold.
    pub max_in_flight: usize,
    /// Requests per minute per client (0: unlimited).
    pub rate_per_minute: u32,
    /// Burst size per client.
    pub rate_burst: u32,
    /// Honour X-Forwarded-For.
    pub trust_proxy: bool,
    /// Body bytes read per page.
    pub body_cap: usize,
    /// Deadline per measurement.
    pub deadline: Duration,
    /// Per-step timeouts.
    pub steps: StepTimeouts,
    /// ASN database for `ip_info`.
    pub asn_db: Option<PathBuf>,
    /// Connection cap and timeouts (the request timeout is raised to fit
    /// the measurement deadline).
    pub connections: ConnLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            ca_files: Vec::new(),
            treat_as_public: Vec::new(),
            resolver: ResolverSpec::System,
            max_in_flight: limits::DEFAULT_MAX_IN_FLIGHT,
            rate_per_minute: limits::DEFAULT_RATE_PER_MINUTE,
            rate_burst: limits::DEFAULT_RATE_BURST,
            trust_proxy: false,
            body_cap: 4 * 1024 * 1024,
            deadline: Duration::from_secs(30),
            steps: StepTimeouts::default(),
            asn_db: None,
            connections: ConnLimits::default(),
        }
    }
}

impl From<&ServeArgs> for ServerConfig {
    fn from(a: &ServeArgs) -> Self {
        ServerConfig {
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
            ca_files: a.ca_file.clone(),
            treat_as_public: a.treat_as_public.clone(),
            resolver: a.resolver.clone(),
            max_in_flight: a.max_in_flight,
            rate_per_minute: a.rate_limit,
            rate_burst: a.rate_burst,
            trust_proxy: a.trust_proxy,
            body_cap: a.max_body_bytes,
            deadline: a.deadline,
            steps: StepTimeouts::default(),
            asn_db: a.asn_db.clone(),
            connections: ConnLimits {
                max_connections: a.max_connections,
                ..ConnLimits::default()
            },
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `--ca-file` could not be loaded.
    #[error(transparent)]
    Roots(#[from] probes::tls::TlsSetupError),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Identity(#[from] listener::TlsIdentityError),
    /// The ASN database could not be opened.
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    /// Listening failed.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the control protocol on `listener` until `shutdown` completes,
/// then finishes the requests in flight.
pub async fn serve<F>(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = app_state(&config)?;
    let housekeeping = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                app.limiter.housekeeping();
            }
        })
    };
    let router = router(app);
    // A measurement may take its whole deadline after the body arrived.
    let mut limits = config.connections.clone();
    limits.request_timeout = limits
        .request_timeout
        .max(BODY_READ_TIMEOUT + config.deadline + Duration::from_secs(10));
    limits.shutdown_grace = limits.shutdown_grace.max(limits.request_timeout);
    let result = match &config.tls {
        None => crate::http_server::serve(listener, router, limits, shutdown).await,
        Some((cert, key)) => {
            let acceptor = listener::acceptor(cert, key)?;
            let tls = TlsListener::new(listener, acceptor)?;
            crate::http_server::serve(tls, router, limits, shutdown).await
        }
    };
    housekeeping.abort();
    result.map_err(ServeError::Io)
}

/// Shared state of the handlers.
struct App {
    measurer: Arc<Measurer>,
    in_flight: Arc<InFlight>,
    limiter: ClientLimiter,
    trust_proxy: bool,
    deadline: Duration,
}

fn app_state(config: &ServerConfig) -> Result<Arc<App>, ServeError> {
    let roots = if config.ca_files.is_empty() {
        TrustRoots::webpki()
    } else {
        TrustRoots::with_pem_files(&config.ca_files)?
    };
    Ok(Arc::new(App {
        measurer: Arc::new(Measurer {
            policy: AddressPolicy::new(config.treat_as_public.clone()),
            resolver: config.resolver.clone(),
            roots,
            body_cap: config.body_cap,
            steps: config.steps.clone(),
            geo: match &config.asn_db {
                Some(p) => Some(crate::geo::GeoDb::open(Some(p), None)?),
                None => None,
            },
        }),
        in_flight: InFlight::new(config.max_in_flight),
        limiter: ClientLimiter::new(config.rate_per_minute, config.rate_burst),
        trust_proxy: config.trust_proxy,
        deadline: config.deadline,
    }))
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(health).post(measure).fallback(wrong_method))
        .fallback(not_found)
        .with_state(app)
}

/// The health answer of `GET /`, with the address the client is seen
/// from (so a probe learns, and scrubs, its public address before it
/// measures anything).
#[derive(serde::Serialize)]
struct Health {
    message: &'static str,
    x_client_addr: String,
}

async fn health(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Json<Health> {
    Json(Health {
        message: "Hello OONItarian! This is a gatewatch control.",
        x_client_addr: client_ip(peer, &headers, app.trust_proxy).to_string(),
    })
}

async fn wrong_method() -> Response {
    reason(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: use POST / (or GET / for health)",
    )
}

async fn not_found() -> Response {
    reason(StatusCode::NOT_FOUND, "not found: the control answers at /")
}

/// A 4xx/5xx answer with a one-line reason.
fn reason(status: StatusCode, why: &str) -> Response {
    let mut line = why.replace(['\r', '\n'], " ");
    line.push('\n');
    let mut r = (status, line).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    r
}

async fn measure(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let resp = handle(&app, peer, &headers, body).await;
    tracing::info!(
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        in_flight = app.in_flight.current(),
        "control request"
    );
    resp
}

async fn handle(app: &Arc<App>, peer: SocketAddr, headers: &HeaderMap, body: Body) -> Response {
    let client = client_ip(peer, headers, app.trust_proxy);
    if let Err(wait) = app.limiter.check(client) {
        let mut r = reason(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address; slow down",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(wait.as_secs()),
        );
        return r;
    }
    let Some(_slot) = app.in_flight.try_acquire() else {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: too many measurements in flight; retry later",
        );
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return reason(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type: send application/json",
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return too_large();
    }
    let bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_REQUEST_BYTES),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return reason(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )
        }
    };
    let req: ControlRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return reason(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let url = match measure::validate(&req) {
        Ok(u) => u,
        Err(e) => return reason(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
    };

    // The measurement runs in its own task: a panic there is a 500 here,
    // and the server keeps answering.
    let deadline = tokio::time::Instant::now() + app.deadline;
    let task = tokio::spawn(Arc::clone(&app.measurer).measure(req, url, deadline));
    let abort = task.abort_handle();
    let mut out: ControlResponse =
        match tokio::time::timeout(app.deadline + Duration::from_secs(5), task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_panic() => {
                tracing::error!("a measurement panicked; answered 500");
                return reason(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error while measuring",
                );
            }
            Ok(Err(_)) => {
                return reason(StatusCode::INTERNAL_SERVER_ERROR, "measurement cancelled")
            }
            Err(_) => {
                abort.abort();
                return reason(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the measurement overran its deadline",
                );
            }
        };
    out.x_client_addr = Some(client.to_string());
    out.x_time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    Json(out).into_response()
}

fn too_large() -> Response {
    reason(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body too large (at most 1 MiB)",
    )
}

/// The client's address: the TCP peer, or with `trust_proxy` the last
/// X-Forwarded-For entry (the one our proxy added).
fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_proxy: bool) -> IpAddr {
    if trust_proxy {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_canonical();
        }
    }
    peer.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_when_trusted() {
        let peer: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.5, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(client_ip(peer, &h, false).to_string(), "192.0.2.9");
        assert_eq!(client_ip(peer, &h, true).to_string(), "198.51.100.7");
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), true).to_string(),
            "192.0.2.9"
        );
    }
}
