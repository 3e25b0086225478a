//! `gatewatch collector serve`: an OONI-compatible collector (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CollectorCommand {
    /// Placeholder.
    Todo,
}

/// Runs the command; returns the process exit code.
pub async fn execute(_cmd: CollectorCommand) -> Result<u8, CollectorError> {
    Err(CollectorError::NotImplemented)
}
