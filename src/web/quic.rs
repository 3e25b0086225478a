//! The HTTP/3 step (OONI LTE's QUIC row): QUIC handshakes with the URL's
//! SNI to each of its addresses, when the control found an HTTP/3 endpoint
//! (`discovered_h3_endpoint`, from `Alt-Svc`) or `--quic` asks for it, and
//! one HTTP/3 GET of the URL over the first verified handshake
//! (`x_http3_requests`).
//!
//! A handshake with the site's name that fails for a reason not our own is
//! repeated to the same address with a harmless name
//! ([`QUIC_CONTROL_NAME`], tagged `quic_control_name`): if that one
//! completes, the path filters QUIC by name, not UDP/443 as a whole.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use probes::quic::QuicConnection;
use probes::records::{TlsHandshake, Trace};
use probes::Failure;
use tokio::task::JoinSet;
use url::{Host, Url};

use super::context::Ctx;
use super::endpoints::dialable;
use crate::control::protocol::ControlResponse;

/// The harmless SNI of the discrimination handshake (the same name `trace`
/// uses as its control).
pub const QUIC_CONTROL_NAME: &str = "example.org";
/// The tag on every QUIC handshake record.
pub const TAG_QUIC: &str = "quic";
/// The tag on a discrimination handshake (harmless SNI).
pub const TAG_CONTROL_NAME: &str = "quic_control_name";
/// At most this many addresses get QUIC handshakes per URL.
const MAX_QUIC_ADDRESSES: usize = 4;

/// When the probe makes QUIC handshakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuicMode {
    /// Never (and the control is not asked for QUIC).
    Off,
    /// When the control reports an HTTP/3 endpoint for the site (OONI).
    #[default]
    Discovered,
    /// For every https URL (`--quic`); the control handshakes too.
    Always,
}

/// Whether QUIC is measured for `url` given the control's answer.
fn wanted(ctx: &Ctx, url: &Url, control: Option<&ControlResponse>) -> bool {
    if url.scheme() != "https" {
        return false;
    }
    match ctx.settings.quic {
        QuicMode::Off => false,
        QuicMode::Always => true,
        QuicMode::Discovered => {
            control.is_some_and(|c| !c.http_request.discovered_h3_endpoint.is_empty())
        }
    }
}

/// Runs the QUIC handshakes of depth 0, when wanted, to the probe's
/// addresses (at most [`MAX_QUIC_ADDRESSES`], the rest noted in
/// `x_skipped`), on the URL's https port.
pub(crate) async fn run(
    ctx: &Arc<Ctx>,
    url: &Url,
    probe_addrs: &[IpAddr],
    control: Option<&ControlResponse>,
) {
    if !wanted(ctx, url, control) {
        return;
    }
    let (host, is_domain) = match url.host() {
        Some(Host::Domain(d)) => (d.to_string(), true),
        Some(Host::Ipv4(a)) => (a.to_string(), false),
        Some(Host::Ipv6(a)) => (a.to_string(), false),
        None => return,
    };
    let port = url.port().unwrap_or(ctx.settings.https_port);
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ip in probe_addrs {
        if dialable(ctx, *ip) && !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    if addrs.len() > MAX_QUIC_ADDRESSES {
        let note = format!(
            "quic_addresses_capped:{}_of_{}",
            MAX_QUIC_ADDRESSES,
            addrs.len()
        );
        ctx.with(|r| r.skipped.push(note));
        addrs.truncate(MAX_QUIC_ADDRESSES);
    }
    let mut set = JoinSet::new();
    let fetched = Arc::new(AtomicBool::new(false));
    for ip in addrs {
        let ctx = Arc::clone(ctx);
        let host = host.clone();
        let url = url.clone();
        let fetched = Arc::clone(&fetched);
        set.spawn(async move {
            let addr = SocketAddr::new(ip, port);
            let sni = is_domain.then(|| host.clone());
            let (site, conn) = handshake(&ctx, addr, sni, &host, TAG_QUIC).await;
            let verified = site.failure.is_none();
            let discriminate = is_domain
                && site
                    .failure
                    .as_ref()
                    .is_some_and(|f| !is_own_failure(f) && !f.is_certificate_error());
            ctx.with(|r| r.quic_handshakes.push(site));
            if let Some((trace, conn)) = conn {
                // One GET per URL, over the first verified handshake.
                if verified && !fetched.swap(true, Ordering::SeqCst) {
                    let mut hp = probes::http::HttpParams::new(url);
                    hp.body_cap = ctx.settings.body_cap;
                    hp.timeout = ctx.settings.http;
                    let tx = probes::quic::get(&trace, &conn, &hp).await;
                    ctx.with(|r| r.http3_requests.push(tx));
                }
                conn.close().await;
            }
            if discriminate {
                let (other, conn) = handshake(
                    &ctx,
                    addr,
                    Some(QUIC_CONTROL_NAME.to_string()),
                    &host,
                    TAG_CONTROL_NAME,
                )
                .await;
                ctx.with(|r| r.quic_handshakes.push(other));
                if let Some((_, conn)) = conn {
                    conn.close().await;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// One recorded QUIC handshake; the chain is judged against `verify_as`.
/// With the site's name an invalid chain is the record's failure (as for
/// TLS over TCP); with the harmless name only `x_certificate_failure`
/// says so, since that name is not the site's. The connection (and its
/// trace) is returned open; the caller closes it.
async fn handshake(
    ctx: &Ctx,
    addr: SocketAddr,
    sni: Option<String>,
    verify_as: &str,
    tag: &str,
) -> (TlsHandshake, Option<(Trace, QuicConnection)>) {
    let mut tags = vec!["depth=0".to_string(), TAG_QUIC.to_string()];
    if tag != TAG_QUIC {
        tags.push(tag.to_string());
    }
    let trace = ctx.trace.child(ctx.next_id(), tags);
    let mut params = probes::quic::h3_params(verify_as, Arc::clone(&ctx.settings.roots));
    params.sni = sni;
    params.timeout = ctx.settings.tls;
    params.fail_on_invalid = false;
    let (mut record, conn) = probes::quic::handshake(&trace, addr, &params).await;
    if tag == TAG_QUIC {
        if record.failure.is_none() {
            record.failure = record.x_certificate_failure.clone();
        }
        record.no_tls_verify = false;
    }
    (record, conn.map(|c| (trace, c)))
}

/// Failures that say the probe could not send at all (no route, no
/// permission): ours, never the path's doing.
fn is_own_failure(f: &Failure) -> bool {
    matches!(
        f,
        Failure::NetworkUnreachable
            | Failure::HostUnreachable
            | Failure::NetworkDown
            | Failure::AddressNotAvailable
            | Failure::PermissionDenied
            | Failure::Interrupted
            | Failure::Unknown(_)
    )
}
