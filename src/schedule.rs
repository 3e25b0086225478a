//! `gatewatch schedule install`: daily unattended runs (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Placeholder.
    Todo,
}

/// Runs the command; returns the process exit code.
pub async fn execute(_cmd: ScheduleCommand) -> Result<u8, ScheduleError> {
    Err(ScheduleError::NotImplemented)
}
