//! Looking back: `gatewatch runs` lists the results files of past runs
//! (oldest first, numbered, with date, network and counts per status), and
//! `gatewatch show RUN|URL` prints one run's summary or one URL's latest
//! verdict with its evidence. Both read the results files `run` writes
//! (by default the dated files in the data directory), streaming.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::{Measurement, VerdictStatus};
use crate::run::plainwords;
use crate::run::strings::Lang;

/// Errors of `runs` and `show`.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// No data directory and no `--dir`.
    #[error("no data directory: give --dir DIR")]
    NoDataDir,
    /// The results directory cannot be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A results file cannot be read.
    #[error(transparent)]
    Read(#[from] crate::results::ResultsError),
    /// `show N` with no run N.
    #[error("no run {0}: `gatewatch runs` lists {1} run(s)")]
    NoRun(usize, usize),
    /// `show URL` found no measurement of it.
    #[error("no measurement of {0} in {1}")]
    NoUrl(String, String),
    /// `show FILE` with a file that is not there.
    #[error("{0}: no such file")]
    NoFile(PathBuf),
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Write(#[from] std::io::Error),
}

impl RunsError {
    /// True for errors in what the user asked for (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunsError::NoRun(..)
                | RunsError::NoUrl(..)
                | RunsError::NoFile(_)
                | RunsError::NoDataDir
        )
    }
}

const RUNS_EXAMPLES: &str = "Examples:
  gatewatch runs
  gatewatch runs --dir ./results";

/// `gatewatch runs` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = RUNS_EXAMPLES)]
pub struct RunsArgs {
    /// The results directory [default: $XDG_DATA_HOME/gatewatch/results].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const SHOW_EXAMPLES: &str = "Examples:
  gatewatch show 3                      # run number 3 of `gatewatch runs`
  gatewatch show results.jsonl          # a results file
  gatewatch show https://example.org/   # the latest verdict for one URL";

/// `gatewatch show` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = SHOW_EXAMPLES)]
pub struct ShowArgs {
    /// A run number from `gatewatch runs`, a results file, or a URL.
    #[arg(value_name = "RUN|FILE|URL")]
    pub what: String,
    /// The results directory [default: $XDG_DATA_HOME/gatewatch/results].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Language of the plain-language lines [default: from the locale].
    #[arg(long, value_enum)]
    pub lang: Option<Lang>,
}

/// One results file, summarised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    /// The file.
    pub file: PathBuf,
    /// The earliest `measurement_start_time` (UTC), empty when none.
    pub started: String,
    /// The latest `measurement_start_time`.
    pub ended: String,
    /// Network names (or `AS<n>` when unnamed) seen, in order of first sight.
    pub networks: Vec<String>,
    /// Measurements per status name.
    pub counts: BTreeMap<&'static str, u64>,
    /// Measurements read.
    pub measurements: u64,
    /// Lines skipped as unreadable.
    pub skipped: u64,
    /// Blocked and throttled URLs: (url, mechanism or empty).
    pub blocked: Vec<(String, String)>,
}

/// The results files in `dir` (`*.jsonl`), oldest first: by name, which for
/// `run`'s dated files is the start time.
pub fn results_files(dir: &Path) -> Result<Vec<PathBuf>, RunsError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RunsError::List {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

fn network_of(m: &Measurement) -> String {
    match m.probe_network_name.as_deref() {
        Some(n) if !n.is_empty() => format!("{n} ({})", m.probe_asn),
        _ => m.probe_asn.clone(),
    }
}

/// Reads one results file into a [`RunInfo`] (unreadable lines counted,
/// not printed).
pub fn summarise(file: &Path) -> Result<RunInfo, RunsError> {
    let mut info = RunInfo {
        file: file.to_path_buf(),
        ..RunInfo::default()
    };
    let stats = crate::results::read_file(file, &mut |_| {}, &mut |m| {
        let t = &m.measurement_start_time;
        if info.started.is_empty() || *t < info.started {
            info.started = t.clone();
        }
        if *t > info.ended {
            info.ended = t.clone();
        }
        let net = network_of(&m);
        if !info.networks.contains(&net) {
            info.networks.push(net);
        }
        let v = m.test_keys.x_verdict.clone().unwrap_or_default();
        *info.counts.entry(v.status.as_str()).or_default() += 1;
        if matches!(v.status, VerdictStatus::Blocked | VerdictStatus::Throttled) {
            info.blocked.push((
                m.input.clone().unwrap_or_default(),
                v.mechanism.clone().unwrap_or_default(),
            ));
        }
    })?;
    info.measurements = stats.measurements;
    info.skipped = stats.skipped;
    Ok(info)
}

fn results_dir(dir: &Option<PathBuf>) -> Result<PathBuf, RunsError> {
    match dir {
        Some(d) => Ok(d.clone()),
        None => Ok(crate::run::config::data_dir()
            .ok_or(RunsError::NoDataDir)?
            .join("results")),
    }
}

const STATUSES: [&str; 5] = ["blocked", "throttled", "down", "inconclusive", "accessible"];

fn counts_line(info: &RunInfo) -> String {
    STATUSES
        .iter()
        .map(|s| format!("{s} {}", info.counts.get(s).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `gatewatch runs`.
pub async fn execute_runs(args: RunsArgs) -> Result<u8, RunsError> {
    let dir = results_dir(&args.dir)?;
    let files = results_files(&dir)?;
    let mut out = std::io::stdout().lock();
    if files.is_empty() {
        writeln!(out, "no runs yet in {}", dir.display())?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:>3}  {:<20}  {:<24}  {:>5}  {:>7}  {:>9}  {:>4}  {:>12}  {:>10}  FILE",
        "#",
        "DATE (UTC)",
        "NETWORK",
        "URLS",
        "blocked",
        "throttled",
        "down",
        "inconclusive",
        "accessible"
    )?;
    for (i, f) in files.iter().enumerate() {
        let info = summarise(f)?;
        let c = |s: &str| info.counts.get(s).copied().unwrap_or(0);
        let net = match info.networks.len() {
            0 => "-".to_string(),
            1 => info.networks[0].clone(),
            n => format!("{} +{}", info.networks[0], n - 1),
        };
        writeln!(
            out,
            "{:>3}  {:<20}  {:<24}  {:>5}  {:>7}  {:>9}  {:>4}  {:>12}  {:>10}  {}",
            i + 1,
            if info.started.is_empty() {
                "-"
            } else {
                &info.started
            },
            net,
            info.measurements,
            c("blocked"),
            c("throttled"),
            c("down"),
            c("inconclusive"),
            c("accessible"),
            f.display()
        )?;
    }
    writeln!(out, "see one with: gatewatch show N")?;
    Ok(0)
}

/// Runs `gatewatch show`.
pub async fn execute_show(args: ShowArgs) -> Result<u8, RunsError> {
    let lang = args.lang.unwrap_or_else(Lang::from_env);
    let dir = results_dir(&args.dir)?;
    let what = args.what.trim();
    let file = if let Ok(n) = what.parse::<usize>() {
        let files = results_files(&dir)?;
        match n.checked_sub(1).and_then(|i| files.get(i)) {
            Some(f) => Some(f.clone()),
            None => return Err(RunsError::NoRun(n, files.len())),
        }
    } else if !what.contains("://") && Path::new(what).is_file() {
        Some(PathBuf::from(what))
    } else if !what.contains("://") && what.ends_with(".jsonl") {
        return Err(RunsError::NoFile(PathBuf::from(what)));
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    match file {
        Some(f) => show_run(&mut out, &summarise(&f)?, lang)?,
        None => {
            let files = results_files(&dir)?;
            let m = latest_for(&files, what)?
                .ok_or_else(|| RunsError::NoUrl(what.to_string(), dir.display().to_string()))?;
            show_url(&mut out, &m.0, &m.1, lang)?;
        }
    }
    Ok(0)
}

fn show_run(out: &mut dyn Write, info: &RunInfo, lang: Lang) -> std::io::Result<()> {
    writeln!(out, "file: {}", info.file.display())?;
    writeln!(out, "from {} to {} (UTC)", info.started, info.ended)?;
    writeln!(out, "network: {}", info.networks.join(", "))?;
    writeln!(out, "URLs: {} ({})", info.measurements, counts_line(info))?;
    if info.skipped > 0 {
        writeln!(out, "unreadable lines skipped: {}", info.skipped)?;
    }
    for (url, mech) in &info.blocked {
        let words = if mech.is_empty() {
            "-"
        } else {
            plainwords::describe(mech, lang)
        };
        writeln!(out, "  {url}: {words}")?;
    }
    writeln!(
        out,
        "evidence of one URL: gatewatch show URL; a report: gatewatch report {} --html report.html",
        info.file.display()
    )?;
    Ok(())
}

/// The latest measurement of `url` (by start time) across `files`, with
/// its file.
pub fn latest_for(
    files: &[PathBuf],
    url: &str,
) -> Result<Option<(Measurement, PathBuf)>, RunsError> {
    let key = crate::run::inputs::url_key(url);
    let mut best: Option<(Measurement, PathBuf)> = None;
    for f in files {
        crate::results::read_file(f, &mut |_| {}, &mut |m| {
            let same = m
                .input
                .as_deref()
                .is_some_and(|i| crate::run::inputs::url_key(i) == key);
            let newer = best
                .as_ref()
                .is_none_or(|(b, _)| m.measurement_start_time >= b.measurement_start_time);
            if same && newer {
                best = Some((m, f.clone()));
            }
        })?;
    }
    Ok(best)
}

fn show_url(out: &mut dyn Write, m: &Measurement, file: &Path, lang: Lang) -> std::io::Result<()> {
    let v = m.test_keys.x_verdict.clone().unwrap_or_default();
    writeln!(out, "URL: {}", m.input.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "measured: {} (UTC) from {}",
        m.measurement_start_time,
        network_of(m)
    )?;
    writeln!(out, "file: {}", file.display())?;
    let mut verdict = v.status.as_str().to_string();
    for part in [&v.layer, &v.mechanism, &v.confidence]
        .into_iter()
        .flatten()
    {
        verdict.push_str(", ");
        verdict.push_str(part);
    }
    writeln!(out, "verdict: {verdict}")?;
    if let Some(mech) = &v.mechanism {
        writeln!(out, "in plain words: {}", plainwords::describe(mech, lang))?;
    }
    if !v.evidence.is_empty() {
        writeln!(out, "evidence:")?;
        for e in &v.evidence {
            writeln!(out, "  - {e}")?;
        }
    }
    Ok(())
}
