//! `gatewatch lists update`: fetch the Citizen Lab lists (not written yet).

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum ListsError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ListsCommand {
    /// Placeholder.
    Todo,
}

/// Runs the command; returns the process exit code.
pub async fn execute(_cmd: ListsCommand) -> Result<u8, ListsError> {
    Err(ListsError::NotImplemented)
}
