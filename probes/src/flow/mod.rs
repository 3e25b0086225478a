//! One measuring path for the probe and the control: connect to an
//! endpoint, handshake for a name, fetch one hop, say where to go next.
//!
//! The probe (`web`) and the control server build their measurements from
//! these functions, so the two cannot measure differently. What differs
//! between them is a parameter, not a copy: which addresses may be
//! contacted ([`AddressCheck`], consulted before any socket is opened), the
//! timeouts, and what each keeps of the records these functions return.
//!
//! - [`tls_params`]: the one place a handshake's parameters are built for a
//!   URL's host (SNI only for names, the chain judged against the host).
//! - [`tcp`], [`tls`], [`connect`]: the endpoint steps. A chain that does not
//!   verify fails the handshake (as OONI): its record's `failure` is the
//!   certificate failure and no connection is returned.
//! - [`fetch`] and [`next`]: one GET and what follows it (the redirect rule
//!   of [`redirect::next_url`]).

pub mod redirect;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use url::{Host, Url};

use crate::failure::Failure;
use crate::http::HttpParams;
use crate::records::{HttpTransaction, TcpConnect, TlsHandshake, Trace};
use crate::tcp::TcpOptions;
use crate::tls::{TlsParams, TrustRoots};

/// Which addresses the caller allows to be contacted. Consulted before any
/// socket is opened; a refusal is the caller's policy, never a network
/// failure.
pub trait AddressCheck: Send + Sync {
    /// `Err(reason)` when `addr` must not be contacted.
    fn check(&self, addr: SocketAddr) -> Result<(), String>;
}

/// Every address may be contacted.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyAddress;

impl AddressCheck for AnyAddress {
    fn check(&self, _addr: SocketAddr) -> Result<(), String> {
        Ok(())
    }
}

/// The handshake parameters for `host` (a URL's host): SNI for a name (none
/// for an IP literal), the chain judged against the host, ALPN `http/1.1`,
/// the chain's verdict recorded rather than aborting (see [`tls`]), and
/// certificates judged at this machine's clock plus `clock_offset_secs`.
pub fn tls_params(
    host: &Host<&str>,
    roots: Arc<TrustRoots>,
    timeout: Duration,
    clock_offset_secs: i64,
) -> TlsParams {
    let (sni, verify_as) = match host {
        Host::Domain(d) => (Some(d.to_string()), d.to_string()),
        Host::Ipv4(a) => (None, a.to_string()),
        Host::Ipv6(a) => (None, a.to_string()),
    };
    TlsParams {
        sni,
        verify_as,
        alpn: vec![b"http/1.1".to_vec()],
        roots,
        timeout,
        fail_on_invalid: false,
        clock_offset_secs,
    }
}

/// A connect the address check refused: no socket was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// A TCP connect to `addr` after `check` allowed it.
pub async fn tcp(
    trace: &Trace,
    addr: SocketAddr,
    timeout: Duration,
    check: &dyn AddressCheck,
) -> Result<(TcpConnect, Option<TcpStream>), Refused> {
    check.check(addr).map_err(Refused)?;
    let opts = TcpOptions { timeout, ttl: None };
    Ok(crate::tcp::connect(trace, addr, &opts).await)
}

/// A TLS handshake over `stream`, the chain enforced: a chain that does not
/// verify fails the handshake (its record's `failure` is the certificate
/// failure, the chain stays recorded) and no connection is returned.
pub async fn tls<S>(
    trace: &Trace,
    stream: S,
    addr: SocketAddr,
    params: &TlsParams,
) -> (TlsHandshake, Option<TlsStream<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut hs, stream) = crate::tls::handshake(trace, stream, addr, params).await;
    if hs.failure.is_none() {
        hs.failure = hs.x_certificate_failure.clone();
    }
    // The verdict is enforced here, so the handshake did verify.
    hs.no_tls_verify = false;
    if hs.failure.is_none() && stream.is_none() {
        hs.failure = Some(Failure::SslFailedHandshake);
    }
    let stream = if hs.failure.is_none() { stream } else { None };
    (hs, stream)
}

/// A measured connection, ready for the GET.
pub enum Conn {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS over TCP, with a chain valid for the name.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Which step of an endpoint failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The TCP connect.
    Tcp,
    /// The TLS handshake.
    Tls,
}

/// Everything [`connect`] recorded, and the connection when it succeeded.
pub struct Connected {
    /// The TCP connect.
    pub tcp: TcpConnect,
    /// The TLS handshake, when one was made.
    pub tls: Option<TlsHandshake>,
    /// The connection and its negotiated ALPN, or the step that failed and
    /// why.
    pub conn: Result<(Conn, String), (Stage, Failure)>,
}

/// TCP connect to `addr` (after `check`), then, with `tls`, the enforced
/// handshake of [`tls`].
pub async fn connect(
    trace: &Trace,
    addr: SocketAddr,
    tcp_timeout: Duration,
    tls_params: Option<&TlsParams>,
    check: &dyn AddressCheck,
) -> Result<Connected, Refused> {
    let (tcp_rec, stream) = tcp(trace, addr, tcp_timeout, check).await?;
    let Some(stream) = stream else {
        let f = tcp_rec
            .status
            .failure
            .clone()
            .unwrap_or_else(|| Failure::Unknown("connect failed".into()));
        return Ok(Connected {
            tcp: tcp_rec,
            tls: None,
            conn: Err((Stage::Tcp, f)),
        });
    };
    let Some(params) = tls_params else {
        return Ok(Connected {
            tcp: tcp_rec,
            tls: None,
            conn: Ok((Conn::Plain(stream), String::new())),
        });
    };
    let (hs, tls_stream) = tls(trace, stream, addr, params).await;
    let conn = match (tls_stream, &hs.failure) {
        (Some(s), None) => Ok((Conn::Tls(Box::new(s)), hs.negotiated_protocol.clone())),
        (_, f) => Err((Stage::Tls, f.clone().unwrap_or(Failure::SslFailedHandshake))),
    };
    Ok(Connected {
        tcp: tcp_rec,
        tls: Some(hs),
        conn,
    })
}

/// The GET of `params.url` over `conn` (connected to `addr`, `alpn`
/// negotiated).
pub async fn fetch(
    trace: &Trace,
    conn: Conn,
    addr: SocketAddr,
    alpn: &str,
    params: &HttpParams,
) -> HttpTransaction {
    match conn {
        Conn::Plain(s) => crate::http::get(trace, s, addr, alpn, params).await,
        Conn::Tls(s) => crate::http::get(trace, *s, addr, alpn, params).await,
    }
}

/// What follows one hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// No further hop: the response is the final one, or there was none
    /// and nothing failed.
    Final,
    /// A redirect to this URL.
    Redirect(Url),
    /// The hop failed (the GET, or the redirect's `Location`).
    Failed(Failure),
}

/// What follows the GET `txn` of `url`: a redirect status with a
/// `Location` leads on (when [`redirect::next_url`] accepts it), a failed
/// GET fails the hop, anything else is final.
pub fn next(url: &Url, txn: &HttpTransaction) -> Next {
    if let Some(location) = txn.location() {
        return match redirect::next_url(url, location) {
            Ok(u) => Next::Redirect(u),
            Err(f) => Next::Failed(f),
        };
    }
    match &txn.failure {
        Some(f) => Next::Failed(f.clone()),
        None => Next::Final,
    }
}
