//! `gatewatch compare`: vantage points side by side (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: CompareArgs) -> Result<u8, CompareError> {
    Err(CompareError::NotImplemented)
}
