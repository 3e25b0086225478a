//! Where a collector keeps measurements: SQLite (one file, the default) or
//! PostgreSQL (a team's server). Both have the same two tables and the same
//! idempotent insert: the measurement id is derived from the report id and
//! the content, so a retried upload stores nothing twice. Bodies are stored
//! zlib-compressed (rows written before that hold plain JSON text and are
//! still read); writes are grouped into transactions by one writer
//! ([`super::sqlite`], [`super::pg`]).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::pg::PgStore;
use super::sqlite::SqliteStore;

/// When an SQLite commit counts as stored (the answer to an upload waits
/// for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// On disk (`synchronous = FULL`: one fsync per transaction); survives
    /// a power cut. The default.
    #[default]
    Full,
    /// Handed to the operating system (`synchronous = NORMAL` in WAL mode:
    /// fsync at checkpoints); survives a crash of the collector, not of the
    /// machine. For disks whose fsync is slow.
    Os,
}

/// A storage error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// Anything else (a poisoned lock, a failed task).
    #[error("{0}")]
    Backend(String),
}

/// What `POST /report` declares about the measurements that follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportMeta {
    /// `AS<n>`.
    pub probe_asn: String,
    /// Two letters.
    pub probe_cc: String,
    /// Software that measured.
    pub software_name: String,
    /// Its version.
    pub software_version: String,
    /// Test name.
    pub test_name: String,
    /// Test version.
    pub test_version: String,
    /// When the run started.
    pub test_start_time: String,
}

/// One stored measurement, without its body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeasurementSummary {
    /// The id the collector gave it.
    pub measurement_uid: String,
    /// Its report.
    pub report_id: String,
    /// When it was measured.
    pub measurement_start_time: String,
    /// `AS<n>`.
    pub probe_asn: String,
    /// Two letters.
    pub probe_cc: String,
    /// The URL.
    pub input: Option<String>,
    /// `x_verdict.status`, when present.
    pub status: Option<String>,
}

/// Which measurements to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasurementFilter {
    /// `measurement_start_time >= since` (a date or date-time prefix).
    pub since: Option<String>,
    /// `measurement_start_time < until`.
    pub until: Option<String>,
    /// Exact ASN.
    pub probe_asn: Option<String>,
    /// Exact URL.
    pub input: Option<String>,
    /// At most this many (newest last).
    pub limit: usize,
}

/// A collector's database. Every write goes through one writer (a thread
/// for SQLite, a task for PostgreSQL) that groups the writes waiting for it
/// into one transaction; each caller is answered after its transaction is
/// committed, so "stored" still means durable.
pub struct Store {
    /// Dropped first: the writer then finishes and the backend can close.
    writes: tokio::sync::mpsc::UnboundedSender<WriteJob>,
    backend: Backend,
    /// Reports known to exist (a submit checks its report without a query).
    reports: Mutex<HashSet<String>>,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store::Sqlite",
            Backend::Postgres(_) => "Store::Postgres",
        })
    }
}

/// Reports remembered in memory before the set is cleared (they are then
/// looked up again, once each).
const KNOWN_REPORTS_CAP: usize = 100_000;

impl Store {
    /// Opens (and creates) a store: `postgres://...` or an SQLite path.
    /// Blocking: call it off the async workers (PostgreSQL needs a tokio
    /// runtime: call it from `spawn_blocking`).
    pub fn open(spec: &str) -> Result<Store, StoreError> {
        Store::open_with(spec, SqliteSync::Full)
    }

    /// [`Store::open`] with the SQLite durability of a commit (PostgreSQL
    /// ignores it: its server decides).
    pub fn open_with(spec: &str, sync: SqliteSync) -> Result<Store, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let backend = if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            Backend::Postgres(PgStore::open(spec, rx)?)
        } else {
            Backend::Sqlite(SqliteStore::open(spec, sync, rx)?)
        };
        Ok(Store {
            backend,
            writes: tx,
            reports: Mutex::new(HashSet::new()),
        })
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Records a new report and returns its id.
    pub fn open_report(&self, meta: &ReportMeta) -> Result<String, StoreError> {
        let now = now_compact();
        let mut h = Sha256::new();
        h.update(now.as_bytes());
        h.update(rand::random::<[u8; 16]>());
        let id = format!(
            "{now}_{}_{}_{}",
            meta.test_name,
            meta.probe_cc,
            &hex::encode(h.finalize())[..16]
        );
        let report = NewReport {
            values: [
                id.clone(),
                now,
                meta.probe_asn.clone(),
                meta.probe_cc.clone(),
                meta.software_name.clone(),
                meta.software_version.clone(),
                meta.test_name.clone(),
                meta.test_version.clone(),
                meta.test_start_time.clone(),
            ],
        };
        let rx = self.send(WriteKind::Report(report))?;
        wait_blocking(rx)?;
        self.remember(&id);
        Ok(id)
    }

    /// Whether a report exists.
    pub fn report_exists(&self, report_id: &str) -> Result<bool, StoreError> {
        if lock(&self.reports)?.contains(report_id) {
            return Ok(true);
        }
        let n: Vec<i64> = self.rows(
            "SELECT count(*) FROM reports WHERE report_id = $1",
            &[report_id.to_string()],
            |r| r.int(0),
        )?;
        let found = n.first().copied().unwrap_or(0) > 0;
        if found {
            self.remember(report_id);
        }
        Ok(found)
    }

    /// Whether this store has seen `report_id` exist (no query; `false`
    /// means "ask [`Store::report_exists`]").
    pub fn report_known(&self, report_id: &str) -> bool {
        self.reports
            .lock()
            .map(|k| k.contains(report_id))
            .unwrap_or(false)
    }

    fn remember(&self, report_id: &str) {
        if let Ok(mut known) = self.reports.lock() {
            if known.len() >= KNOWN_REPORTS_CAP {
                known.clear();
            }
            known.insert(report_id.to_string());
        }
    }

    fn send(&self, kind: WriteKind) -> Result<WriteReply, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.writes
            .send(WriteJob { kind, reply })
            .map_err(|_| StoreError::Backend("the database writer has stopped".into()))?;
        Ok(rx)
    }

    /// Stores one (already validated) measurement and returns its id. The
    /// insert is durable before this returns; storing the same content in
    /// the same report again returns the same id and stores nothing new.
    /// Blocking: call it off the async workers (or use [`Store::insert_async`]).
    pub fn insert(&self, report_id: &str, m: &serde_json::Value) -> Result<String, StoreError> {
        let row = NewRow::new(report_id, m);
        let uid = row.uid.clone();
        wait_blocking(self.send(WriteKind::Rows(vec![row]))?)?;
        Ok(uid)
    }

    /// Stores many measurements of one report in one write (bulk loads and
    /// benchmarks); returns how many were handed to the database.
    /// Blocking, like [`Store::insert`].
    pub fn insert_many(
        &self,
        report_id: &str,
        ms: &[serde_json::Value],
    ) -> Result<usize, StoreError> {
        let rows: Vec<NewRow> = ms.iter().map(|m| NewRow::new(report_id, m)).collect();
        let n = rows.len();
        wait_blocking(self.send(WriteKind::Rows(rows))?)?;
        Ok(n)
    }

    /// [`Store::insert`] for async callers: the measurement joins the next
    /// transaction of the writer, and this returns once it is committed.
    pub async fn insert_async(
        &self,
        report_id: &str,
        m: &serde_json::Value,
    ) -> Result<String, StoreError> {
        let row = NewRow::new(report_id, m);
        let uid = row.uid.clone();
        let rx = self.send(WriteKind::Rows(vec![row]))?;
        match rx.await {
            Ok(r) => r.map(|()| uid).map_err(StoreError::Backend),
            Err(_) => Err(StoreError::Backend(
                "the database writer has stopped".into(),
            )),
        }
    }
    /// Lists measurements matching `f`, oldest first.
    pub fn list(&self, f: &MeasurementFilter) -> Result<Vec<MeasurementSummary>, StoreError> {
        self.query(f)
    }

    /// Hands the JSON text of the measurements matching `f` (oldest first,
    /// after `after` when given, at most `f.limit` or [`DEFAULT_LIMIT`]) to
    /// `sink`, reading [`BODY_PAGE_ROWS`] rows per query, so memory stays
    /// bounded however many there are and the database is free between
    /// pages. Stops early when `sink` returns `false`. Returns how many were
    /// handed over.
    pub fn for_each_body(
        &self,
        f: &MeasurementFilter,
        after: Option<&Cursor>,
        mut sink: impl FnMut(String) -> bool,
    ) -> Result<usize, StoreError> {
        let limit = effective_limit(f.limit);
        let mut cursor = after.cloned();
        let mut sent = 0;
        while sent < limit {
            let page = BODY_PAGE_ROWS.min(limit - sent);
            let (wh, args) = where_clause(f, cursor.as_ref());
            let sql = format!(
                "SELECT measurement_start_time, measurement_uid, body FROM measurements{wh} \
                 ORDER BY measurement_start_time, measurement_uid LIMIT {page}"
            );
            let rows: Vec<(String, String, String)> =
                self.rows(&sql, &args, |r| Ok((r.text(0)?, r.text(1)?, r.body(2)?)))?;
            let n = rows.len();
            for (start, uid, body) in rows {
                cursor = Some(Cursor { start, uid });
                sent += 1;
                if !sink(body) {
                    return Ok(sent);
                }
            }
            if n < page {
                break;
            }
        }
        Ok(sent)
    }

    /// The cursor of the last measurement of the page `f` selects (after
    /// `after`), when more measurements follow it; `None` when the page is
    /// the last one.
    pub fn next_page(
        &self,
        f: &MeasurementFilter,
        after: Option<&Cursor>,
    ) -> Result<Option<Cursor>, StoreError> {
        let limit = effective_limit(f.limit);
        let (wh, args) = where_clause(f, after);
        let sql = format!(
            "SELECT measurement_start_time, measurement_uid FROM measurements{wh} \
             ORDER BY measurement_start_time, measurement_uid LIMIT 2 OFFSET {}",
            limit - 1
        );
        let rows: Vec<Cursor> = self.rows(&sql, &args, |r| {
            Ok(Cursor {
                start: r.text(0)?,
                uid: r.text(1)?,
            })
        })?;
        Ok(if rows.len() == 2 {
            rows.into_iter().next()
        } else {
            None
        })
    }

    /// The position of a stored measurement, to continue a listing after it.
    pub fn cursor_of(&self, uid: &str) -> Result<Option<Cursor>, StoreError> {
        let rows: Vec<Cursor> = self.rows(
            "SELECT measurement_start_time, measurement_uid FROM measurements \
             WHERE measurement_uid = $1",
            &[uid.to_string()],
            |r| {
                Ok(Cursor {
                    start: r.text(0)?,
                    uid: r.text(1)?,
                })
            },
        )?;
        Ok(rows.into_iter().next())
    }

    /// Runs a query with text parameters (`$1`...) on either database.
    fn rows<T>(
        &self,
        sql: &str,
        args: &[String],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.rows(sql, args, map),
            Backend::Postgres(db) => db.rows(sql, args, map),
        }
    }

    /// One measurement's JSON text.
    pub fn get(&self, uid: &str) -> Result<Option<String>, StoreError> {
        let rows = self.rows(
            "SELECT body FROM measurements WHERE measurement_uid = $1",
            &[uid.to_string()],
            |r| r.body(0),
        )?;
        Ok(rows.into_iter().next())
    }

    /// How many measurements are stored.
    pub fn count(&self) -> Result<i64, StoreError> {
        let rows = self.rows("SELECT count(*) FROM measurements", &[], |r| r.int(0))?;
        Ok(rows.first().copied().unwrap_or(0))
    }

    fn query(&self, f: &MeasurementFilter) -> Result<Vec<MeasurementSummary>, StoreError> {
        let (wh, args) = where_clause(f, None);
        let limit = effective_limit(f.limit);
        let sql = format!(
            "SELECT measurement_uid, report_id, measurement_start_time, probe_asn, probe_cc, \
             input, status FROM measurements{wh} \
             ORDER BY measurement_start_time, measurement_uid LIMIT {limit}"
        );
        self.rows(&sql, &args, |r| {
            Ok(MeasurementSummary {
                measurement_uid: r.text(0)?,
                report_id: r.text(1)?,
                measurement_start_time: r.text(2)?,
                probe_asn: r.text(3)?,
                probe_cc: r.text(4)?,
                input: r.opt_text(5)?,
                status: r.opt_text(6)?,
            })
        })
    }
}

/// Rows listed when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 10_000;
/// The largest `limit` a listing accepts.
pub const MAX_LIMIT: usize = 100_000;
/// Measurement bodies read per database query while streaming.
pub const BODY_PAGE_ROWS: usize = 8;

fn effective_limit(limit: usize) -> usize {
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        limit.min(MAX_LIMIT)
    }
}

/// Where a listing continues: after this measurement, in the listing order
/// (`measurement_start_time`, then `measurement_uid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Its `measurement_start_time`.
    pub start: String,
    /// Its `measurement_uid`.
    pub uid: String,
}

/// The ` WHERE ...` of a listing (with `$n` parameters) and its arguments.
fn where_clause(f: &MeasurementFilter, after: Option<&Cursor>) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let mut add = |cond: &str, v: &Option<String>| {
        if let Some(v) = v {
            args.push(v.clone());
            conds.push(cond.replace('?', &format!("${}", args.len())));
        }
    };
    add("measurement_start_time >= ?", &f.since);
    add("measurement_start_time < ?", &f.until);
    add("probe_asn = ?", &f.probe_asn);
    add("input = ?", &f.input);
    if let Some(c) = after {
        args.push(c.start.clone());
        args.push(c.uid.clone());
        conds.push(format!(
            "(measurement_start_time, measurement_uid) > (${}, ${})",
            args.len() - 1,
            args.len()
        ));
    }
    let wh = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (wh, args)
}

/// A result row of either database.
pub(super) trait Row {
    /// A text column.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A text column that may be NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A measurement body column, as JSON text.
    fn body(&self, i: usize) -> Result<String, StoreError>;
}

pub(super) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Backend("database lock poisoned".into()))
}

/// A measurement ready to be written.
pub(super) struct NewRow {
    pub uid: String,
    pub report_id: String,
    pub received: String,
    pub start: String,
    pub asn: String,
    pub cc: String,
    pub input: Option<String>,
    pub status: Option<String>,
    /// zlib-compressed JSON.
    pub body: Vec<u8>,
}

impl NewRow {
    fn new(report_id: &str, m: &serde_json::Value) -> NewRow {
        let body = m.to_string();
        let mut h = Sha256::new();
        h.update(report_id.as_bytes());
        h.update([0]);
        h.update(body.as_bytes());
        let digest = hex::encode(h.finalize());
        let start = m["measurement_start_time"].as_str().unwrap_or_default();
        let compact: String = start.chars().filter(char::is_ascii_digit).collect();
        let cc = m["probe_cc"].as_str().unwrap_or("ZZ");
        NewRow {
            uid: format!("{compact}_{cc}_{}", &digest[..24]),
            report_id: report_id.to_string(),
            received: now_compact(),
            start: start.to_string(),
            asn: m["probe_asn"].as_str().unwrap_or("AS0").to_string(),
            cc: cc.to_string(),
            input: m["input"].as_str().map(str::to_string),
            status: m["test_keys"]["x_verdict"]["status"]
                .as_str()
                .map(str::to_string),
            body: compress(body.as_bytes()),
        }
    }
}

/// A report ready to be written: the nine columns of `reports`, in order.
pub(super) struct NewReport {
    pub values: [String; 9],
}

/// What the writer is asked to store.
pub(super) enum WriteKind {
    Rows(Vec<NewRow>),
    Report(NewReport),
}

impl WriteKind {
    /// Rows this write adds (to size a transaction).
    pub fn len(&self) -> usize {
        match self {
            WriteKind::Rows(r) => r.len(),
            WriteKind::Report(_) => 1,
        }
    }
}

/// One write and who waits for its commit.
pub(super) struct WriteJob {
    pub kind: WriteKind,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

type WriteReply = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// Most rows the writer puts in one transaction.
pub(super) const MAX_BATCH_ROWS: usize = 512;

fn wait_blocking(rx: WriteReply) -> Result<(), StoreError> {
    match rx.blocking_recv() {
        Ok(r) => r.map_err(StoreError::Backend),
        Err(_) => Err(StoreError::Backend(
            "the database writer has stopped".into(),
        )),
    }
}

/// Takes the jobs waiting after `first`, up to [`MAX_BATCH_ROWS`] rows.
pub(super) fn gather(
    first: WriteJob,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<WriteJob>,
) -> Vec<WriteJob> {
    let mut n = first.kind.len();
    let mut jobs = vec![first];
    while n < MAX_BATCH_ROWS {
        match rx.try_recv() {
            Ok(j) => {
                n += j.kind.len();
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    jobs
}

/// Answers every job of a batch with the batch's outcome.
pub(super) fn answer(jobs: Vec<WriteJob>, outcome: Result<(), String>) {
    for j in jobs {
        let _ = j.reply.send(outcome.clone());
    }
}

fn compress(json: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(json.len() / 4 + 16),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = z.write_all(json);
    z.finish().unwrap_or_default()
}

/// A stored body as JSON text: plain text (rows stored before compression;
/// JSON starts with `{`) or zlib.
pub(super) fn decode_body(stored: &[u8]) -> Result<String, StoreError> {
    if stored.first() == Some(&b'{') {
        return String::from_utf8(stored.to_vec())
            .map_err(|e| StoreError::Backend(format!("stored body: {e}")));
    }
    let mut out = String::new();
    flate2::read::ZlibDecoder::new(stored)
        .read_to_string(&mut out)
        .map_err(|e| StoreError::Backend(format!("stored body: {e}")))?;
    Ok(out)
}

pub(super) fn now_compact() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_survives_compression_and_old_text_rows_still_read() {
        let json = r#"{"input":"https://a.example/","test_keys":{}}"#;
        let z = compress(json.as_bytes());
        assert_ne!(z.first(), Some(&b'{'));
        assert_eq!(decode_body(&z).unwrap(), json);
        assert_eq!(decode_body(json.as_bytes()).unwrap(), json);
        assert!(decode_body(b"\x78\x01garbage").is_err());
    }
}
