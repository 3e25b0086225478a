//! `gatewatch trace`: injection forensics and censor localisation (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: TraceArgs) -> Result<u8, TraceError> {
    Err(TraceError::NotImplemented)
}
