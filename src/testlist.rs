//! Test lists: the Citizen Lab CSV format
//! (`url,category_code,category_description,date_added,source,notes`) and
//! plain text (one URL a line, `#` comments).
//!
//! A list is read as a stream ([`ListReader`]), so memory does not grow with
//! its size. [`open`] first looks at the start of the input and refuses what
//! is not a list at all (binary data, unknown columns) before anything is
//! measured; afterwards a malformed row is a [`RowWarning`]
//! (`file:line: reason`) and the reader moves on.
//!
//! Hostile input stays bounded: a line is read up to [`MAX_LINE_BYTES`] (the
//! rest of a longer line is skipped without being kept, and the row
//! refused), a URL may have at most [`MAX_URL_BYTES`], a quoted CSV field
//! may not span lines, and a UTF-8 byte-order mark is ignored.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The longest URL we measure, in bytes. Real test-list URLs are far
/// shorter; browsers and crawlers commonly stop at 2,000–8,000.
pub const MAX_URL_BYTES: usize = 8192;
/// The longest list line we read, in bytes (a CSV row with its notes).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Our curated Cambodian list (`testlists/kh.csv`), built into the binary.
pub const SHIPPED_KH: &str = include_str!("../testlists/kh.csv");

/// The Citizen Lab CSV header.
pub const CSV_HEADER: [&str; 6] = [
    "url",
    "category_code",
    "category_description",
    "date_added",
    "source",
    "notes",
];

/// One URL to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The URL as written in the list (trimmed).
    pub url: String,
    /// The Citizen Lab category code (e.g. `NEWS`); empty for plain lists and
    /// command-line URLs.
    pub category_code: String,
}

/// A list could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum TestListError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The input is not a test list.
    #[error("{path} is not a test list: {reason}")]
    NotAList {
        /// The file.
        path: String,
        /// What gave it away.
        reason: String,
    },
}

/// A row that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowWarning {
    /// The list's name.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for RowWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Where a list comes from.
#[derive(Clone, Debug)]
pub enum ListSource {
    /// A file on disk.
    File(PathBuf),
    /// Text built into the binary, with a display name.
    Embedded {
        /// Shown in warnings.
        name: String,
        /// The list.
        text: Cow<'static, str>,
    },
    /// A copy of a stream that can be read only once (standard input, a
    /// pipe), kept in a temporary file so the list can be read twice.
    Copied {
        /// Shown in warnings (`-` for standard input, or the path given).
        name: String,
        /// The copy; deleted when the last clone is dropped.
        file: Arc<tempfile::NamedTempFile>,
    },
}

impl ListSource {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            ListSource::File(p) => p.display().to_string(),
            ListSource::Embedded { name, .. } | ListSource::Copied { name, .. } => name.clone(),
        }
    }

    /// The source for `--input-file PATH`: `-` is standard input; standard
    /// input, pipes and other streams that can be read only once are copied
    /// to a temporary file first (on disk, not in memory).
    pub fn for_path(path: &std::path::Path) -> Result<ListSource, TestListError> {
        let name = path.display().to_string();
        let io = |source| TestListError::Io {
            path: name.clone(),
            source,
        };
        let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => return Ok(ListSource::File(path.to_path_buf())),
                // Missing files are reported when the list is opened.
                Err(_) => return Ok(ListSource::File(path.to_path_buf())),
                Ok(_) => Box::new(File::open(path).map_err(io)?),
            }
        };
        let mut copy = tempfile::NamedTempFile::new().map_err(io)?;
        std::io::copy(&mut input, copy.as_file_mut()).map_err(io)?;
        Ok(ListSource::Copied {
            name,
            file: Arc::new(copy),
        })
    }
}

/// The two formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// Citizen Lab CSV with its header.
    CitizenLab,
    /// One URL a line.
    Plain,
}

/// Opens a list, checks that it is one and returns a streaming reader.
pub fn open(src: &ListSource) -> Result<ListReader, TestListError> {
    let name = src.name();
    let io = |e| TestListError::Io {
        path: name.clone(),
        source: e,
    };
    let mut input: Box<dyn BufRead + Send> = match src {
        ListSource::File(p) => Box::new(BufReader::new(File::open(p).map_err(io)?)),
        ListSource::Copied { file, .. } => Box::new(BufReader::new(file.reopen().map_err(io)?)),
        ListSource::Embedded { text, .. } => {
            Box::new(Cursor::new(text.clone().into_owned().into_bytes()))
        }
    };
    let format = sniff(&name, &mut input)?;
    // A byte-order mark is not part of the first line.
    if input.fill_buf().map_err(io)?.starts_with(b"\xef\xbb\xbf") {
        input.consume(3);
    }
    let capped = LineCap::new(input);
    let overlong = Arc::clone(&capped.overlong);
    let input: Box<dyn BufRead + Send> = Box::new(BufReader::new(capped));
    let inner = match format {
        ListFormat::CitizenLab => Inner::Csv(
            csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(true)
                .from_reader(input),
        ),
        ListFormat::Plain => Inner::Plain { input, line: 0 },
    };
    Ok(ListReader {
        name,
        format,
        inner,
        overlong,
    })
}

/// Checks that a URL can be measured: absolute `http`/`https` with a host,
/// at most [`MAX_URL_BYTES`] long.
pub fn check_url(s: &str) -> Result<url::Url, String> {
    if s.len() > MAX_URL_BYTES {
        let start: String = s.chars().take(60).collect();
        return Err(format!(
            "URL too long ({} bytes; at most {MAX_URL_BYTES}): {start:?}...",
            s.len()
        ));
    }
    let u = url::Url::parse(s).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("unsupported URL scheme {:?} in {s:?}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL without a host: {s:?}"));
    }
    Ok(u)
}

/// The host of a URL, lower-case (empty when there is none).
pub fn host_of(s: &str) -> String {
    url::Url::parse(s)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// Reads entries one at a time.
pub struct ListReader {
    name: String,
    format: ListFormat,
    inner: Inner,
    /// Lines cut at [`MAX_LINE_BYTES`] and not yet reported.
    overlong: Arc<Mutex<BTreeSet<u64>>>,
}

impl fmt::Debug for ListReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListReader")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish()
    }
}

enum Inner {
    Csv(csv::Reader<Box<dyn BufRead + Send>>),
    Plain {
        input: Box<dyn BufRead + Send>,
        line: u64,
    },
}

impl ListReader {
    /// The list's format.
    pub fn format(&self) -> ListFormat {
        self.format
    }

    fn warn(&self, line: u64, reason: String) -> RowWarning {
        RowWarning {
            file: self.name.clone(),
            line,
            reason,
        }
    }

    /// Whether `line` was cut at [`MAX_LINE_BYTES`]; forgets the lines
    /// before it (they have been read).
    fn was_cut(&self, line: u64) -> bool {
        let Ok(mut set) = self.overlong.lock() else {
            return false;
        };
        *set = set.split_off(&line);
        set.remove(&line)
    }
}

fn too_long_line() -> String {
    format!("line longer than {MAX_LINE_BYTES} bytes; skipped")
}

/// Passes its input through, except that a line longer than
/// [`MAX_LINE_BYTES`] is cut there (the rest is read and thrown away, never
/// kept) and its number recorded, so the reader can refuse it.
struct LineCap<R> {
    inner: R,
    /// The current line (1-based).
    line: u64,
    /// Bytes of the current line passed through.
    len: usize,
    /// Throwing away the rest of a cut line.
    skipping: bool,
    overlong: Arc<Mutex<BTreeSet<u64>>>,
}

impl<R: BufRead> LineCap<R> {
    fn new(inner: R) -> LineCap<R> {
        LineCap {
            inner,
            line: 1,
            len: 0,
            skipping: false,
            overlong: Arc::default(),
        }
    }
}

impl<R: BufRead> Read for LineCap<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(0);
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            if self.skipping {
                match newline {
                    // The newline itself is passed on below.
                    Some(i) => {
                        self.inner.consume(i);
                        self.skipping = false;
                    }
                    None => {
                        let n = buf.len();
                        self.inner.consume(n);
                    }
                }
                continue;
            }
            let budget = MAX_LINE_BYTES.saturating_sub(self.len);
            let (n, ends_line) = match newline {
                // The rest of the line fits: up to and including the newline.
                Some(i) if i <= budget => {
                    let n = (i + 1).min(out.len());
                    (n, n == i + 1)
                }
                _ if budget == 0 => {
                    if let Ok(mut set) = self.overlong.lock() {
                        set.insert(self.line);
                    }
                    self.skipping = true;
                    continue;
                }
                _ => (budget.min(buf.len()).min(out.len()), false),
            };
            out[..n].copy_from_slice(&buf[..n]);
            self.inner.consume(n);
            if ends_line {
                self.line += 1;
                self.len = 0;
            } else {
                self.len += n;
            }
            return Ok(n);
        }
    }
}

impl Iterator for ListReader {
    type Item = Result<Entry, RowWarning>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Csv(r) => {
                let mut rec = csv::StringRecord::new();
                match r.read_record(&mut rec) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        if self.was_cut(line) {
                            return Some(Err(self.warn(line, too_long_line())));
                        }
                        if rec.iter().any(|f| f.contains(['\n', '\r'])) {
                            return Some(Err(self.warn(
                                line,
                                "a quoted field spans lines; a row must be one line".to_string(),
                            )));
                        }
                        Some(csv_entry(&rec).map_err(|reason| self.warn(line, reason)))
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        let reason = match e.kind() {
                            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                            _ => e.to_string(),
                        };
                        Some(Err(self.warn(line, reason)))
                    }
                }
            }
            Inner::Plain { input, line } => loop {
                let mut buf = Vec::new();
                match input.read_until(b'\n', &mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => {
                        *line += 1;
                        let l = *line;
                        return Some(Err(self.warn(l, e.to_string())));
                    }
                }
                *line += 1;
                let l = *line;
                if self.overlong.lock().is_ok_and(|mut s| {
                    *s = s.split_off(&l);
                    s.remove(&l)
                }) {
                    return Some(Err(self.warn(l, too_long_line())));
                }
                let Ok(text) = std::str::from_utf8(&buf) else {
                    return Some(Err(self.warn(l, "not valid UTF-8".to_string())));
                };
                let t = text.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let url = t.split_whitespace().next().unwrap_or(t);
                return Some(match check_url(url) {
                    Ok(_) => Ok(Entry {
                        url: url.to_string(),
                        category_code: String::new(),
                    }),
                    Err(reason) => Err(self.warn(l, reason)),
                });
            },
        }
    }
}

fn csv_entry(rec: &csv::StringRecord) -> Result<Entry, String> {
    if rec.len() != CSV_HEADER.len() {
        return Err(format!(
            "expected {} columns, found {}",
            CSV_HEADER.len(),
            rec.len()
        ));
    }
    let url = rec[0].trim();
    check_url(url)?;
    let cat = rec[1].trim();
    if cat.is_empty() {
        return Err("empty category_code".to_string());
    }
    if !cat
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(format!("invalid category_code {cat:?}"));
    }
    Ok(Entry {
        url: url.to_string(),
        category_code: cat.to_string(),
    })
}

/// Looks at the start of the input: binary data, a Citizen Lab header or a
/// URL on the first meaningful line. Consumes nothing.
fn sniff(name: &str, input: &mut Box<dyn BufRead + Send>) -> Result<ListFormat, TestListError> {
    let not_a_list = |reason: String| TestListError::NotAList {
        path: name.to_string(),
        reason,
    };
    let head = input
        .fill_buf()
        .map_err(|e| TestListError::Io {
            path: name.to_string(),
            source: e,
        })?
        .to_vec();
    if head.is_empty() {
        return Err(not_a_list("the file is empty".to_string()));
    }
    if head.contains(&0) {
        return Err(not_a_list(
            "it contains binary data (NUL bytes)".to_string(),
        ));
    }
    let text = match std::str::from_utf8(&head) {
        Ok(t) => t,
        // A multi-byte character cut at the end of the buffer is fine.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err(not_a_list("it is not UTF-8 text".to_string())),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(first) = first else {
        return Ok(ListFormat::Plain);
    };
    let cols: Vec<String> = first
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if cols.first().map(String::as_str) == Some("url") {
        if cols.iter().map(String::as_str).eq(CSV_HEADER) {
            return Ok(ListFormat::CitizenLab);
        }
        return Err(not_a_list(format!(
            "unexpected columns {first:?}; a Citizen Lab list has {:?}",
            CSV_HEADER.join(",")
        )));
    }
    let word = first.split_whitespace().next().unwrap_or(first);
    if check_url(word).is_ok() {
        return Ok(ListFormat::Plain);
    }
    Err(not_a_list(format!(
        "the first line is neither a Citizen Lab header ({}) nor a URL",
        CSV_HEADER.join(",")
    )))
}

/// Reads a whole list into memory, returning entries and warnings (for small
/// lists and tests; the run streams instead).
pub fn read_all(src: &ListSource) -> Result<(Vec<Entry>, Vec<RowWarning>), TestListError> {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for r in open(src)? {
        match r {
            Ok(e) => entries.push(e),
            Err(w) => warnings.push(w),
        }
    }
    Ok((entries, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded(text: &str) -> ListSource {
        ListSource::Embedded {
            name: "t.csv".to_string(),
            text: Cow::Owned(text.to_string()),
        }
    }

    #[test]
    fn citizen_lab_rows_and_malformed_rows() {
        let text = "url,category_code,category_description,date_added,source,notes\n\
            https://a.example/,NEWS,News Media,2026-11-27,gatewatch,\n\
            not a url,NEWS,News Media,2026-11-27,gatewatch,\n\
            https://b.example/,HUMR,Human Rights Issues,2026-11-27,gatewatch,\"a, b\"\n\
            https://c.example/,NEWS\n\
            ftp://d.example/,NEWS,News Media,2026-11-27,gatewatch,\n\
            https://e.example/,,x,2026-11-27,gatewatch,\n";
        let (entries, warnings) = read_all(&embedded(text)).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry {
                    url: "https://a.example/".into(),
                    category_code: "NEWS".into()
                },
                Entry {
                    url: "https://b.example/".into(),
                    category_code: "HUMR".into()
                },
            ]
        );
        let lines: Vec<u64> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![3, 5, 6, 7]);
        assert!(warnings[0].to_string().starts_with("t.csv:3: invalid URL"));
        assert_eq!(
            warnings[1].to_string(),
            "t.csv:5: expected 6 columns, found 2"
        );
        assert!(warnings[2].reason.contains("unsupported URL scheme"));
        assert_eq!(warnings[3].reason, "empty category_code");
    }

    #[test]
    fn plain_text_with_comments() {
        let text = "# my list\n\nhttp://a.example/\n  https://b.example/x  # note\nnope\n";
        let (entries, warnings) = read_all(&embedded(text)).unwrap();
        let urls: Vec<&str> = entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, vec!["http://a.example/", "https://b.example/x"]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 5);
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_url() {
        let (entries, warnings) = read_all(&embedded(
            "\u{feff}https://a.example/\nhttps://b.example/\n",
        ))
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let urls: Vec<&str> = entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, vec!["https://a.example/", "https://b.example/"]);
        let csv = format!(
            "\u{feff}{}\nhttps://a.example/,NEWS,News,2026-11-27,x,\n",
            CSV_HEADER.join(",")
        );
        let (entries, warnings) = read_all(&embedded(&csv)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn a_quoted_newline_is_refused_with_its_line() {
        let text = "url,category_code,category_description,date_added,source,notes\n\
            \"https://a.example/\nhttps://evil.example/\",NEWS,News,2026-11-27,x,\n\
            https://b.example/,NEWS,News,2026-11-27,x,\"two\nlines\"\n\
            https://c.example/,NEWS,News,2026-11-27,x,\n";
        let (entries, warnings) = read_all(&embedded(text)).unwrap();
        let urls: Vec<&str> = entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, vec!["https://c.example/"]);
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "t.csv:2: a quoted field spans lines; a row must be one line",
                "t.csv:4: a quoted field spans lines; a row must be one line"
            ]
        );
    }

    #[test]
    fn long_urls_and_lines_are_refused_with_their_line() {
        let long_url = format!("https://a.example/{}", "x".repeat(MAX_URL_BYTES));
        let huge_url = format!("https://b.example/{}", "y".repeat(3 * MAX_LINE_BYTES + 17));
        let text = format!("https://ok.example/\n{long_url}\n{huge_url}\nhttps://after.example/\n");
        let (entries, warnings) = read_all(&embedded(&text)).unwrap();
        let urls: Vec<&str> = entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, vec!["https://ok.example/", "https://after.example/"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0]
                .to_string()
                .starts_with("t.csv:2: URL too long (8210 bytes; at most 8192)"),
            "{}",
            warnings[0]
        );
        assert_eq!(
            warnings[1].to_string(),
            format!("t.csv:3: line longer than {MAX_LINE_BYTES} bytes; skipped")
        );
        // The same in a Citizen Lab list.
        let csv = format!(
            "{}\nhttps://ok.example/,NEWS,N,2026-11-27,x,\n{huge_url},NEWS,N,2026-11-27,x,\n\
             {long_url},NEWS,N,2026-11-27,x,\nhttps://after.example/,NEWS,N,2026-11-27,x,\n",
            CSV_HEADER.join(",")
        );
        let (entries, warnings) = read_all(&embedded(&csv)).unwrap();
        let urls: Vec<&str> = entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, vec!["https://ok.example/", "https://after.example/"]);
        let lines: Vec<u64> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![3, 4], "{warnings:?}");
        assert!(warnings[0].reason.starts_with("line longer than"));
        assert!(warnings[1].reason.starts_with("URL too long"));
        assert!(check_url(&long_url).unwrap_err().contains("at most 8192"));
    }

    #[test]
    fn binary_and_wrong_columns_are_not_lists() {
        let e = open(&embedded("\u{0}\u{1}ELF")).unwrap_err();
        assert!(matches!(e, TestListError::NotAList { .. }), "{e}");
        let e = open(&embedded("url,category\nhttps://a.example/,NEWS\n")).unwrap_err();
        assert!(e.to_string().contains("unexpected columns"), "{e}");
        let e = open(&embedded("name,age\nbob,3\n")).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        let e = open(&embedded("")).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn shipped_list_is_clean_and_large_enough() {
        let (entries, warnings) = read_all(&embedded(SHIPPED_KH)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(entries.len() >= 80, "{}", entries.len());
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            assert!(seen.insert(e.url.clone()), "duplicate {}", e.url);
        }
    }
}
