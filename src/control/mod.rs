//! The control vantage point: the protocol, the server and the client.

pub mod client;
pub mod protocol;
pub mod server;

/// Errors of `gatewatch control`.
#[derive(Debug, thiserror::Error)]
pub enum ControlCommandError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// `gatewatch control ...`
#[derive(Debug, clap::Subcommand)]
pub enum ControlCommand {
    /// Serve the control protocol.
    Serve(server::ServeArgs),
}

/// Runs the command; returns the process exit code.
pub async fn execute(cmd: ControlCommand) -> Result<u8, ControlCommandError> {
    match cmd {
        ControlCommand::Serve(_a) => Err(ControlCommandError::NotImplemented),
    }
}
