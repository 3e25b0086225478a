//! `gatewatch compare`: results from several vantage points side by side.
//!
//! The inputs are streamed through [`crate::results`] into an
//! [`aggregate::Aggregate`] (per-vantage, per-URL and per-artifact tallies,
//! never whole measurements), then [`summary::build`] turns the tallies into
//! a [`summary::CompareReport`]: the per-URL verdict matrix, each vantage
//! point's mechanism mix, shared artifacts, Jaccard similarity of blocked
//! sets, first-seen times, and the criterion-by-criterion attribution
//! evidence ([`attribution`]). [`text`] prints it as tables; `--json` prints
//! it as JSON. `gatewatch report` draws its HTML from the same data.

pub mod aggregate;
pub mod artifacts;
pub mod attribution;
pub mod criteria;
pub mod summary;
pub mod text;
mod timestamps;

use std::io::Write;
use std::path::PathBuf;

pub use aggregate::{Aggregate, Grouping};
pub use summary::CompareReport;

use crate::results::{self, LineWarning, ResultsError};

/// Errors of `compare` (and of loading inputs for `report`).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// `--label` given, but not once per file.
    #[error("--label was given {labels} time(s) for {files} file(s): give one label per file, in file order")]
    LabelCount {
        /// Labels given.
        labels: usize,
        /// Files given.
        files: usize,
    },
    /// The same label twice.
    #[error("--label {0:?} was given twice: labels name distinct vantage points")]
    DuplicateLabel(String),
    /// A file could not be read.
    #[error(transparent)]
    Read(#[from] ResultsError),
    /// Nothing usable in the inputs.
    #[error("no measurement could be read from {0}")]
    Empty(String),
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Write(#[from] std::io::Error),
    /// Encoding JSON failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

const COMPARE_EXAMPLES: &str = "Examples:
  gatewatch compare isp-a.jsonl isp-b.jsonl
  gatewatch compare --label metfone --label smart a.jsonl b.jsonl --json";

/// Arguments of `gatewatch compare`.
#[derive(Debug, clap::Args)]
#[command(after_help = COMPARE_EXAMPLES)]
pub struct CompareArgs {
    /// Results files (JSONL, one measurement a line; `-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Name the vantage point of each file, in file order (one per file);
    /// without it, measurements are grouped by probe ASN, country and
    /// network name.
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Print JSON instead of text tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command; returns the process exit code.
pub async fn execute(args: CompareArgs) -> Result<u8, CompareError> {
    // A panic in the task is a bug: re-raise it rather than report it as
    // a write error.
    tokio::task::spawn_blocking(move || run(&args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn run(args: &CompareArgs) -> Result<u8, CompareError> {
    if let Err(e) = crate::inputcheck::check_results_files(&args.files) {
        eprintln!("gatewatch compare: {e}");
        return Ok(crate::usage::EXIT_USAGE);
    }
    let stderr = std::io::stderr();
    let report = load(&args.files, &args.labels, &mut |w| {
        let _ = writeln!(stderr.lock(), "{}", text::clean(&w.to_string()));
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(text::render(&report).as_bytes())?;
    }
    out.flush()?;
    // An input that was mostly unusable fails the command (after the
    // comparison of what could be read).
    Ok(u8::from(report.inputs.failed_inputs > 0))
}

/// Reads `files` (streaming), grouping by `labels` when given, and builds
/// the comparison. Malformed lines go to `warn`.
pub fn load(
    files: &[PathBuf],
    labels: &[String],
    warn: &mut dyn FnMut(&LineWarning),
) -> Result<CompareReport, CompareError> {
    let agg = load_aggregate(files, labels, warn)?;
    Ok(agg.0.report(agg.1))
}

/// Like [`load`], returning the aggregate itself and the input summary.
pub fn load_aggregate(
    files: &[PathBuf],
    labels: &[String],
    warn: &mut dyn FnMut(&LineWarning),
) -> Result<(Aggregate, summary::Inputs), CompareError> {
    let grouping = grouping(files, labels)?;
    let mut agg = Aggregate::new(grouping);
    // Measurements without our verdict (OONI's own) are analysed here, the
    // same way `gatewatch analyze` does.
    let mut ctx = crate::analysis::AnalysisContext::default();
    let stats = results::read_files(files, warn, &mut |i, mut m| {
        if m.test_keys.x_verdict.is_none() {
            crate::analyze::analyze_in_place(&mut m, &mut ctx);
        }
        agg.add(i, &m)
    })?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if stats.measurements == 0 {
        return Err(CompareError::Empty(names.join(", ")));
    }
    Ok((agg, summary::Inputs::new(names, stats)))
}

impl Aggregate {
    /// The comparison drawn from this aggregate.
    pub fn report(&self, inputs: summary::Inputs) -> CompareReport {
        let mut report = summary::build(self, inputs);
        report.attribution = attribution::assess(&report);
        report
    }
}

fn grouping(files: &[PathBuf], labels: &[String]) -> Result<Grouping, CompareError> {
    if labels.is_empty() {
        return Ok(Grouping::Network);
    }
    if labels.len() != files.len() {
        return Err(CompareError::LabelCount {
            labels: labels.len(),
            files: files.len(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for l in labels {
        if !seen.insert(l) {
            return Err(CompareError::DuplicateLabel(l.clone()));
        }
    }
    Ok(Grouping::Labels(labels.to_vec()))
}
