//! `gatewatch analyze`: re-analyse measurements — OONI's of any Web
//! Connectivity version, or ours — with the same analysis as `run`.
//!
//! Each measurement read ([`crate::results`]) is written back as one JSON
//! line: every key it had is kept as it was (OONI's own `blocking`,
//! `accessible`, `x_blocking_flags`...), and `test_keys.x_verdict` is set
//! to our verdict, computed from what the measurement holds. What OONI's
//! data cannot support is said in the verdict's evidence
//! ([`crate::ooni::normalize::limit_sentences`]); a verdict the data
//! cannot carry is `inconclusive`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use serde_json::Value;

use crate::analysis::{self, AnalysisContext, FingerprintError, Fingerprints};
use crate::model::{Measurement, Verdict};
use crate::ooni::normalize;
use crate::results::{self, LineWarning, ReadStats, ResultsError};

/// Errors of `gatewatch analyze`.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// An input could not be read.
    #[error(transparent)]
    Read(#[from] ResultsError),
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output (`-` for standard output).
        path: String,
        /// Why.
        source: io::Error,
    },
    /// `--fingerprints` could not be loaded.
    #[error(transparent)]
    Fingerprints(#[from] FingerprintError),
    /// Nothing usable in the inputs.
    #[error("no measurement could be read from {0}")]
    Empty(String),
}

/// Arguments of `gatewatch analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Measurements: JSONL (plain or .gz), a JSON measurement, OONI API
    /// bodies; `-` for standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Blocking fingerprints in OONI's CSV format (default: ours).
    #[arg(long, value_name = "DIR")]
    pub fingerprints: Option<PathBuf>,
}

/// Runs the command; returns the process exit code.
pub async fn execute(args: AnalyzeArgs) -> Result<u8, AnalyzeError> {
    tokio::task::spawn_blocking(move || run(&args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn run(args: &AnalyzeArgs) -> Result<u8, AnalyzeError> {
    let fingerprints = match &args.fingerprints {
        Some(d) => Fingerprints::load_dir(d)?,
        None => Fingerprints::shipped(),
    };
    let out_name = args
        .output
        .as_ref()
        .map_or_else(|| "-".to_string(), |p| p.display().to_string());
    let write_err = |source| AnalyzeError::Write {
        path: out_name.clone(),
        source,
    };
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).map_err(write_err)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let stderr = io::stderr();
    let stats = analyze_files(
        &args.files,
        fingerprints,
        &mut |w| {
            let _ = writeln!(
                stderr.lock(),
                "{}",
                crate::compare::text::clean(&w.to_string())
            );
        },
        &mut out,
    )
    .map_err(|e| match e {
        AnalyzeFilesError::Read(e) => AnalyzeError::Read(e),
        AnalyzeFilesError::Write(e) => write_err(e),
    })?;
    out.flush().map_err(write_err)?;
    if stats.measurements == 0 {
        let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
        return Err(AnalyzeError::Empty(names.join(", ")));
    }
    Ok(stats.exit_code())
}

/// Why [`analyze_files`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeFilesError {
    /// An input could not be read.
    #[error(transparent)]
    Read(#[from] ResultsError),
    /// Writing failed.
    #[error("write error: {0}")]
    Write(#[from] io::Error),
}

/// Reads `files`, analyses every measurement and writes one line each to
/// `out`. Skipped records go to `warn`.
pub fn analyze_files(
    files: &[PathBuf],
    fingerprints: Fingerprints,
    warn: &mut dyn FnMut(&LineWarning),
    out: &mut dyn Write,
) -> Result<ReadStats, AnalyzeFilesError> {
    let mut ctx = AnalysisContext {
        fingerprints,
        ..AnalysisContext::default()
    };
    let mut write_error: Option<io::Error> = None;
    let stats = results::read_files_raw(files, warn, &mut |_, raw| {
        if write_error.is_some() {
            return;
        }
        let mut json = raw.json;
        let verdict = verdict_of(raw.measurement, &mut ctx);
        set_verdict(&mut json, &verdict);
        let line = serde_json::to_vec(&json).map_err(io::Error::other);
        if let Err(e) = line.and_then(|mut l| {
            l.push(b'\n');
            out.write_all(&l)
        }) {
            write_error = Some(e);
        }
    })?;
    match write_error {
        Some(e) => Err(e.into()),
        None => Ok(stats),
    }
}

/// Our verdict for one measurement, with what its data could not support
/// added to the evidence.
pub fn verdict_of(mut m: Measurement, ctx: &mut AnalysisContext) -> Verdict {
    analyze_in_place(&mut m, ctx);
    m.test_keys.x_verdict.take().unwrap_or_default()
}

/// Analyses `m` as `run` does (after [`normalize::prepare`] for another
/// probe's data), setting its classic keys and `x_verdict`, whose evidence
/// ends with what the data could not support.
pub fn analyze_in_place(m: &mut Measurement, ctx: &mut AnalysisContext) {
    let limits = normalize::prepare(m);
    ctx.probe_cc = if m.probe_cc.len() == 2 {
        m.probe_cc.to_ascii_uppercase()
    } else {
        "ZZ".into()
    };
    analysis::analyze(m, ctx);
    let more = normalize::limit_sentences(m, &limits);
    if let Some(v) = m.test_keys.x_verdict.as_mut() {
        v.evidence.extend(more);
    }
}

/// Sets `test_keys.x_verdict` in the JSON, creating `test_keys` when it is
/// missing or null.
fn set_verdict(json: &mut Value, verdict: &Verdict) {
    let Value::Object(top) = json else {
        return;
    };
    let tk = top
        .entry("test_keys")
        .or_insert_with(|| Value::Object(Default::default()));
    if !tk.is_object() {
        *tk = Value::Object(Default::default());
    }
    if let (Value::Object(tk), Ok(v)) = (tk, serde_json::to_value(verdict)) {
        tk.insert("x_verdict".into(), v);
    }
}
