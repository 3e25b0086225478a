//! A TLS handshake that failed the way an SNI filter makes it fail (a reset,
//! an EOF, a silence) is tried again, twice at most, on the same endpoint:
//!
//! 1. with the ClientHello split in two TCP segments inside the server name
//!    (`probes::hello::SplitSni`), recorded in `x_sni_split`. If it fails
//!    too, the failure is persistent and the filter, if it is one, reads
//!    the reassembled stream (or blocks the endpoint some other way); stop.
//! 2. if the split one completed, with the ordinary one-segment ClientHello
//!    again, recorded in `tls_handshakes` (tag `retry`). Failing again, the
//!    filter only sees a name in a single packet: a real finding. Completing,
//!    the first failure did not repeat (loss or a passing fault) and is no
//!    evidence: its connection is offered to the fetch like any other.
//!
//! Cost: only after such a failure, one or two more TCP connects and
//! handshakes, each bounded by the TCP and TLS timeouts (with the defaults
//! at most 2 × (10 s + 10 s), inside the URL deadline); nothing when the
//! handshake succeeded or failed on the certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use probes::hello::SplitSni;
use probes::records::{TlsHandshake, Trace};
use probes::tcp::TcpOptions;
use probes::tls::TlsParams;
use probes::Failure;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::context::Ctx;

/// Tag of the split handshake.
pub(crate) const TAG_SPLIT: &str = "sni_split";
/// Tag of the repeated one-segment handshake.
pub(crate) const TAG_RETRY: &str = "retry";

/// Whether a TLS failure is one an SNI filter (or loss) produces.
pub(crate) fn looks_like_sni_filter(f: &Failure) -> bool {
    matches!(
        f,
        Failure::ConnectionReset | Failure::Eof | Failure::GenericTimeout | Failure::TimedOut
    )
}

/// Runs the tries described in the module doc after `params`' handshake
/// with `addr` failed. Returns the repeated handshake's connection and ALPN
/// when it completed with a valid chain.
pub(crate) async fn after_failure(
    ctx: &Arc<Ctx>,
    trace: &Trace,
    addr: SocketAddr,
    params: &TlsParams,
) -> Option<(TlsStream<TcpStream>, String)> {
    let sni = params.sni.clone()?;
    let opts = TcpOptions {
        timeout: ctx.settings.tcp,
        ttl: None,
    };
    let tagged = |tag: &str| {
        let mut tags = trace.tags.clone();
        tags.push(tag.to_string());
        trace.child(ctx.next_id(), tags)
    };

    let split_trace = tagged(TAG_SPLIT);
    let (tcp, stream) = probes::tcp::connect(&split_trace, addr, &opts).await;
    let split_ok = match stream {
        None => {
            // The split handshake could not even start: record why.
            let hs = TlsHandshake {
                network: "tcp".into(),
                address: addr.to_string(),
                server_name: sni.clone(),
                failure: tcp.status.failure,
                t0: tcp.t0,
                t: tcp.t,
                tags: split_trace.tags.clone(),
                transaction_id: split_trace.transaction_id,
                ..TlsHandshake::default()
            };
            ctx.with(|r| r.sni_split.push(hs));
            false
        }
        Some(s) => {
            let _ = s.set_nodelay(true);
            let (hs, _) =
                probes::flow::tls(&split_trace, SplitSni::new(s, &sni), addr, params).await;
            let ok = hs.failure.is_none();
            ctx.with(|r| r.sni_split.push(hs));
            ok
        }
    };
    if !split_ok {
        return None;
    }

    let retry_trace = tagged(TAG_RETRY);
    let (tcp, stream) = probes::tcp::connect(&retry_trace, addr, &opts).await;
    ctx.with(|r| r.tcp_connect.push(tcp));
    let (hs, tls) = probes::flow::tls(&retry_trace, stream?, addr, params).await;
    let (ok, alpn) = (hs.failure.is_none(), hs.negotiated_protocol.clone());
    ctx.with(|r| r.tls_handshakes.push(hs));
    match (ok, tls) {
        (true, Some(s)) => Some((s, alpn)),
        _ => None,
    }
}
