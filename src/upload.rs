//! Uploading measurements to an OONI-compatible collector, with a spool.
//!
//! [`Uploader::submit`] opens a report (again whenever the report's template
//! — ASN, country, software, test, start time — changes), submits the
//! measurement, and retries with back-off. A measurement that still fails
//! goes to the spool directory, one file per measurement written atomically;
//! `gatewatch upload` retries the spool and deletes a file only after the
//! collector answered with a `measurement_uid`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The collector could not be reached.
    #[error("collector {url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The collector refused.
    #[error("collector {url} answered {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The first part of its answer.
        body: String,
    },
    /// The collector's answer was not what the protocol says.
    #[error("collector {url} sent an invalid answer: {reason}")]
    BadAnswer {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The spool could not be read or written.
    #[error("spool {path}: {source}")]
    Spool {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No collector given and none configured.
    #[error("no collector: pass --collector URL")]
    NoCollector,
}

impl UploadError {
    /// Whether trying again cannot help: the collector refused this
    /// measurement itself (a 4xx other than 404 and 429).
    pub fn is_permanent(&self) -> bool {
        matches!(self, UploadError::Refused { status, .. }
            if (400..500).contains(status) && *status != 404 && *status != 429)
    }
}

/// Submits measurements to one collector.
#[derive(Debug)]
pub struct Uploader {
    base: String,
    http: reqwest::Client,
    report: Option<(String, String)>,
    attempts: u32,
    backoff: Duration,
}

impl Uploader {
    /// An uploader for the collector at `base` (e.g. `https://collector.example`).
    pub fn new(base: &str) -> Uploader {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Uploader {
            base: base.trim_end_matches('/').to_string(),
            http,
            report: None,
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }

    /// Sets how many tries each submission gets and the first back-off.
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> Uploader {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Submits one measurement (a JSON object); returns its
    /// `measurement_uid`. Retries transient failures.
    pub async fn submit(&mut self, m: &Value) -> Result<String, UploadError> {
        let mut delay = self.backoff;
        let mut last = None;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match self.submit_once(m).await {
                Ok(uid) => return Ok(uid),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    // A lost report (collector restarted with a new
                    // database, or 404): open a new one next time.
                    self.report = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(UploadError::NoCollector))
    }

    /// Submits, and spools the measurement in `spool` if that fails.
    /// Returns the uid, or `None` when spooled.
    pub async fn submit_or_spool(
        &mut self,
        m: &Value,
        spool: &Path,
    ) -> Result<Option<String>, UploadError> {
        match self.submit(m).await {
            Ok(uid) => Ok(Some(uid)),
            Err(e) => {
                tracing::warn!("upload failed, spooled: {e}");
                spool_write(spool, m)?;
                Ok(None)
            }
        }
    }

    async fn submit_once(&mut self, m: &Value) -> Result<String, UploadError> {
        let template = template_of(m);
        let key = template.to_string();
        let report_id = match &self.report {
            Some((k, id)) if *k == key => id.clone(),
            _ => {
                let answer = self
                    .post(&format!("{}/report", self.base), &template)
                    .await?;
                let id = answer["report_id"]
                    .as_str()
                    .ok_or_else(|| self.bad("no report_id in the answer"))?
                    .to_string();
                self.report = Some((key, id.clone()));
                id
            }
        };
        let url = format!("{}/report/{report_id}", self.base);
        let answer = self
            .post(&url, &json!({ "format": "json", "content": m }))
            .await?;
        answer["measurement_uid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad("no measurement_uid in the answer"))
    }

    fn bad(&self, reason: &str) -> UploadError {
        UploadError::BadAnswer {
            url: self.base.clone(),
            reason: reason.to_string(),
        }
    }

    async fn post(&self, url: &str, body: &Value) -> Result<Value, UploadError> {
        let resp =
            self.http
                .post(url)
                .json(body)
                .send()
                .await
                .map_err(|e| UploadError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| UploadError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if status != 200 {
            return Err(UploadError::Refused {
                url: url.to_string(),
                status,
                body: text.chars().take(200).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|e| UploadError::BadAnswer {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }
}

/// The report-opening request for a measurement (OONI's template fields).
fn template_of(m: &Value) -> Value {
    let s = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "data_format_version": s("data_format_version"),
        "format": "json",
        "probe_asn": s("probe_asn"),
        "probe_cc": s("probe_cc"),
        "software_name": s("software_name"),
        "software_version": s("software_version"),
        "test_name": s("test_name"),
        "test_start_time": s("test_start_time"),
        "test_version": s("test_version"),
    })
}

/// Writes a measurement into the spool (atomically: a temporary file, then
/// a rename). The name is its content hash, so spooling twice is harmless.
pub fn spool_write(spool: &Path, m: &Value) -> Result<PathBuf, UploadError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UploadError::Spool { path, source }
    };
    std::fs::create_dir_all(spool).map_err(err(spool))?;
    let body = m.to_string();
    let name = hex::encode(Sha256::digest(body.as_bytes()));
    let path = spool.join(format!("{}.json", &name[..32]));
    let tmp = spool.join(format!(".{}.tmp", &name[..32]));
    std::fs::write(&tmp, body.as_bytes()).map_err(err(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    Ok(path)
}

/// What a spool drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Uploaded and deleted.
    pub uploaded: usize,
    /// Still in the spool.
    pub remaining: usize,
    /// Files that are not valid JSON (left in place, renamed `.bad`).
    pub invalid: usize,
}

/// Uploads every spooled measurement; deletes each file only after the
/// collector confirmed it.
pub async fn drain_spool(up: &mut Uploader, spool: &Path) -> Result<DrainOutcome, UploadError> {
    let mut out = DrainOutcome::default();
    let rd = match std::fs::read_dir(spool) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(UploadError::Spool {
                path: spool.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| UploadError::Spool {
            path: path.clone(),
            source,
        })?;
        let m: Value = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(_) => {
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                out.invalid += 1;
                continue;
            }
        };
        match up.submit(&m).await {
            Ok(_) => {
                std::fs::remove_file(&path).map_err(|source| UploadError::Spool {
                    path: path.clone(),
                    source,
                })?;
                out.uploaded += 1;
            }
            Err(e) => {
                tracing::warn!("{}: {e}", path.display());
                out.remaining += 1;
            }
        }
    }
    Ok(out)
}

/// The default spool directory.
pub fn default_spool_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("gatewatch")
        .join("spool")
}

const UPLOAD_EXAMPLES: &str = "Examples:
  gatewatch upload --collector https://collector.example.org";

/// `gatewatch upload` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = UPLOAD_EXAMPLES)]
pub struct UploadArgs {
    /// The collector's base URL.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// The spool directory [default: spool/ in the data directory].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

/// Runs `gatewatch upload`: drains the spool. Exit code 0 when the spool is
/// empty afterwards, 1 when measurements remain.
pub async fn execute(args: UploadArgs) -> Result<u8, UploadError> {
    let base = args.collector.ok_or(UploadError::NoCollector)?;
    let spool = args.spool_dir.unwrap_or_else(default_spool_dir);
    let mut up = Uploader::new(&base);
    let out = drain_spool(&mut up, &spool).await?;
    println!(
        "uploaded {}, still spooled {}, unreadable {}",
        out.uploaded, out.remaining, out.invalid
    );
    Ok(if out.remaining == 0 { 0 } else { 1 })
}
