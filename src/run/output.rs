//! The results file: one measurement per line (JSONL), each line written
//! with a single `write` and flushed as soon as its URL finishes, so a kill
//! loses nothing already finished and leaves at most one torn last line.
//!
//! `--resume` reads the file back: complete measurements are kept and their
//! URLs skipped; a torn last line and measurements cut short (any
//! `x_interrupted`: Ctrl-C or the per-URL deadline) are dropped (those URLs
//! are measured again).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Writing or reading the results file failed.
#[derive(Debug, thiserror::Error)]
#[error("results file {path}: {source}")]
pub struct OutputError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Appends measurements to the results file.
#[derive(Debug)]
pub struct ResultsWriter {
    path: PathBuf,
    file: File,
}

impl ResultsWriter {
    /// Creates (or, with `append`, continues) the file.
    pub fn open(path: &Path, append: bool) -> Result<ResultsWriter, OutputError> {
        let err = |source| OutputError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut o = OpenOptions::new();
        if append {
            o.append(true).create(true);
        } else {
            o.write(true).create(true).truncate(true);
        }
        let file = o.open(path).map_err(err)?;
        Ok(ResultsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one measurement as one line, in one `write` call.
    pub fn write(&mut self, m: &serde_json::Value) -> Result<(), OutputError> {
        let mut line = serde_json::to_vec(m).map_err(|e| OutputError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|source| OutputError {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes to disk (end of run).
    pub fn sync(&mut self) -> Result<(), OutputError> {
        self.file.sync_data().map_err(|source| OutputError {
            path: self.path.clone(),
            source,
        })
    }
}

/// What `--resume` found in an existing results file.
#[derive(Debug, Default)]
pub struct ResumeState {
    /// URLs with a complete measurement.
    pub done: HashSet<String>,
    /// Lines dropped (torn, unreadable or interrupted).
    pub dropped: usize,
}

/// Reads an existing results file for `--resume` and rewrites it when lines
/// must go (through a temporary file and a rename, so a crash here loses
/// nothing). A missing file is an empty state.
pub fn prepare_resume(path: &Path) -> Result<ResumeState, OutputError> {
    let err = |source| OutputError {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ResumeState::default()),
        Err(e) => return Err(err(e)),
    };
    let mut state = ResumeState::default();
    let mut keep: Vec<Vec<u8>> = Vec::new();
    let mut r = BufReader::new(file);
    loop {
        let mut buf = Vec::new();
        let n = r.read_until(b'\n', &mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        let parsed = serde_json::from_slice::<serde_json::Value>(&buf).ok();
        let input = parsed
            .as_ref()
            .and_then(|v| v.get("input"))
            .and_then(|i| i.as_str())
            .map(str::to_string);
        let interrupted = parsed
            .as_ref()
            .and_then(|v| v.get("test_keys"))
            .and_then(|t| t.get("x_interrupted"))
            .is_some_and(|x| !x.is_null())
            // Measured during network-wide interception: measured again.
            || parsed
                .as_ref()
                .and_then(|v| v.get("test_keys"))
                .and_then(|t| t.get("x_network_interception"))
                .is_some_and(|x| !x.is_null());
        match (complete, input, interrupted) {
            (true, Some(input), false) => {
                state.done.insert(input);
                keep.push(buf);
            }
            _ => state.dropped += 1,
        }
    }
    if state.dropped > 0 {
        let tmp = path.with_extension("jsonl.resume-tmp");
        {
            let mut f = File::create(&tmp).map_err(err)?;
            for l in &keep {
                f.write_all(l).map_err(err)?;
            }
            f.sync_data().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)?;
    }
    Ok(state)
}

/// The newest `*.jsonl` in a directory (for `--resume` without `--output`).
pub fn newest_results(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_keeps_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let mut w = ResultsWriter::open(&p, false).unwrap();
        w.write(&json!({"input": "https://a.example/", "test_keys": {}}))
            .unwrap();
        w.write(
            &json!({"input": "https://b.example/", "test_keys": {"x_interrupted": "interrupted"}}),
        )
        .unwrap();
        w.write(&json!({"input": "https://c.example/", "test_keys": {}}))
            .unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"input\": \"https://d.exa").unwrap();
        drop(f);

        let st = prepare_resume(&p).unwrap();
        assert_eq!(st.dropped, 2);
        let mut done: Vec<_> = st.done.into_iter().collect();
        done.sort();
        assert_eq!(done, vec!["https://a.example/", "https://c.example/"]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        assert!(prepare_resume(&dir.path().join("missing.jsonl"))
            .unwrap()
            .done
            .is_empty());
    }
}
