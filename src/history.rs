//! `gatewatch history`: blocking over time from the local database (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: HistoryArgs) -> Result<u8, HistoryError> {
    Err(HistoryError::NotImplemented)
}
