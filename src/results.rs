//! Streaming reader of results files (JSONL, one [`Measurement`] a line).
//!
//! Shared by every command that reads results (`compare`, `report`, and
//! any other that wants to): lines are read one at a time and handed to a
//! callback, so memory stays bounded whatever the file's size. The reader
//! is tolerant: a line that does not parse is reported as a [`LineWarning`]
//! (`file:line: reason`) and skipped, blank lines are ignored, unknown
//! fields are ignored, and a line longer than [`MAX_LINE_BYTES`] is skipped
//! with a warning instead of being buffered. Only a file that cannot be
//! opened or read is an error.
//!
//! ```no_run
//! use gatewatch::results::{read_files, LineWarning};
//! let files = vec![std::path::PathBuf::from("results.jsonl")];
//! let stats = read_files(
//!     &files,
//!     &mut |w: &LineWarning| eprintln!("{w}"),
//!     &mut |_file_index, m| println!("{:?}", m.input),
//! )?;
//! eprintln!("{} measurements", stats.measurements);
//! # Ok::<(), gatewatch::results::ResultsError>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::model::Measurement;

/// Lines longer than this (64 MiB) are skipped with a warning.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A results file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading failed part-way.
    #[error("cannot read {path} after line {line}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The last line read whole.
        line: u64,
        /// Why.
        source: io::Error,
    },
}

/// A line that was skipped, and why. Displays as `file:line: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineWarning {
    /// The file as given on the command line (`-` for standard input).
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for LineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// What reading one or more files found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Measurements handed to the callback.
    pub measurements: u64,
    /// Lines skipped with a warning.
    pub skipped: u64,
}

impl ReadStats {
    fn add(&mut self, other: ReadStats) {
        self.lines += other.lines;
        self.measurements += other.measurements;
        self.skipped += other.skipped;
    }
}

/// Reads `files` in order; calls `each(file_index, measurement)` for every
/// measurement and `warn` for every skipped line. `-` reads standard input.
pub fn read_files(
    files: &[PathBuf],
    warn: &mut dyn FnMut(&LineWarning),
    each: &mut dyn FnMut(usize, Measurement),
) -> Result<ReadStats, ResultsError> {
    let mut total = ReadStats::default();
    for (i, path) in files.iter().enumerate() {
        let stats = read_file(path, warn, &mut |m| each(i, m))?;
        total.add(stats);
    }
    Ok(total)
}

/// Reads one file (`-`: standard input), streaming.
pub fn read_file(
    path: &Path,
    warn: &mut dyn FnMut(&LineWarning),
    each: &mut dyn FnMut(Measurement),
) -> Result<ReadStats, ResultsError> {
    if path == Path::new("-") {
        return read_lines(io::stdin().lock(), path, warn, each);
    }
    let file = File::open(path).map_err(|source| ResultsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_lines(BufReader::with_capacity(1 << 16, file), path, warn, each)
}

/// Reads JSONL from any buffered reader; `path` names it in warnings and
/// errors.
pub fn read_lines<R: BufRead>(
    mut reader: R,
    path: &Path,
    warn: &mut dyn FnMut(&LineWarning),
    each: &mut dyn FnMut(Measurement),
) -> Result<ReadStats, ResultsError> {
    let name = path.display().to_string();
    let mut stats = ReadStats::default();
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        let read_err = |source| ResultsError::Read {
            path: path.to_path_buf(),
            line: stats.lines,
            source,
        };
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(read_err)?;
        if n == 0 {
            break;
        }
        stats.lines += 1;
        let mut skip = |reason: String, stats: &mut ReadStats| {
            stats.skipped += 1;
            warn(&LineWarning {
                file: name.to_string(),
                line: stats.lines,
                reason,
            });
        };
        if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            discard_rest_of_line(&mut reader).map_err(|source| ResultsError::Read {
                path: path.to_path_buf(),
                line: stats.lines,
                source,
            })?;
            skip(
                format!("line longer than {MAX_LINE_BYTES} bytes, skipped"),
                &mut stats,
            );
            continue;
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Measurement>(line) {
            Ok(m) => {
                stats.measurements += 1;
                each(m);
            }
            Err(e) => skip(describe_json_error(&e), &mut stats),
        }
    }
    Ok(stats)
}

/// serde_json's message without its "at line 1 column N" suffix for
/// syntax errors inside one line (the column stays: it is useful).
fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "not a measurement",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg.as_str(),
    };
    format!("{kind}: {msg} (column {})", e.column())
}

fn discard_rest_of_line<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let (done, used) = {
            let avail = reader.fill_buf()?;
            if avail.is_empty() {
                return Ok(());
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, avail.len()),
            }
        };
        reader.consume(used);
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (ReadStats, Vec<String>, Vec<Option<String>>) {
        let mut warnings = Vec::new();
        let mut inputs = Vec::new();
        let stats = read_lines(
            text.as_bytes(),
            Path::new("f.jsonl"),
            &mut |w| warnings.push(w.to_string()),
            &mut |m| inputs.push(m.input),
        )
        .unwrap();
        (stats, warnings, inputs)
    }

    fn line(url: &str) -> String {
        let m = Measurement {
            input: Some(url.to_string()),
            ..Default::default()
        };
        serde_json::to_string(&m).unwrap()
    }

    #[test]
    fn skips_bad_lines_with_file_and_line() {
        let text = format!(
            "{}\n\n{{not json\n{{\"input\":\"x\"}}\n{}",
            line("http://a.example/"),
            line("http://b.example/")
        );
        let (stats, warnings, inputs) = read(&text);
        assert_eq!(
            stats,
            ReadStats {
                lines: 5,
                measurements: 2,
                skipped: 2
            }
        );
        assert_eq!(
            inputs,
            vec![
                Some("http://a.example/".to_string()),
                Some("http://b.example/".to_string())
            ]
        );
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("f.jsonl:3: invalid JSON: key must be a string"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("f.jsonl:4: not a measurement: missing field"),
            "{warnings:?}"
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v: serde_json::Value = serde_json::from_str(&line("http://c.example/")).unwrap();
        v["x_future_key"] = serde_json::json!({"a": 1});
        v["test_keys"]["x_other"] = serde_json::json!([1, 2]);
        let (stats, warnings, _) = read(&v.to_string());
        assert_eq!(stats.measurements, 1);
        assert!(warnings.is_empty());
    }

    #[test]
    fn truncated_last_line_is_a_warning() {
        let full = line("http://d.example/");
        let text = format!("{full}\n{}", &full[..full.len() / 2]);
        let (stats, warnings, _) = read(&text);
        assert_eq!(stats.measurements, 1);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("f.jsonl:2: truncated JSON"),
            "{warnings:?}"
        );
    }
}
