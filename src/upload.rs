//! `gatewatch upload`: the upload spool (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: UploadArgs) -> Result<u8, UploadError> {
    Err(UploadError::NotImplemented)
}
