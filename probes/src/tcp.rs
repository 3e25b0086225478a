//! TCP connect to one endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::records::{TcpConnect, Trace};

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
    let _ = (trace, addr, opts);
    todo!("probes: tcp connect")
}
