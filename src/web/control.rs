//! The control request for one URL, run beside the probe's own steps, and
//! the flows to addresses only the control found (OONI's "TH addresses").

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::task::JoinSet;
use url::Url;

use super::context::Ctx;
use super::dns::flags;
use super::endpoints;
use super::fetch::ControlHook;
use super::quic::{self, QuicMode};
use crate::control::client::ControlClient;
use crate::control::protocol::{ControlRequest, MAX_TCP_CONNECT};

/// Asks the control about `url` (depth 0) and measures the addresses only
/// it found. Without a client or a hook, does nothing.
pub(crate) async fn run(
    ctx: &Arc<Ctx>,
    url: &Url,
    hook: Option<ControlHook>,
    client: Option<&ControlClient>,
) {
    let Some(hook) = hook else {
        return;
    };
    let ControlHook {
        probe_addrs,
        offers,
    } = hook;
    let Some(client) = client else {
        drop(offers);
        if ctx.settings.quic == QuicMode::Always {
            if let Ok(addrs) = probe_addrs.await {
                quic::run(ctx, url, &addrs, None).await;
            }
        }
        return;
    };
    let Ok(probe_addrs) = probe_addrs.await else {
        return;
    };
    let request = request(ctx, url, &probe_addrs);
    ctx.with(|r| r.control_request = Some(request.clone()));
    let response = match client.query(&request).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.with(|r| r.control_failure = Some(e.to_string()));
            return;
        }
    };
    let extra: Vec<IpAddr> = response
        .dns
        .addrs
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| !probe_addrs.contains(ip))
        .fold(Vec::new(), |mut v, ip| {
            if !v.contains(&ip) {
                v.push(ip);
            }
            v
        });
    ctx.with(|r| r.control = Some(response.clone()));
    let mut flows = JoinSet::new();
    for ip in extra {
        endpoints::spawn_flows(ctx, &mut flows, url, 0, ip, flags::CONTROL, &offers);
    }
    drop(offers);
    let quic = quic::run(ctx, url, &probe_addrs, Some(&response));
    let flows_done = async { while flows.join_next().await.is_some() {} };
    tokio::join!(quic, flows_done);
}

/// The control request: the URL, the three headers the control honours, and
/// every probe address × the ports measured (both https and http ports for
/// an http URL, or the explicit port).
pub(crate) fn request(ctx: &Ctx, url: &Url, probe_addrs: &[IpAddr]) -> ControlRequest {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in probes::http::default_headers() {
        headers.entry(k).or_default().push(v);
    }
    let mut ports: Vec<u16> = endpoints::ports(ctx, url)
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    ports.sort_by_key(|p| std::cmp::Reverse(*p == ctx.settings.https_port));
    let mut tcp_connect = Vec::new();
    // The depth's addresses are already capped; this keeps the request
    // within what the control accepts whatever the caller passes.
    for ip in probe_addrs
        .iter()
        .take(MAX_TCP_CONNECT / ports.len().max(1))
    {
        for &port in &ports {
            let ep = SocketAddr::new(*ip, port).to_string();
            if !tcp_connect.contains(&ep) {
                tcp_connect.push(ep);
            }
        }
    }
    ControlRequest {
        http_request: url.to_string(),
        http_request_headers: headers,
        tcp_connect,
        x_quic_enabled: ctx.settings.quic != QuicMode::Off,
        x_quic_always: ctx.settings.quic == QuicMode::Always,
    }
}
