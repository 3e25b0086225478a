//! A look at each results file before `compare`/`report` read it: a file
//! that is missing is named once, and a file that is not text (a NUL byte
//! in its first block, e.g. the binary or a database given by mistake) is
//! refused with one line instead of a warning per line.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a file given as results cannot be read as results.
#[derive(Debug, thiserror::Error)]
pub enum InputCheckError {
    /// The file does not exist.
    #[error("{0}: no such file")]
    Missing(PathBuf),
    /// The file is a directory.
    #[error("{0}: is a directory, not a results file")]
    Directory(PathBuf),
    /// The file holds binary data.
    #[error("{0}: not a results file (binary data; expected JSONL text, one measurement a line)")]
    Binary(PathBuf),
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How much of the start of a file is looked at.
const PEEK: usize = 8192;

/// Checks each of `files` (`-`, standard input, is not checked).
pub fn check_results_files(files: &[PathBuf]) -> Result<(), InputCheckError> {
    files
        .iter()
        .filter(|p| p.as_path() != Path::new("-"))
        .try_for_each(|p| check_one(p))
}

fn check_one(path: &Path) -> Result<(), InputCheckError> {
    let open = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => InputCheckError::Missing(path.to_path_buf()),
        _ => InputCheckError::Open {
            path: path.to_path_buf(),
            source,
        },
    };
    if path.is_dir() {
        return Err(InputCheckError::Directory(path.to_path_buf()));
    }
    let file = std::fs::File::open(path).map_err(open)?;
    let mut head = Vec::with_capacity(PEEK);
    file.take(PEEK as u64)
        .read_to_end(&mut head)
        .map_err(open)?;
    if head.contains(&0) {
        return Err(InputCheckError::Binary(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_and_text_files() {
        let d = tempfile::tempdir().unwrap();
        let text = d.path().join("r.jsonl");
        std::fs::write(&text, "{}\n").unwrap();
        let bin = d.path().join("b.jsonl");
        std::fs::write(&bin, b"\x7fELF\x02\x01\x01\x00\x00").unwrap();
        let gone = d.path().join("gone.jsonl");
        check_results_files(&[text.clone(), "-".into()]).unwrap();
        let e = check_results_files(&[text.clone(), bin]).unwrap_err();
        assert!(matches!(e, InputCheckError::Binary(_)), "{e}");
        let e = check_results_files(&[gone]).unwrap_err().to_string();
        assert!(e.ends_with("gone.jsonl: no such file"), "{e}");
    }
}
