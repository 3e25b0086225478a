//! `gatewatch run`: test lists in, measurements out (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs the command; returns the process exit code.
pub async fn execute(_args: RunArgs) -> Result<u8, RunError> {
    Err(RunError::NotImplemented)
}
