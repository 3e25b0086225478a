//! OONI's own data: preparing its measurements for our analysis
//! ([`normalize`]) and downloading them from OONI's API ([`fetch`],
//! `gatewatch ooni fetch`).

pub mod fetch;
pub mod normalize;

/// `gatewatch ooni ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OoniCommand {
    /// Download Web Connectivity measurements from OONI's public API.
    Fetch(fetch::FetchArgs),
}

/// Runs an `ooni` subcommand; returns the process exit code.
pub async fn execute(c: OoniCommand) -> Result<u8, fetch::FetchError> {
    match c {
        OoniCommand::Fetch(a) => fetch::execute(a).await,
    }
}
