//! The control vantage point: the protocol, the server and the client.

pub mod backpressure;
pub mod client;
pub mod protocol;
pub mod server;

use server::{LogFormat, ServeArgs, ServerConfig};

/// Errors of `gatewatch control`.
#[derive(Debug, thiserror::Error)]
pub enum ControlCommandError {
    /// The server could not start or failed.
    #[error("control server: {0}")]
    Serve(#[from] server::ServeError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// `gatewatch control ...`
#[derive(Debug, clap::Subcommand)]
pub enum ControlCommand {
    /// Serve the control (test-helper) protocol.
    Serve(Box<ServeArgs>),
}

/// Runs the command; returns the process exit code.
pub async fn execute(cmd: ControlCommand) -> Result<u8, ControlCommandError> {
    match cmd {
        ControlCommand::Serve(a) => {
            init_logging(a.log_format);
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|source| ControlCommandError::Bind {
                    addr: a.listen,
                    source,
                })?;
            let config = ServerConfig::from(&*a);
            tracing::info!(
                listen = %a.listen,
                tls = config.tls.is_some(),
                resolver = %config.resolver,
                "control server listening"
            );
            server::serve(config, listener, shutdown_signal()).await?;
            tracing::info!("control server stopped");
            Ok(0)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
