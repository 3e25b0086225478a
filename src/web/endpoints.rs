//! Endpoint flows: TCP connect (and TLS) to one address, recorded; a flow
//! allowed to fetch offers its connection to the depth's fetcher.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use probes::flow::{self, AddressCheck};
use probes::records::Trace;
use probes::tls::TlsParams;
use probes::Failure;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use url::{Host, Url};

use super::context::Ctx;
use super::dns::{flags, rank};

/// A connected endpoint ready for the GET.
pub(crate) struct Candidate {
    /// Lower is better (see [`rank`]).
    pub rank: u8,
    pub addr: SocketAddr,
    pub conn: Conn,
    pub alpn: String,
    /// The flow's trace: the GET is recorded under the same transaction.
    pub trace: Trace,
    /// The destination-host permit, held as long as the connection.
    pub permit: Option<OwnedSemaphorePermit>,
}

pub(crate) use probes::flow::Conn;

/// What a fetch-eligible flow tells the fetcher.
pub(crate) enum Offer {
    /// Connected (and, for https, a valid TLS session).
    Ready(Candidate),
    /// The flow failed.
    Failed(FlowFailure),
}

/// A fetch-eligible flow's failure, kept to explain a depth without GET.
#[derive(Clone, Debug)]
pub(crate) struct FlowFailure {
    pub rank: u8,
    /// 0: TCP connect, 1: TLS handshake.
    pub stage: u8,
    pub ipv6: bool,
    pub failure: Failure,
}

/// One endpoint to measure.
struct FlowSpec {
    depth: u32,
    /// The URL's host (the host-limiter key).
    host: String,
    addr: SocketAddr,
    /// The handshake to make after the connect, if any.
    tls: Option<TlsParams>,
    fetch: bool,
    flags: u8,
}

/// The ports measured for one address of `url`: `(port, tls, fetch)`.
/// An explicit port is measured alone; otherwise an http URL gets its
/// cleartext port (fetch) plus the https port (TLS only, no fetch), and an
/// https URL its https port.
pub(crate) fn ports(ctx: &Ctx, url: &Url) -> Vec<(u16, bool, bool)> {
    let https = url.scheme() == "https";
    match url.port() {
        Some(p) => vec![(p, https, true)],
        None if https => vec![(ctx.settings.https_port, true, true)],
        None => vec![
            (ctx.settings.http_port, false, true),
            (ctx.settings.https_port, true, false),
        ],
    }
}

/// The probe's address policy: loopback and unspecified addresses are
/// refused (a censor's answer must never make us talk to ourselves) unless
/// listed in `treat_as_public`.
pub(crate) struct ProbePolicy<'a>(pub &'a [IpNet]);

impl AddressCheck for ProbePolicy<'_> {
    fn check(&self, addr: SocketAddr) -> Result<(), String> {
        let ip = addr.ip().to_canonical();
        if self.0.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let local = match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.octets()[0] == 0,
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
        };
        if local {
            Err(format!("refused_address:{ip}"))
        } else {
            Ok(())
        }
    }
}

/// Whether `ip` may be dialled under [`ProbePolicy`].
pub(crate) fn dialable(ctx: &Ctx, ip: IpAddr) -> bool {
    ProbePolicy(&ctx.settings.treat_as_public)
        .check(SocketAddr::new(ip, 0))
        .is_ok()
}

/// Starts the flows for one address at one depth. Flows allowed to fetch
/// report to `offers`; refused addresses are noted in `x_skipped`.
pub(crate) fn spawn_flows(
    ctx: &Arc<Ctx>,
    set: &mut JoinSet<()>,
    url: &Url,
    depth: u32,
    ip: IpAddr,
    ip_flags: u8,
    offers: &UnboundedSender<Offer>,
) {
    if !dialable(ctx, ip) {
        let note = format!("refused_address:{ip}");
        ctx.with(|r| {
            if !r.skipped.contains(&note) {
                r.skipped.push(note);
            }
        });
        return;
    }
    let Some(url_host) = url.host() else { return };
    let host = match url_host {
        Host::Domain(d) => d.to_string(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    };
    let params = flow::tls_params(
        &url_host,
        Arc::clone(&ctx.settings.roots),
        ctx.settings.tls,
        ctx.settings.clock_offset_secs,
    );
    for (port, tls, fetch) in ports(ctx, url) {
        let spec = FlowSpec {
            depth,
            host: host.clone(),
            addr: SocketAddr::new(ip, port),
            tls: tls.then(|| params.clone()),
            fetch,
            flags: ip_flags,
        };
        let tx = fetch.then(|| offers.clone());
        set.spawn(flow(Arc::clone(ctx), spec, tx));
    }
}

/// Runs one flow: connect, handshake, record, offer.
async fn flow(ctx: Arc<Ctx>, spec: FlowSpec, offers: Option<UnboundedSender<Offer>>) {
    let rank = rank(spec.flags);
    let fail = |stage: u8, failure: Failure| {
        if let Some(tx) = &offers {
            let _ = tx.send(Offer::Failed(FlowFailure {
                rank,
                stage,
                ipv6: spec.addr.is_ipv6(),
                failure,
            }));
        }
    };
    let Ok(slot) = Arc::clone(&ctx.endpoint_slots).acquire_owned().await else {
        return;
    };
    let mut tags = vec![format!("depth={}", spec.depth)];
    if spec.flags & flags::SYSTEM != 0 {
        tags.push("classic".to_string());
    }
    tags.push(format!("fetch_body={}", spec.fetch));
    let trace = ctx.trace.child(ctx.next_id(), tags);

    let policy = ProbePolicy(&ctx.settings.treat_as_public);
    // Refused addresses were noted (and not spawned) by `spawn_flows`.
    let Ok((record, stream)) = flow::tcp(&trace, spec.addr, ctx.settings.tcp, &policy).await else {
        return;
    };
    let tcp_failure = record.status.failure.clone();
    ctx.with(|r| r.tcp_connect.push(record));
    let Some(stream) = stream else {
        drop(slot);
        fail(
            0,
            tcp_failure.unwrap_or_else(|| Failure::Unknown("connect failed".into())),
        );
        return;
    };
    // Only established connections count against the host's limit: a
    // blackholed host must not serialise the URL's connection attempts.
    let permit = match &ctx.settings.host_limiter {
        Some(l) => Some(l.acquire(&spec.host).await),
        None => None,
    };

    let conn = if let Some(params) = &spec.tls {
        // As OONI: a chain that does not verify fails the handshake (the
        // chain stays recorded) and the page is not fetched over it.
        let (hs, tls) = flow::tls(&trace, stream, spec.addr, params).await;
        let failure = hs.failure.clone();
        let alpn = hs.negotiated_protocol.clone();
        ctx.with(|r| r.tls_handshakes.push(hs));
        match (failure, tls) {
            (None, Some(s)) => (Conn::Tls(Box::new(s)), alpn),
            (f, _) => {
                let f = f.unwrap_or(Failure::SslFailedHandshake);
                let retried = if spec.fetch && super::tls_retry::looks_like_sni_filter(&f) {
                    super::tls_retry::after_failure(&ctx, &trace, spec.addr, params).await
                } else {
                    None
                };
                match retried {
                    Some((s, alpn)) => (Conn::Tls(Box::new(s)), alpn),
                    None => {
                        drop(slot);
                        fail(1, f);
                        return;
                    }
                }
            }
        }
    } else {
        (Conn::Plain(stream), String::new())
    };
    drop(slot);
    if let Some(tx) = &offers {
        let _ = tx.send(Offer::Ready(Candidate {
            rank,
            addr: spec.addr,
            conn: conn.0,
            alpn: conn.1,
            trace,
            permit,
        }));
    }
}
