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
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gatewatch: {}", gatewatch::usage::message(&e));
            ExitCode::from(gatewatch::usage::exit_code(&e))
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    Ok(match cli.command {
        Command::Run(a) => gatewatch::run::execute(a).await?,
        Command::Control(c) => gatewatch::control::execute(c).await?,
        Command::Lists(c) => gatewatch::lists::execute(c).await?,
        Command::Trace(a) => gatewatch::trace::execute(a).await?,
        Command::Compare(a) => gatewatch::compare::execute(a).await?,
        Command::Report(a) => gatewatch::report::execute(a).await?,
        Command::History(a) => gatewatch::history::execute(a).await?,
        Command::Upload(a) => gatewatch::upload::execute(a).await?,
        Command::Collector(c) => gatewatch::collector::execute(c).await?,
        Command::Runs(a) => gatewatch::runs::execute_runs(a).await?,
        Command::Show(a) => gatewatch::runs::execute_show(a).await?,
        Command::Schedule(c) => gatewatch::schedule::execute(c).await?,
    })
}
