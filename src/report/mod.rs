//! `gatewatch report`: one self-contained HTML file for people who will not
//! read JSON.
//!
//! The inputs are streamed into the same aggregate as `gatewatch compare`
//! ([`crate::compare::aggregate`]), so memory stays bounded; [`html`] then
//! renders a page with inline CSS and inline SVG charts ([`svg`]), no
//! script, no external asset, and a Content-Security-Policy that forbids
//! loading anything. Everything taken from measurements is HTML-escaped.

mod escape;
pub mod html;
pub mod svg;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::compare::{self, CompareError};

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the inputs failed.
    #[error(transparent)]
    Input(#[from] CompareError),
    /// Writing the HTML failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

const REPORT_EXAMPLES: &str = "Examples:
  gatewatch report results.jsonl --html report.html
  gatewatch report --label metfone --label smart a.jsonl b.jsonl --html report.html --title \"December\"";

/// Arguments of `gatewatch report`.
#[derive(Debug, clap::Args)]
#[command(after_help = REPORT_EXAMPLES)]
pub struct ReportArgs {
    /// Results files (JSONL, one measurement a line; `-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, value_name = "OUT")]
    pub html: PathBuf,
    /// Name the vantage point of each file, in file order (one per file).
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// The report's title.
    #[arg(long, default_value = "gatewatch report")]
    pub title: String,
}

/// Runs the command; returns the process exit code.
pub async fn execute(args: ReportArgs) -> Result<u8, ReportError> {
    // A panic in the task is a bug: re-raise it rather than report it as
    // a write error.
    tokio::task::spawn_blocking(move || run(&args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn run(args: &ReportArgs) -> Result<u8, ReportError> {
    if let Err(e) = crate::inputcheck::check_results_files(&args.files) {
        eprintln!("gatewatch report: {e}");
        return Ok(crate::usage::EXIT_USAGE);
    }
    let stderr = std::io::stderr();
    // A note about a whole input (line 0) says it was mostly unusable.
    let mut failed_inputs = 0u32;
    let page = render_files(&args.files, &args.labels, &args.title, &mut |w| {
        failed_inputs += u32::from(w.line == 0);
        let _ = writeln!(stderr.lock(), "{}", compare::text::clean(&w.to_string()));
    })?;
    write_atomically(&args.html, page.as_bytes()).map_err(|source| ReportError::Write {
        path: args.html.clone(),
        source,
    })?;
    eprintln!("wrote {}", args.html.display());
    Ok(u8::from(failed_inputs > 0))
}

/// Reads `files` (streaming) and renders the HTML page.
pub fn render_files(
    files: &[PathBuf],
    labels: &[String],
    title: &str,
    warn: &mut dyn FnMut(&crate::results::LineWarning),
) -> Result<String, CompareError> {
    let (agg, inputs) = compare::load_aggregate(files, labels, warn)?;
    let report = agg.report(inputs);
    Ok(html::render(title, &agg, &report))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
