//! What an unattended run adds around the measurements: a lock so two runs
//! never overlap, a random start delay, the local history database, and
//! uploads to a collector (with the spool for what fails).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{data_dir, RunSettings};
use super::RunError;
use crate::history::HistoryDb;
use crate::model::Measurement;
use crate::schedule::RunLock;
use crate::upload::{drain_spool, spool_write, UploadError, Uploader};

/// The unattended-run machinery of one run.
#[derive(Debug)]
pub struct Unattended {
    _lock: Option<RunLock>,
    history: Option<HistoryDb>,
    uploads: Option<Uploads>,
}

/// The uploader task and the spool it uploads from. Every measurement is
/// written to the spool first (durable, and memory stays bounded however
/// slow the collector is); the task uploads it and deletes the file once the
/// collector confirmed it.
#[derive(Debug)]
struct Uploads {
    spool: PathBuf,
    tx: mpsc::UnboundedSender<PathBuf>,
    task: JoinHandle<UploadStats>,
}

/// What the uploader did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Confirmed by the collector.
    pub uploaded: usize,
    /// Left in the spool.
    pub spooled: usize,
    /// Older spooled measurements uploaded at the end of the run.
    pub drained: usize,
}

impl Unattended {
    /// Takes the run lock (failing at once when another run holds it), then
    /// waits the random delay (returns `Ok(None)` if interrupted while
    /// waiting), then opens the history database and starts the uploader.
    pub async fn start(settings: &RunSettings) -> Result<Option<Unattended>, RunError> {
        let dir = data_dir();
        let lock = match &dir {
            Some(d) => Some(RunLock::acquire(d).map_err(RunError::Busy)?),
            None => None,
        };
        if !settings.random_delay.is_zero() {
            let wait = settings
                .random_delay
                .mul_f64(rand::random::<f64>())
                .min(settings.random_delay);
            tracing::info!("random start delay: waiting {}s", wait.as_secs());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => return Ok(None),
            }
        }
        let history = match (&dir, settings.history) {
            (Some(d), true) => match HistoryDb::open(&d.join("history.sqlite")) {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("gatewatch: warning: no history this run: {e}");
                    None
                }
            },
            _ => None,
        };
        let uploads = settings.upload.as_ref().map(|url| {
            let spool = dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("spool");
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(upload_loop(url.clone(), spool.clone(), rx));
            Uploads { spool, tx, task }
        });
        Ok(Some(Unattended {
            _lock: lock,
            history,
            uploads,
        }))
    }

    /// Records one finished measurement: its verdict in the history, the
    /// (scrubbed) line to the uploader. A measurement cut short
    /// (`x_interrupted`) stays out of the history: `--resume` measures that
    /// URL again, and the history keeps one row per finished measurement.
    pub fn finished(&mut self, m: &Measurement, line: &serde_json::Value) {
        if m.test_keys.x_interrupted.is_some() {
            // Not a verdict.
        } else if let Some(h) = &self.history {
            if let Err(e) = h.record(m) {
                eprintln!("gatewatch: warning: history: {e}");
            }
        }
        if let Some(up) = &self.uploads {
            match spool_write(&up.spool, line) {
                Ok(path) => {
                    let _ = up.tx.send(path);
                }
                Err(e) => eprintln!("gatewatch: warning: upload: {e}"),
            }
        }
    }

    /// Waits for the uploads to finish; returns what they did.
    pub async fn finish(self) -> Option<UploadStats> {
        let up = self.uploads?;
        drop(up.tx);
        up.task.await.ok()
    }
}

/// How long the uploader leaves the collector alone after a failure; it
/// doubles after each further failure, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between attempts on a collector that is down.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Uploads each measurement as it is spooled. Every measurement gets its
/// own tries with back-off; after one fails, the next ones wait in the
/// spool while the collector is left alone for a pause (1 s, doubling to at
/// most 60 s), then uploading resumes. At the end of the run this run's
/// waiting measurements are uploaded, then older spooled ones.
async fn upload_loop(
    url: String,
    spool: PathBuf,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
) -> UploadStats {
    let mut up = Uploader::new(&url).with_retries(3, Duration::from_millis(500));
    let mut stats = UploadStats::default();
    // This run's measurements that are still in the spool, in order.
    let mut waiting: VecDeque<PathBuf> = VecDeque::new();
    let mut pause = FIRST_PAUSE;
    let mut resume_at: Option<tokio::time::Instant> = None;
    let mut warned = false;
    while let Some(path) = rx.recv().await {
        waiting.push_back(path);
        if resume_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            continue;
        }
        // The collector answered last time, or its pause is over: catch up.
        match upload_waiting(&mut up, &mut waiting, &mut stats).await {
            Ok(()) => {
                resume_at = None;
                pause = FIRST_PAUSE;
            }
            Err(e) => {
                if !warned {
                    eprintln!(
                        "gatewatch: upload failed, kept in {} and retried: {e}",
                        spool.display()
                    );
                    warned = true;
                }
                resume_at = Some(tokio::time::Instant::now() + pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
    // End of the run: one more go at what is waiting, then older files.
    let caught_up = upload_waiting(&mut up, &mut waiting, &mut stats).await;
    stats.spooled += waiting.len();
    if caught_up.is_ok() {
        if let Ok(out) = drain_spool(&mut up, &spool).await {
            stats.drained = out.uploaded;
        }
    }
    stats
}

/// Uploads the waiting measurements in order, deleting each file once the
/// collector confirmed it; stops at the first failure that may pass (the
/// rest stay waiting). A file that cannot be read back, or that the
/// collector refuses for good, stays in the spool (for `gatewatch upload`)
/// and does not hold up the others.
async fn upload_waiting(
    up: &mut Uploader,
    waiting: &mut VecDeque<PathBuf>,
    stats: &mut UploadStats,
) -> Result<(), UploadError> {
    while let Some(path) = waiting.front() {
        let m = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        match m {
            None => stats.spooled += 1,
            Some(m) => match up.submit(&m).await {
                Ok(_) => {
                    let _ = std::fs::remove_file(path);
                    stats.uploaded += 1;
                }
                Err(e) if e.is_permanent() => {
                    eprintln!("gatewatch: upload refused, kept in {}: {e}", path.display());
                    stats.spooled += 1;
                }
                Err(e) => return Err(e),
            },
        }
        waiting.pop_front();
    }
    Ok(())
}
