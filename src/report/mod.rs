//! `gatewatch report`: self-contained HTML report (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: ReportArgs) -> Result<u8, ReportError> {
    Err(ReportError::NotImplemented)
}
