//! `gatewatch collector serve`: an OONI-compatible collector for a team's
//! measurements.
//!
//! It speaks the classic collector API (`POST /report` opens a report,
//! `POST /report/{id}` submits one measurement, `POST /report/{id}/close`),
//! validates what it receives, stores it in SQLite (default) or PostgreSQL,
//! and serves it back (`GET /api/v1/measurements`, `GET
//! /api/v1/measurements/{uid}`, `GET /api/v1/measurements.jsonl`) so
//! `compare` and `report` can read a team's data.

mod pg;
mod server;
mod sqlite;
mod store;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::http_server::ConnLimits;

pub use server::{router, CollectorState};
pub use store::{
    Cursor, MeasurementFilter, MeasurementSummary, SqliteSync, Store, StoreError, BODY_PAGE_ROWS,
    DEFAULT_LIMIT, MAX_LIMIT,
};
pub use validate::{validate_measurement, ValidationError};

/// Errors of `gatewatch collector`.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The database could not be opened.
    #[error("cannot open the collector database {database}: {source}")]
    Open {
        /// The `--database` value, without any password in it.
        database: String,
        /// Why.
        source: StoreError,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("collector server failed: {0}")]
    Serve(std::io::Error),
}

/// `gatewatch collector ...`
#[derive(Debug, clap::Subcommand)]
pub enum CollectorCommand {
    /// Accept measurement uploads and serve them back.
    Serve(ServeArgs),
}

/// `gatewatch collector serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// `postgres://user:pass@host/db` for PostgreSQL, or a path to an SQLite
    /// file. Default: collector.sqlite in the data directory.
    #[arg(long)]
    pub database: Option<String>,
    /// When an SQLite upload counts as stored before its 200: `full` (on
    /// disk, one fsync per grouped transaction) or `os` (handed to the
    /// operating system; survives a collector crash, not a power cut).
    #[arg(long, value_enum, default_value_t = SqliteSync::Full)]
    pub sqlite_sync: SqliteSync,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Client connections kept at once (at most half the file-descriptor
    /// limit). At the cap the longest-idle connection is closed for a new
    /// one; when all are busy the new one gets 503.
    #[arg(long, default_value_t = crate::http_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// Runs the command; returns the process exit code.
pub async fn execute(cmd: CollectorCommand) -> Result<u8, CollectorError> {
    match cmd {
        CollectorCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<u8, CollectorError> {
    let db = match args.database {
        Some(d) => d,
        None => default_sqlite_path().display().to_string(),
    };
    let database = without_password(&db);
    let sync = args.sqlite_sync;
    let store = tokio::task::spawn_blocking(move || Store::open_with(&db, sync))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|source| CollectorError::Open { database, source })?;
    let state = CollectorState::new(store, args.max_body);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CollectorError::Bind {
            addr: args.listen,
            source,
        })?;
    eprintln!("gatewatch collector listening on {}", args.listen);
    let limits = ConnLimits {
        max_connections: args.max_connections,
        ..ConnLimits::default()
    };
    serve_on(listener, state, limits, shutdown_signal())
        .await
        .map_err(CollectorError::Serve)?;
    Ok(0)
}

/// Serves the collector on `listener` with the connection limits of
/// [`crate::http_server`] until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: CollectorState,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http_server::serve(listener, router(state), limits, shutdown).await
}

/// A database spec fit for an error message: a URL's `user:password@` is
/// left out.
fn without_password(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => spec.to_string(),
    }
}

fn default_sqlite_path() -> PathBuf {
    let dir = dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("gatewatch");
    let _ = std::fs::create_dir_all(&dir);
    dir.join("collector.sqlite")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_left_out_of_a_database_url() {
        assert_eq!(
            without_password("postgres://gw:s3cret@db.example:5432/gw"),
            "postgres://db.example:5432/gw"
        );
        assert_eq!(
            without_password("postgresql://db.example/gw"),
            "postgresql://db.example/gw"
        );
        assert_eq!(
            without_password("/var/lib/gw/a@b.sqlite"),
            "/var/lib/gw/a@b.sqlite"
        );
    }

    #[tokio::test]
    async fn an_unopenable_database_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing-dir").join("c.sqlite");
        let args = ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            database: Some(db.display().to_string()),
            sqlite_sync: SqliteSync::Full,
            max_body: 1024,
            max_connections: 16,
        };
        let e = serve(args).await.unwrap_err();
        assert!(e.to_string().contains(&db.display().to_string()), "{e}");
    }
}
