//! `gatewatch ooni fetch`: Web Connectivity measurements from OONI's public
//! API, written as JSONL that every command here reads.
//!
//! OONI's API (ooni/backend, `oonimeasurements`) is used in two steps:
//!
//! 1. `GET /api/v1/measurements?test_name=web_connectivity&probe_cc=..`
//!    (`probe_asn`, `since`, `until`, `domain`, `limit`) lists metadata:
//!    `{"metadata":{"next_url":..},"results":[{"measurement_uid",
//!    "report_id","input",..}]}`; `next_url` (null on the last page) holds
//!    the continuation token. The API refuses a `since`–`until` span over
//!    180 days.
//! 2. `GET /api/v1/raw_measurement?measurement_uid=..` returns the
//!    measurement itself (`{}` when OONI no longer has it).
//!
//! Requests are paced (`--delay`), retried a few times on 429/5xx, and the
//! output is resumable: measurements already in the file (same
//! `report_id` and `input`) are not downloaded again, and a line cut short
//! by an interruption is dropped before appending. Each measurement is
//! written and flushed as it arrives.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;

/// OONI's public API.
pub const DEFAULT_API: &str = "https://api.ooni.io";

/// Errors of `gatewatch ooni fetch`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A flag is malformed.
    #[error("{0}")]
    BadArgument(String),
    /// OONI's API could not be reached at all.
    #[error(
        "cannot reach OONI's API at {url}: {reason} (are you offline? \
         measurements already saved are kept; run the same command again to resume)"
    )]
    Unreachable {
        /// The request.
        url: String,
        /// Why.
        reason: String,
    },
    /// OONI's API answered with an error.
    #[error("OONI's API refused {url}: HTTP {status}: {body}")]
    Api {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// OONI's API answered something that is not its list format.
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer {
        /// The request.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The output file could not be read or written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Arguments of `gatewatch ooni fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Country code of the probes (e.g. KH).
    #[arg(long)]
    pub cc: String,
    /// Only this network (e.g. AS38623).
    #[arg(long)]
    pub asn: Option<String>,
    /// Measurements from this day (YYYY-MM-DD; OONI's default: 30 days
    /// before --until).
    #[arg(long)]
    pub since: Option<String>,
    /// Measurements up to this day (YYYY-MM-DD; OONI's default: today).
    #[arg(long)]
    pub until: Option<String>,
    /// Only URLs of this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// The JSONL file to write (appended to, resumable; default
    /// `ooni-<CC>[-<ASN>].jsonl`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stop after this many new measurements.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Pause between two requests to OONI's API.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// Entries asked for per page of the list.
    #[arg(long, default_value_t = 100)]
    pub page_size: u32,
    /// The API's base URL (a mirror, or a local server in tests).
    #[arg(long, default_value = DEFAULT_API, value_name = "URL")]
    pub api: String,
}

/// What a fetch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// List entries seen.
    pub listed: u64,
    /// Measurements downloaded and written.
    pub written: u64,
    /// Entries already in the output file.
    pub already_had: u64,
    /// Entries OONI could not give (empty body, not a measurement).
    pub missing: u64,
}

/// Runs the command; returns the process exit code.
pub async fn execute(args: FetchArgs) -> Result<u8, FetchError> {
    let output = args.output.clone().unwrap_or_else(|| default_output(&args));
    let progress = if std::io::IsTerminal::is_terminal(&io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let stats = fetch(&args, &output, progress).await?;
    eprintln!(
        "{}: {} new measurement(s) written, {} already there, {} not available from OONI \
         ({} listed)",
        output.display(),
        stats.written,
        stats.already_had,
        stats.missing,
        stats.listed
    );
    Ok(0)
}

fn default_output(args: &FetchArgs) -> PathBuf {
    let mut name = format!("ooni-{}", args.cc.to_ascii_uppercase());
    if let Some(a) = &args.asn {
        name.push('-');
        name.push_str(&a.to_ascii_uppercase());
    }
    PathBuf::from(format!("{name}.jsonl"))
}

/// One page of OONI's measurement list.
#[derive(Debug, Deserialize)]
struct ListPage {
    #[serde(default)]
    metadata: ListMeta,
    results: Vec<ListEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(default)]
    next_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListEntry {
    #[serde(default)]
    measurement_uid: Option<String>,
    #[serde(default)]
    report_id: Option<String>,
    #[serde(default)]
    input: Option<String>,
}

/// Downloads into `output` (appending); the progress bar draws to
/// `progress`.
pub async fn fetch(
    args: &FetchArgs,
    output: &Path,
    progress: ProgressDrawTarget,
) -> Result<FetchStats, FetchError> {
    let first = list_url(args)?;
    let out_err = |source| FetchError::Output {
        path: output.to_path_buf(),
        source,
    };
    let mut have = existing_keys(output).map_err(out_err)?;
    let mut file = open_for_append(output).map_err(out_err)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Unreachable {
            url: first.to_string(),
            reason: e.to_string(),
        })?;
    let bar = ProgressBar::with_draw_target(None, progress);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} measurements {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut api = Api {
        client,
        delay: args.delay,
        first_request: true,
    };
    let mut stats = FetchStats::default();
    let mut next = Some(first.to_string());
    'pages: while let Some(url) = next.take() {
        let body = api.get(&url).await?;
        let page: ListPage = serde_json::from_slice(&body).map_err(|e| FetchError::BadAnswer {
            url: url.clone(),
            reason: format!("not OONI's measurement list: {e}"),
        })?;
        // An empty page ends the list whatever `next_url` says.
        let last_page = page.results.is_empty();
        for entry in page.results {
            stats.listed += 1;
            let key = (
                entry.report_id.clone().unwrap_or_default(),
                entry.input.clone().unwrap_or_default(),
            );
            if have.contains(&key) {
                stats.already_had += 1;
                continue;
            }
            let Some(uid) = entry.measurement_uid.filter(|u| !u.is_empty()) else {
                stats.missing += 1;
                continue;
            };
            let mut raw = base_url(args)?;
            raw.set_path(&format!(
                "{}/api/v1/raw_measurement",
                raw.path().trim_end_matches('/')
            ));
            raw.query_pairs_mut().append_pair("measurement_uid", &uid);
            let body = api.get(raw.as_str()).await?;
            match measurement_line(&body) {
                Some((line, got)) => {
                    file.write_all(&line)
                        .and_then(|()| file.flush())
                        .map_err(out_err)?;
                    have.insert(got);
                    have.insert(key);
                    stats.written += 1;
                    bar.set_position(stats.written);
                }
                None => {
                    stats.missing += 1;
                    bar.set_message(format!("({} not available)", stats.missing));
                }
            }
            if args.max.is_some_and(|m| stats.written >= m) {
                break 'pages;
            }
        }
        next = page
            .metadata
            .next_url
            .filter(|u| !last_page && *u != url)
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    }
    bar.finish_and_clear();
    Ok(stats)
}

/// A raw measurement body as one JSONL line and its (report_id, input), or
/// `None` when it is not a measurement (OONI answers `{}` for one it lost).
fn measurement_line(body: &[u8]) -> Option<(Vec<u8>, (String, String))> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    obj.get("test_keys")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let key = (text("report_id"), text("input"));
    let mut line = serde_json::to_vec(&v).ok()?;
    line.push(b'\n');
    Some((line, key))
}

fn base_url(args: &FetchArgs) -> Result<url::Url, FetchError> {
    let u = url::Url::parse(&args.api)
        .map_err(|e| FetchError::BadArgument(format!("--api {:?}: {e}", args.api)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(FetchError::BadArgument(format!(
            "--api {:?}: not an http(s) URL",
            args.api
        )));
    }
    Ok(u)
}

/// The first page's URL, after checking the flags.
fn list_url(args: &FetchArgs) -> Result<url::Url, FetchError> {
    let cc = args.cc.to_ascii_uppercase();
    if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(FetchError::BadArgument(format!(
            "--cc {:?}: give a two-letter country code such as KH",
            args.cc
        )));
    }
    let asn = match &args.asn {
        Some(a) => {
            let digits = a.trim_start_matches(['A', 'S', 'a', 's']);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(FetchError::BadArgument(format!(
                    "--asn {a:?}: give a network such as AS38623"
                )));
            }
            Some(format!("AS{digits}"))
        }
        None => None,
    };
    for (flag, d) in [("--since", &args.since), ("--until", &args.until)] {
        if let Some(d) = d {
            let ok =
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .is_ok();
            if !ok {
                return Err(FetchError::BadArgument(format!(
                    "{flag} {d:?}: give a day as YYYY-MM-DD"
                )));
            }
        }
    }
    if args.page_size == 0 {
        return Err(FetchError::BadArgument(
            "--page-size must be at least 1".into(),
        ));
    }
    let mut u = base_url(args)?;
    u.set_path(&format!(
        "{}/api/v1/measurements",
        u.path().trim_end_matches('/')
    ));
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("test_name", "web_connectivity");
        q.append_pair("probe_cc", &cc);
        if let Some(a) = &asn {
            q.append_pair("probe_asn", a);
        }
        if let Some(s) = &args.since {
            q.append_pair("since", s);
        }
        if let Some(s) = &args.until {
            q.append_pair("until", s);
        }
        if let Some(d) = &args.domain {
            q.append_pair("domain", d);
        }
        q.append_pair("order", "desc");
        q.append_pair("limit", &args.page_size.to_string());
    }
    Ok(u)
}

/// Paced GETs with a few retries.
struct Api {
    client: reqwest::Client,
    delay: Duration,
    first_request: bool,
}

impl Api {
    async fn get(&mut self, url: &str) -> Result<Vec<u8>, FetchError> {
        const TRIES: u32 = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.first_request {
                tokio::time::sleep(self.delay).await;
            }
            self.first_request = false;
            let resp = match self.client.get(url).send().await {
                Ok(r) => r,
                Err(e) if attempt < TRIES && !e.is_connect() => continue,
                Err(e) => {
                    return Err(FetchError::Unreachable {
                        url: url.to_string(),
                        reason: describe(&e),
                    })
                }
            };
            let status = resp.status();
            let retry = status.as_u16() == 429 || status.is_server_error();
            if retry && attempt < TRIES {
                // Back off more each time, on top of the pacing.
                tokio::time::sleep(self.delay * attempt).await;
                continue;
            }
            let body = resp.bytes().await.map_err(|e| FetchError::Unreachable {
                url: url.to_string(),
                reason: describe(&e),
            })?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(FetchError::Api {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: text.chars().take(200).collect(),
                });
            }
            return Ok(body.to_vec());
        }
    }
}

/// A reqwest error's causes (its own top line only repeats the URL).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        parts.push(c.to_string());
        src = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// (report_id, input) of every measurement already in `path`.
fn existing_keys(path: &Path) -> io::Result<HashSet<(String, String)>> {
    let mut have = HashSet::new();
    if !path.exists() {
        return Ok(have);
    }
    crate::results::read_file(path, &mut |_| {}, &mut |m| {
        have.insert((m.report_id.unwrap_or_default(), m.input.unwrap_or_default()));
    })
    .map_err(io::Error::other)?;
    Ok(have)
}

/// Opens `path` for appending, first cutting off a last line left
/// unfinished by an interrupted run.
fn open_for_append(path: &Path) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(f);
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut keep = 0;
    let mut block = vec![0u8; 1 << 16];
    'search: while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break 'search;
        }
        end = start;
    }
    if keep != len {
        f.set_len(keep)?;
    }
    Ok(f)
}
