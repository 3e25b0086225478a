//! Raw-socket helpers (pnet), behind a run-time capability check, plus the
//! unprivileged socket options that make most TTL work possible without it.
//!
//! - [`packet`]: parse whole IPv4 packets (TTL, IP-ID, TCP flags) and ICMP
//!   errors with the packet they quote. Pure functions, no sockets.
//! - [`recverr`]: `IP_RECVERR` / `MSG_ERRQUEUE` (the ICMP error behind a
//!   failed send, with the router that sent it) and `IP_RECVTTL`. No
//!   privilege needed.
//! - [`sniff`]: a Layer3 raw-socket sniffer keeping every inbound TCP
//!   segment and ICMP message with its IP header. Needs CAP_NET_RAW.

pub mod packet;
pub mod recverr;
pub mod sniff;

use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::transport::{transport_channel, TransportChannelType};

/// What this process may do with raw sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// A raw IPv4 socket could be opened (CAP_NET_RAW).
    pub raw: bool,
    /// Why not, when `raw` is false.
    pub reason: Option<String>,
}

impl Capabilities {
    /// Tries to open a raw socket once.
    pub fn detect() -> Capabilities {
        let kind = TransportChannelType::Layer3(IpNextHeaderProtocols::Tcp);
        match transport_channel(4096, kind) {
            Ok(_) => Capabilities {
                raw: true,
                reason: None,
            },
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Capabilities {
                raw: false,
                reason: Some("no_cap_net_raw".to_string()),
            },
            Err(e) => Capabilities {
                raw: false,
                reason: Some(format!("raw_socket_error: {e}")),
            },
        }
    }

    /// The reason as a short token for `skipped` lists (`no_cap_net_raw`),
    /// or `None` when raw sockets are available.
    pub fn skip_reason(&self) -> Option<&str> {
        if self.raw {
            None
        } else {
            Some(self.reason.as_deref().unwrap_or("no_cap_net_raw"))
        }
    }
}
