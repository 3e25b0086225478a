//! Raw-socket helpers (pnet), behind a run-time capability check.

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
        todo!("probes: raw capability check")
    }
}
