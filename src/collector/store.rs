//! Where a collector keeps measurements: SQLite (one file, the default) or
//! PostgreSQL (a team's server). Both have the same two tables and the same
//! idempotent insert: the measurement id is derived from the report id and
//! the content, so a retried upload stores nothing twice.

use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A storage error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
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

/// A collector's database.
pub enum Store {
    /// SQLite.
    Sqlite(Mutex<rusqlite::Connection>),
    /// PostgreSQL (the synchronous client; every call runs off the async
    /// workers).
    Postgres(Mutex<Option<postgres::Client>>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Sqlite(_) => "Store::Sqlite",
            Store::Postgres(_) => "Store::Postgres",
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The synchronous PostgreSQL client closes its connection by blocking
        // on its own runtime, which panics on an async worker thread: drop it
        // on a plain thread instead.
        if let Store::Postgres(m) = self {
            if let Some(client) = m.get_mut().ok().and_then(Option::take) {
                let _ = std::thread::spawn(move || drop(client)).join();
            }
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    software_name TEXT NOT NULL,
    software_version TEXT NOT NULL,
    test_name TEXT NOT NULL,
    test_version TEXT NOT NULL,
    test_start_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    measurement_uid TEXT PRIMARY KEY,
    report_id TEXT NOT NULL,
    received TEXT NOT NULL,
    measurement_start_time TEXT NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    input TEXT,
    status TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_time ON measurements (measurement_start_time);
CREATE INDEX IF NOT EXISTS measurements_asn ON measurements (probe_asn);
CREATE INDEX IF NOT EXISTS measurements_input ON measurements (input);
";

impl Store {
    /// Opens (and creates) a store: `postgres://...` or an SQLite path.
    /// Blocking: call it off the async workers.
    pub fn open(spec: &str) -> Result<Store, StoreError> {
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            let mut c = postgres::Client::connect(spec, postgres::NoTls)?;
            c.batch_execute(SCHEMA)?;
            Ok(Store::Postgres(Mutex::new(Some(c))))
        } else {
            let c = rusqlite::Connection::open(spec)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.execute_batch(SCHEMA)?;
            Ok(Store::Sqlite(Mutex::new(c)))
        }
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
        let v = [
            &id as &str,
            &now,
            &meta.probe_asn,
            &meta.probe_cc,
            &meta.software_name,
            &meta.software_version,
            &meta.test_name,
            &meta.test_version,
            &meta.test_start_time,
        ];
        match self {
            Store::Sqlite(c) => {
                lock(c)?.execute(
                    "INSERT INTO reports VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                    rusqlite::params_from_iter(v.iter()),
                )?;
            }
            Store::Postgres(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> = v
                    .iter()
                    .map(|s| s as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                pg(c)?.execute(
                    "INSERT INTO reports VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                    &p,
                )?;
            }
        }
        Ok(id)
    }

    /// Whether a report exists.
    pub fn report_exists(&self, report_id: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Store::Sqlite(c) => {
                lock(c)?.query_row(
                    "SELECT count(*) FROM reports WHERE report_id = ?1",
                    [report_id],
                    |r| r.get::<_, i64>(0),
                )? > 0
            }
            Store::Postgres(c) => {
                let row = pg(c)?.query_one(
                    "SELECT count(*) FROM reports WHERE report_id = $1",
                    &[&report_id],
                )?;
                row.get::<_, i64>(0) > 0
            }
        })
    }

    /// Stores one (already validated) measurement and returns its id. The
    /// insert is durable before this returns; storing the same content in
    /// the same report again returns the same id and stores nothing new.
    pub fn insert(&self, report_id: &str, m: &serde_json::Value) -> Result<String, StoreError> {
        let body = m.to_string();
        let mut h = Sha256::new();
        h.update(report_id.as_bytes());
        h.update([0]);
        h.update(body.as_bytes());
        let digest = hex::encode(h.finalize());
        let start = m["measurement_start_time"].as_str().unwrap_or_default();
        let compact: String = start.chars().filter(char::is_ascii_digit).collect();
        let cc = m["probe_cc"].as_str().unwrap_or("ZZ");
        let uid = format!("{compact}_{cc}_{}", &digest[..24]);
        let asn = m["probe_asn"].as_str().unwrap_or("AS0");
        let input = m["input"].as_str();
        let status = m["test_keys"]["x_verdict"]["status"].as_str();
        let received = now_compact();
        match self {
            Store::Sqlite(c) => {
                lock(c)?.execute(
                    "INSERT OR IGNORE INTO measurements VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                    rusqlite::params![
                        uid, report_id, received, start, asn, cc, input, status, body
                    ],
                )?;
            }
            Store::Postgres(c) => {
                pg(c)?.execute(
                    "INSERT INTO measurements VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                     ON CONFLICT (measurement_uid) DO NOTHING",
                    &[
                        &uid, &report_id, &received, &start, &asn, &cc, &input, &status, &body,
                    ],
                )?;
            }
        }
        Ok(uid)
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
                self.rows(&sql, &args, |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))?;
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
        match self {
            Store::Sqlite(c) => {
                let c = lock(c)?;
                let mut st = c.prepare(&sql.replace('$', "?"))?;
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(map(r)?);
                }
                Ok(out)
            }
            Store::Postgres(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|s| s as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let rows = pg(c)?.query(sql, &p)?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    }

    /// One measurement's JSON text.
    pub fn get(&self, uid: &str) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Store::Sqlite(c) => {
                let c = lock(c)?;
                let mut st =
                    c.prepare("SELECT body FROM measurements WHERE measurement_uid = ?1")?;
                let mut rows = st.query([uid])?;
                match rows.next()? {
                    Some(r) => Some(r.get(0)?),
                    None => None,
                }
            }
            Store::Postgres(c) => pg(c)?
                .query_opt(
                    "SELECT body FROM measurements WHERE measurement_uid = $1",
                    &[&uid],
                )?
                .map(|r| r.get(0)),
        })
    }

    /// How many measurements are stored.
    pub fn count(&self) -> Result<i64, StoreError> {
        Ok(match self {
            Store::Sqlite(c) => {
                lock(c)?.query_row("SELECT count(*) FROM measurements", [], |r| r.get(0))?
            }
            Store::Postgres(c) => pg(c)?
                .query_one("SELECT count(*) FROM measurements", &[])?
                .get(0),
        })
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

/// A result row of either database, read as text.
trait Row {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl Row for postgres::Row {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

fn pg(m: &Mutex<Option<postgres::Client>>) -> Result<PgGuard<'_>, StoreError> {
    Ok(PgGuard(lock(m)?))
}

/// A locked PostgreSQL client.
struct PgGuard<'a>(std::sync::MutexGuard<'a, Option<postgres::Client>>);

impl std::ops::Deref for PgGuard<'_> {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("client present until drop")
    }
}

impl std::ops::DerefMut for PgGuard<'_> {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("client present until drop")
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Backend("database lock poisoned".into()))
}

fn now_compact() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}
