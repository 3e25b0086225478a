//! The control server (not written yet).

/// `gatewatch control serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}
