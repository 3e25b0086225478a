//! The `gatewatch` binary: parse the command line and dispatch.

use std::process::ExitCode;

use clap::Parser;
use gatewatch::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    probes::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatewatch: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Whatever is still running (a getaddrinfo stuck in a blocking task, a
    // connection nobody awaits) must not keep the process alive.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gatewatch: {}", gatewatch::usage::message(&e));
            ExitCode::from(gatewatch::usage::exit_code(&e))
        }
    }
}

/// How long the runtime may take to stop its tasks once the command ended.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    Ok(match cli.command {
        Command::Run(a) => gatewatch::run::execute(a).await?,
        Command::Control(c) => gatewatch::control::execute(c).await?,
        Command::Lists(c) => gatewatch::lists::execute(c).await?,
        Command::Trace(a) => gatewatch::trace::execute(a).await?,
        Command::Compare(a) => gatewatch::compare::execute(a).await?,
        Command::Analyze(a) => gatewatch::analyze::execute(a).await?,
        Command::Ooni(c) => gatewatch::ooni::execute(c).await?,
        Command::Report(a) => gatewatch::report::execute(a).await?,
        Command::History(a) => gatewatch::history::execute(a).await?,
        Command::Upload(a) => gatewatch::upload::execute(a).await?,
        Command::Collector(c) => gatewatch::collector::execute(c).await?,
        Command::Runs(a) => gatewatch::runs::execute_runs(a).await?,
        Command::Show(a) => gatewatch::runs::execute_show(a).await?,
        Command::Schedule(c) => gatewatch::schedule::execute(c).await?,
        Command::Geo(c) => gatewatch::geo::update::execute(c).await?,
    })
}
