//! The command line: one clap-derive struct per subcommand, each defined in
//! the module that runs it.

use clap::{Parser, Subcommand};

/// gatewatch: measure internet censorship, with evidence.
#[derive(Debug, Parser)]
#[command(name = "gatewatch", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure the URLs of a test list and classify any interference.
    Run(crate::run::RunArgs),
    /// The control vantage point.
    #[command(subcommand, after_help = "Examples:\n  gatewatch control serve --help")]
    Control(crate::control::ControlCommand),
    /// Manage test lists.
    #[command(
        subcommand,
        after_help = "Examples:\n  gatewatch lists update\n  gatewatch run --list kh"
    )]
    Lists(crate::lists::ListsCommand),
    /// Localise the censoring hop for one URL.
    #[command(
        after_help = "Examples:\n  gatewatch trace https://blocked.example/\n  gatewatch trace https://blocked.example/ --json"
    )]
    Trace(crate::trace::TraceArgs),
    /// Compare results from several vantage points.
    Compare(crate::compare::CompareArgs),
    /// Re-analyse measurements (OONI's of any version, or ours): each one
    /// written back as a JSON line with our `x_verdict` added.
    Analyze(crate::analyze::AnalyzeArgs),
    /// Work with OONI's own data.
    #[command(subcommand)]
    Ooni(crate::ooni::OoniCommand),
    /// Write a self-contained HTML report.
    Report(crate::report::ReportArgs),
    /// Show when blocking started and stopped, per URL and vantage point.
    History(crate::history::HistoryArgs),
    /// Retry uploading spooled measurements.
    Upload(crate::upload::UploadArgs),
    /// An OONI-compatible collector for a team's measurements.
    #[command(
        subcommand,
        after_help = "Examples:\n  gatewatch collector serve --help\n  gatewatch upload --collector https://collector.example.org"
    )]
    Collector(crate::collector::CollectorCommand),
    /// List past runs (date, network, counts per status, file).
    Runs(crate::runs::RunsArgs),
    /// Show one run's summary, or one URL's latest verdict with its evidence.
    Show(crate::runs::ShowArgs),
    /// Install daily unattended runs (cron or systemd).
    #[command(
        subcommand,
        after_help = "Examples:\n  gatewatch schedule install --user\n  gatewatch schedule status --user\n  gatewatch schedule cron"
    )]
    Schedule(crate::schedule::ScheduleCommand),
    /// ASN and country databases (so results name the network).
    #[command(subcommand)]
    Geo(crate::geo::update::GeoCommand),
}
