//! The one reader of measurements: ours and OONI's, every Web Connectivity
//! version.
//!
//! Shared by every command that reads results (`compare`, `report`,
//! `analyze`): measurements are read one at a time and handed to a
//! callback, so memory stays bounded whatever the file's size. It reads
//!
//! - JSONL (one measurement a line), plain or gzip-compressed (recognised by
//!   its magic bytes, so `.jsonl.gz` and a compressed standard input work);
//! - a single JSON measurement, pretty-printed over many lines, or several
//!   one after the other;
//! - OONI API bodies: a list `{"results":[...]}` whose entries hold the
//!   measurement, `measurement_meta?full=true` (`raw_measurement` as a JSON
//!   string), a raw measurement, or a JSON array of measurements.
//!
//! OONI's data is loose — `null` where a list is expected, keys older
//! versions never wrote, base64 bodies — and the model reads it all
//! ([`probes::lenient`]). A record that still cannot be used is a
//! [`LineWarning`] (`file:line: reason`, the reason naming OONI's field,
//! e.g. `test_keys.requests[0].response.code`) and is skipped; measurements
//! of another test (`test_name` not `web_connectivity`) are skipped the same
//! way. When more than half of an input's records are skipped, a last
//! warning for that input says so and [`ReadStats::failed_inputs`] counts
//! it: the commands then exit non-zero. Only an input that cannot be opened
//! or read is an error.
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

use serde_json::Value;

use crate::model::{Measurement, TEST_NAME};

/// Lines longer than this (64 MiB) are skipped with a warning.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A multi-line JSON document (a pretty-printed measurement, an API body)
/// larger than this (256 MiB) is refused.
pub const MAX_DOCUMENT_BYTES: usize = 256 << 20;

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

/// A record that was skipped, and why. Displays as `file:line: reason`
/// (`file: reason` for a note about the whole input, `line` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineWarning {
    /// The file as given on the command line (`-` for standard input).
    pub file: String,
    /// 1-based line number (where the record starts); 0 for the input as a
    /// whole.
    pub line: u64,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for LineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// What reading one or more files found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Measurements handed to the callback.
    pub measurements: u64,
    /// Records skipped with a warning.
    pub skipped: u64,
    /// Inputs of which more than half of the records were skipped.
    pub failed_inputs: u64,
}

impl ReadStats {
    fn add(&mut self, other: ReadStats) {
        self.lines += other.lines;
        self.measurements += other.measurements;
        self.skipped += other.skipped;
        self.failed_inputs += other.failed_inputs;
    }

    /// The exit code a command reading these inputs should end with: 0, or
    /// 1 when an input was mostly unusable.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed_inputs > 0)
    }
}

/// One measurement as read: the model, and the JSON it came from (every
/// key, OONI's unknown ones included), for commands that write it back.
#[derive(Clone, Debug)]
pub struct RawMeasurement {
    /// The measurement.
    pub measurement: Measurement,
    /// The JSON object as read.
    pub json: Value,
}

/// Reads `files` in order; calls `each(file_index, measurement)` for every
/// measurement and `warn` for every skipped record. `-` reads standard
/// input.
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

/// Like [`read_files`], also handing over each measurement's JSON.
pub fn read_files_raw(
    files: &[PathBuf],
    warn: &mut dyn FnMut(&LineWarning),
    each: &mut dyn FnMut(usize, RawMeasurement),
) -> Result<ReadStats, ResultsError> {
    let mut total = ReadStats::default();
    for (i, path) in files.iter().enumerate() {
        let mut sink = Sink::Raw(&mut |m| each(i, m));
        let stats = open_and_read(path, warn, &mut sink)?;
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
    open_and_read(path, warn, &mut Sink::Model(each))
}

/// Reads any buffered reader (JSONL, gzip, JSON documents); `path` names it
/// in warnings and errors.
pub fn read_lines<R: BufRead>(
    reader: R,
    path: &Path,
    warn: &mut dyn FnMut(&LineWarning),
    each: &mut dyn FnMut(Measurement),
) -> Result<ReadStats, ResultsError> {
    read_any(reader, path, warn, &mut Sink::Model(each))
}

/// Where decoded measurements go.
enum Sink<'a> {
    Model(&'a mut dyn FnMut(Measurement)),
    Raw(&'a mut dyn FnMut(RawMeasurement)),
}

fn open_and_read(
    path: &Path,
    warn: &mut dyn FnMut(&LineWarning),
    sink: &mut Sink<'_>,
) -> Result<ReadStats, ResultsError> {
    if path == Path::new("-") {
        return read_any(io::stdin().lock(), path, warn, sink);
    }
    let file = File::open(path).map_err(|source| ResultsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_any(BufReader::with_capacity(1 << 16, file), path, warn, sink)
}

/// Looks at the first bytes: gzip is unpacked, then read as text.
fn read_any<R: BufRead>(
    mut reader: R,
    path: &Path,
    warn: &mut dyn FnMut(&LineWarning),
    sink: &mut Sink<'_>,
) -> Result<ReadStats, ResultsError> {
    let head = reader.fill_buf().map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        line: 0,
        source,
    })?;
    let mut input = Input {
        path,
        name: path.display().to_string(),
        stats: ReadStats::default(),
        warn,
        sink,
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::bufread::MultiGzDecoder::new(reader);
        input.read_text(BufReader::with_capacity(1 << 16, gz))?;
    } else {
        input.read_text(reader)?;
    }
    input.finish();
    Ok(input.stats)
}

/// The state of reading one input.
struct Input<'a, 'b> {
    path: &'a Path,
    name: String,
    stats: ReadStats,
    warn: &'a mut dyn FnMut(&LineWarning),
    sink: &'a mut Sink<'b>,
}

impl Input<'_, '_> {
    fn read_err(&self, source: io::Error) -> ResultsError {
        ResultsError::Read {
            path: self.path.to_path_buf(),
            line: self.stats.lines,
            source,
        }
    }

    fn skip(&mut self, line: u64, reason: String) {
        self.stats.skipped += 1;
        (self.warn)(&LineWarning {
            file: self.name.clone(),
            line,
            reason,
        });
    }

    /// JSONL, until a line turns out to start a multi-line JSON document:
    /// the rest of the input is then read as JSON documents.
    fn read_text<R: BufRead>(&mut self, mut reader: R) -> Result<(), ResultsError> {
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| self.read_err(e))?;
            if n == 0 {
                return Ok(());
            }
            self.stats.lines += 1;
            let line_no = self.stats.lines;
            if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
                discard_rest_of_line(&mut reader).map_err(|e| self.read_err(e))?;
                self.skip(
                    line_no,
                    format!("line longer than {MAX_LINE_BYTES} bytes, skipped"),
                );
                continue;
            }
            let line = buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match self.decode_line(line) {
                Ok(()) => {}
                // Only the first record may start a multi-line document;
                // later, an unfinished line is a line cut short.
                Err(LineError::Incomplete)
                    if self.stats.measurements == 0 && self.stats.skipped == 0 =>
                {
                    return self.read_documents(buf, reader, line_no);
                }
                Err(LineError::Incomplete) => {
                    let e = serde_json::from_slice::<Value>(line)
                        .err()
                        .map(|e| describe_json_error(&e))
                        .unwrap_or_else(|| "truncated JSON".into());
                    self.skip(line_no, e);
                }
                Err(LineError::Skip(reason)) => self.skip(line_no, reason),
            }
        }
    }

    /// One JSONL line: straight into the model (fast), or through
    /// [`expand`] when it is an API body.
    fn decode_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        if let Sink::Model(each) = self.sink {
            let mut de = serde_json::Deserializer::from_slice(line);
            match serde_path_to_error::deserialize::<_, Measurement>(&mut de)
                .and_then(|m| de.end().map(|()| m).map_err(to_path_error))
            {
                Ok(m) if !m.test_name.is_empty() => {
                    check_test_name(&m).map_err(LineError::Skip)?;
                    self.stats.measurements += 1;
                    each(m);
                    return Ok(());
                }
                Err(e) if e.inner().is_eof() => return Err(LineError::Incomplete),
                Err(e) if e.inner().is_syntax() => {
                    return Err(LineError::Skip(describe_json_error(e.inner())))
                }
                // No test_name, or not the model's shape: maybe an API body
                // (or a list); look closer below.
                _ => {}
            }
        }
        let value: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) if e.is_eof() => return Err(LineError::Incomplete),
            Err(e) => return Err(LineError::Skip(describe_json_error(&e))),
        };
        self.take_value(value, self.stats.lines);
        Ok(())
    }

    /// The rest of the input as JSON documents, `first` holding the start
    /// of the first one (read at line `first_line`).
    fn read_documents<R: BufRead>(
        &mut self,
        mut text: Vec<u8>,
        reader: R,
        first_line: u64,
    ) -> Result<(), ResultsError> {
        let limit = MAX_DOCUMENT_BYTES.saturating_sub(text.len()) as u64 + 1;
        reader
            .take(limit)
            .read_to_end(&mut text)
            .map_err(|e| self.read_err(e))?;
        // Lines after the first one of the document.
        let newlines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        let ends_with_newline = text.last() == Some(&b'\n');
        let last_line = first_line + newlines.saturating_sub(u64::from(ends_with_newline));
        self.stats.lines = last_line;
        if text.len() > MAX_DOCUMENT_BYTES {
            self.skip(
                first_line,
                format!("JSON document longer than {MAX_DOCUMENT_BYTES} bytes, skipped"),
            );
            return Ok(());
        }
        let mut stream = serde_json::Deserializer::from_slice(&text).into_iter::<Value>();
        let mut counted_to = 0usize;
        let mut line = first_line;
        loop {
            // The line where the next document starts.
            let start = stream.byte_offset();
            let rest = &text[start..];
            let lead = rest.len() - rest.trim_ascii_start().len();
            line += text[counted_to..start + lead]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = start + lead;
            match stream.next() {
                None => return Ok(()),
                Some(Ok(v)) => self.take_value(v, line),
                Some(Err(e)) => {
                    // Not a document after all (a line cut short, then more
                    // lines): that line is skipped and the rest is read line
                    // by line again, so nothing after it is lost.
                    self.skip(line, describe_json_error(&e));
                    let Some(nl) = text[counted_to..].iter().position(|&b| b == b'\n') else {
                        return Ok(());
                    };
                    self.stats.lines = line;
                    return self.read_text(&text[counted_to + nl + 1..]);
                }
            }
        }
    }

    /// One JSON value: a measurement, or an API body holding some.
    fn take_value(&mut self, value: Value, line: u64) {
        for (place, item) in expand(value) {
            let located = |reason: String| match &place {
                Some(p) => format!("{p}: {reason}"),
                None => reason,
            };
            let item = match item {
                Ok(v) => v,
                Err(reason) => {
                    self.skip(line, located(reason));
                    continue;
                }
            };
            match decode_value(&item) {
                Ok(m) => {
                    self.stats.measurements += 1;
                    match self.sink {
                        Sink::Model(each) => each(m),
                        Sink::Raw(each) => each(RawMeasurement {
                            measurement: m,
                            json: item,
                        }),
                    }
                }
                Err(reason) => self.skip(line, located(reason)),
            }
        }
    }

    /// The closing note when most of the input was unusable.
    fn finish(&mut self) {
        let s = self.stats;
        let records = s.measurements + s.skipped;
        if s.skipped > 0 && s.skipped * 2 > records {
            self.stats.failed_inputs += 1;
            (self.warn)(&LineWarning {
                file: self.name.clone(),
                line: 0,
                reason: format!(
                    "{} of {} records skipped: more than half of this input is not \
                     usable Web Connectivity data",
                    s.skipped, records
                ),
            });
        }
    }
}

enum LineError {
    /// The line starts a JSON document that goes on over the next lines.
    Incomplete,
    /// The line is skipped for this reason.
    Skip(String),
}

/// The measurements a JSON value holds, each with where it sits in the
/// value (`results[3]`), or why an entry is not one.
fn expand(value: Value) -> Vec<(Option<String>, Result<Value, String>)> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Some(format!("[{i}]")), unwrap_api(v)))
            .collect(),
        Value::Object(mut map) if !map.contains_key("test_keys") => match map.remove("results") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Some(format!("results[{i}]")), unwrap_api(v)))
                .collect(),
            Some(other) => {
                map.insert("results".into(), other);
                vec![(None, unwrap_api(Value::Object(map)))]
            }
            None => vec![(None, unwrap_api(Value::Object(map)))],
        },
        v => vec![(None, Ok(v))],
    }
}

/// An API wrapper around one measurement (`measurement_meta?full=true`:
/// `raw_measurement` as JSON text), or the measurement itself.
fn unwrap_api(v: Value) -> Result<Value, String> {
    let Value::Object(map) = &v else {
        return Ok(v);
    };
    if map.contains_key("test_keys") {
        return Ok(v);
    }
    match map.get("raw_measurement") {
        Some(Value::String(s)) if !s.is_empty() => {
            return serde_json::from_str(s)
                .map_err(|e| format!("raw_measurement: {}", describe_json_error(&e)));
        }
        Some(Value::Object(_)) => {
            let Value::Object(mut map) = v else {
                unreachable!()
            };
            return Ok(map.remove("raw_measurement").unwrap_or_default());
        }
        Some(_) => {
            return Err("raw_measurement is empty: OONI's API did not include the \
                        measurement"
                .into())
        }
        None => {}
    }
    if map.contains_key("measurement_uid") || map.contains_key("measurement_url") {
        return Err("an entry of OONI's measurement list (metadata only): \
                    fetch the measurements with `gatewatch ooni fetch`"
            .into());
    }
    Ok(v)
}

/// A JSON value as a Web Connectivity measurement, or why not.
fn decode_value(v: &Value) -> Result<Measurement, String> {
    let m: Measurement =
        serde_path_to_error::deserialize(v).map_err(|e| describe_path_error(&e))?;
    check_test_name(&m)?;
    Ok(m)
}

fn check_test_name(m: &Measurement) -> Result<(), String> {
    match m.test_name.as_str() {
        TEST_NAME => Ok(()),
        "" => Err("not a measurement: test_name is missing".into()),
        other => Err(format!(
            "test_name is {other:?}: only {TEST_NAME} measurements are read"
        )),
    }
}

fn to_path_error(e: serde_json::Error) -> serde_path_to_error::Error<serde_json::Error> {
    let track = serde_path_to_error::Track::new();
    serde_path_to_error::Error::new(track.path(), e)
}

/// A model error naming the field, e.g. `not a measurement:
/// test_keys.requests[0].response.code: invalid type: ...`.
fn describe_path_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = describe_json_error(e.inner());
    let path = e.path().to_string();
    if path.is_empty() || path == "." {
        return inner;
    }
    match inner.split_once(": ") {
        Some((kind, rest)) => format!("{kind}: {path}: {rest}"),
        None => format!("{path}: {inner}"),
    }
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
    if e.column() == 0 {
        return format!("{kind}: {msg}");
    }
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
            test_name: TEST_NAME.to_string(),
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
                skipped: 2,
                failed_inputs: 0,
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
            warnings[1].starts_with("f.jsonl:4: not a measurement: test_name is missing"),
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

    fn read_bytes(bytes: &[u8]) -> (ReadStats, Vec<String>, Vec<Option<String>>) {
        let mut warnings = Vec::new();
        let mut inputs = Vec::new();
        let stats = read_lines(
            bytes,
            Path::new("f"),
            &mut |w| warnings.push(w.to_string()),
            &mut |m| inputs.push(m.input),
        )
        .unwrap();
        (stats, warnings, inputs)
    }

    fn ooni(url: &str) -> serde_json::Value {
        serde_json::json!({
            "input": url, "test_name": "web_connectivity", "probe_asn": "AS38623",
            "probe_cc": "KH", "test_version": "0.5.28", "software_name": "ooniprobe-android",
            "test_keys": {
                "queries": [{"answers": null, "failure": "dns_nxdomain_error",
                              "hostname": "a.example", "query_type": "A", "t": 0.1}],
                "network_events": null, "tcp_connect": null, "tls_handshakes": null,
                "requests": [{"request": {"url": url, "headers_list": null, "headers": null,
                                          "body": null},
                              "response": {"body": {"format": "base64", "data": "/w=="},
                                           "headers": {"Location": {"format": "base64",
                                                                    "data": "eHl6"}},
                                           "code": 0},
                              "failure": "dns_nxdomain_error"}],
                "tags": null, "control": {"tcp_connect": null, "dns": {"addrs": null}},
                "blocking": "dns", "accessible": false
            }
        })
    }

    #[test]
    fn reads_ooni_nulls_missing_keys_and_base64() {
        let (stats, warnings, inputs) = read(&ooni("http://a.example/").to_string());
        assert_eq!(stats.measurements, 1, "{warnings:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(inputs, vec![Some("http://a.example/".to_string())]);
        let mut got = None;
        read_lines(
            ooni("http://a.example/").to_string().as_bytes(),
            Path::new("f"),
            &mut |_| {},
            &mut |m| got = Some(m),
        )
        .unwrap();
        let m = got.unwrap();
        let tx = &m.test_keys.requests[0];
        assert_eq!(tx.response.body.to_bytes(), vec![0xff]);
        assert_eq!(
            tx.response.headers.get("location").map(String::as_str),
            Some("xyz")
        );
        assert!(m.test_keys.queries[0].answers.is_empty());
        assert_eq!(m.test_keys.queries[0].t0, 0.0);
    }

    #[test]
    fn pretty_printed_and_concatenated_documents_with_their_lines() {
        let a = serde_json::to_string_pretty(&ooni("http://a.example/")).unwrap();
        let b = serde_json::to_string_pretty(&ooni("http://b.example/")).unwrap();
        let bad = "{\n  \"test_name\": \"dnscheck\",\n  \"test_keys\": {}\n}";
        let text = format!("{a}\n{bad}\n\n{b}\n");
        let (stats, warnings, inputs) = read(&text);
        assert_eq!(stats.measurements, 2, "{warnings:?}");
        assert_eq!(inputs.len(), 2);
        let bad_line = a.lines().count() + 1;
        assert_eq!(
            warnings,
            vec![format!(
                "f.jsonl:{bad_line}: test_name is \"dnscheck\": only web_connectivity \
                 measurements are read"
            )]
        );
        assert_eq!(stats.lines, text.lines().count() as u64);
    }

    #[test]
    fn gzip_input_is_recognised() {
        use std::io::Write;
        let text = format!(
            "{}\n{}\n",
            line("http://a.example/"),
            line("http://b.example/")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let (stats, warnings, _) = read_bytes(&gz.finish().unwrap());
        assert_eq!(stats.measurements, 2, "{warnings:?}");
    }

    #[test]
    fn ooni_api_bodies() {
        let raw = ooni("http://r.example/");
        let list = serde_json::json!({
            "metadata": {"next_url": null},
            "results": [raw, {"measurement_uid": "20240101000000.000000_KH_webconnectivity_x",
                              "input": "http://m.example/", "anomaly": true}]
        });
        let (stats, warnings, inputs) = read(&list.to_string());
        assert_eq!(stats.measurements, 1);
        assert_eq!(inputs, vec![Some("http://r.example/".to_string())]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("f.jsonl:1: results[1]: an entry of OONI's measurement list"),
            "{warnings:?}"
        );
        let meta = serde_json::json!({
            "input": "http://r.example/", "anomaly": true,
            "raw_measurement": raw.to_string()
        });
        let (stats, warnings, _) = read(&serde_json::to_string_pretty(&meta).unwrap());
        assert_eq!(stats.measurements, 1, "{warnings:?}");
        let arr = serde_json::json!([raw, raw]);
        let (stats, _, _) = read(&arr.to_string());
        assert_eq!(stats.measurements, 2);
    }

    #[test]
    fn warnings_name_the_field_and_a_mostly_bad_input_says_so() {
        let mut bad = ooni("http://a.example/");
        bad["test_keys"]["requests"][0]["response"]["code"] = serde_json::json!("two hundred");
        let text = format!("{bad}\n{bad}\n{}\n", line("http://ok.example/"));
        let (stats, warnings, _) = read(&text);
        assert_eq!(stats.measurements, 1);
        assert_eq!(stats.failed_inputs, 1);
        assert_eq!(stats.exit_code(), 1);
        assert!(
            warnings[0].starts_with(
                "f.jsonl:1: not a measurement: test_keys.requests[0].response.code: invalid type"
            ),
            "{warnings:?}"
        );
        assert_eq!(
            warnings.last().unwrap(),
            "f.jsonl: 2 of 3 records skipped: more than half of this input is not usable \
             Web Connectivity data"
        );
        // Half is not more than half.
        let text = format!("{bad}\n{}\n", line("http://ok.example/"));
        let (stats, warnings, _) = read(&text);
        assert_eq!((stats.failed_inputs, warnings.len()), (0, 1));
    }

    #[test]
    fn a_line_cut_short_in_the_middle_loses_nothing_after_it() {
        let a = line("http://a.example/");
        let text = format!("{a}\n{}\n{a}\n{a}\n", &a[..a.len() / 2]);
        let (stats, warnings, inputs) = read(&text);
        assert_eq!(inputs.len(), 3, "{warnings:?}");
        assert_eq!(stats.lines, 4);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("f.jsonl:2: truncated JSON"),
            "{warnings:?}"
        );
        // Cut short as the very first line: read as a document, which
        // fails, and the following lines are still read.
        let text = format!("{}\n{a}\n{a}\n", &a[..a.len() / 2]);
        let (stats, warnings, inputs) = read(&text);
        assert_eq!(inputs.len(), 2, "{warnings:?}");
        assert_eq!(stats.lines, 3);
        assert!(warnings[0].starts_with("f.jsonl:1: "), "{warnings:?}");
    }
}
