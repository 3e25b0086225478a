//! TCP connect to one endpoint.
//!
//! The socket is built with socket2 so options (the IP TTL) can be set
//! before the SYN leaves, then handed to tokio. Our own deadline gives
//! `generic_timeout_error`; a RST answering the SYN gives
//! `connection_refused`; ICMP errors give `host_unreachable` /
//! `network_unreachable`. The connect is also recorded as a `connect`
//! network event on the [`Trace`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use crate::failure::Failure;
use crate::records::{TcpConnect, TcpStatus, Trace};

/// Options for a connect.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// Give up after this long (`generic_timeout_error`).
    pub timeout: Duration,
    /// The IP TTL to set on the socket, if any.
    pub ttl: Option<u32>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            timeout: Duration::from_secs(10),
            ttl: None,
        }
    }
}

/// Connects to `addr`; the record says what happened, the stream is there on
/// success.
pub async fn connect(
    trace: &Trace,
    addr: SocketAddr,
    opts: &TcpOptions,
) -> (TcpConnect, Option<TcpStream>) {
    let t0 = trace.clock.now();
    let outcome = match tokio::time::timeout(opts.timeout, connect_inner(addr, opts.ttl)).await {
        Err(_) => Err(Failure::GenericTimeout),
        Ok(Err(e)) => Err(Failure::from_io(&e)),
        Ok(Ok(s)) => Ok(s),
    };
    let failure = outcome.as_ref().err().cloned();
    trace.event("connect", Some(addr.to_string()), None, failure.clone(), t0);
    let record = TcpConnect {
        ip: addr.ip().to_string(),
        port: addr.port(),
        status: TcpStatus {
            success: failure.is_none(),
            failure,
            blocked: None,
        },
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
    };
    (record, outcome.ok())
}

async fn connect_inner(addr: SocketAddr, ttl: Option<u32>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ttl) = ttl {
        match addr {
            SocketAddr::V4(_) => socket.set_ttl_v4(ttl)?,
            SocketAddr::V6(_) => socket.set_unicast_hops_v6(ttl)?,
        }
    }
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(addr).await
}
