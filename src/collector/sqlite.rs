//! The SQLite backend: WAL, one writer thread that commits the writes
//! waiting for it in one transaction (prepared statements, `synchronous =
//! FULL` by default, so a commit is on disk before anyone is answered), and a few read
//! connections that run beside it.

use std::sync::Mutex;

use rusqlite::Connection;

use super::store::{
    answer, decode_body, gather, lock, Row, SqliteSync, StoreError, WriteJob, WriteKind,
};

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
CREATE INDEX IF NOT EXISTS measurements_order
    ON measurements (measurement_start_time, measurement_uid);
CREATE INDEX IF NOT EXISTS measurements_asn_order
    ON measurements (probe_asn, measurement_start_time, measurement_uid);
CREATE INDEX IF NOT EXISTS measurements_input_order
    ON measurements (input, measurement_start_time, measurement_uid);
DROP INDEX IF EXISTS measurements_time;
DROP INDEX IF EXISTS measurements_asn;
DROP INDEX IF EXISTS measurements_input;
";

/// `body` holds zlib bytes (a BLOB; SQLite keeps a BLOB as is in a TEXT
/// column, and rows from before compression stay plain text).
const INSERT_MEASUREMENT: &str =
    "INSERT OR IGNORE INTO measurements VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)";
const INSERT_REPORT: &str = "INSERT INTO reports VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)";

/// Read connections (listings run beside each other and beside the writer).
const READERS: usize = 4;

/// An SQLite collector database.
pub(super) struct SqliteStore {
    readers: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens `path`, creates the schema and starts the writer on `jobs`.
    pub fn open(
        path: &str,
        sync: SqliteSync,
        jobs: tokio::sync::mpsc::UnboundedReceiver<WriteJob>,
    ) -> Result<SqliteStore, StoreError> {
        let w = Connection::open(path)?;
        w.pragma_update(None, "journal_mode", "WAL")?;
        let level = match sync {
            SqliteSync::Full => "FULL",
            SqliteSync::Os => "NORMAL",
        };
        w.pragma_update(None, "synchronous", level)?;
        w.busy_timeout(std::time::Duration::from_secs(5))?;
        w.execute_batch(SCHEMA)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path)?;
            r.busy_timeout(std::time::Duration::from_secs(5))?;
            readers.push(Mutex::new(r));
        }
        let writer = std::thread::Builder::new()
            .name("collector-sqlite-writer".into())
            .spawn(move || write_loop(w, jobs))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        Ok(SqliteStore {
            readers,
            next: std::sync::atomic::AtomicUsize::new(0),
            writer: Some(writer),
        })
    }

    /// Runs a read query (`$n` parameters) on a free read connection.
    pub fn rows<T>(
        &self,
        sql: &str,
        args: &[String],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let c = self.reader()?;
        let mut st = c.prepare_cached(&sql.replace('$', "?"))?;
        let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(map(r)?);
        }
        Ok(out)
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        for r in &self.readers {
            if let Ok(c) = r.try_lock() {
                return Ok(c);
            }
        }
        // All busy: wait for one, taking turns.
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The writer ends once the store's sender is gone (dropped before
        // the backend) and every waiting write is committed.
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(conn: Connection, mut jobs: tokio::sync::mpsc::UnboundedReceiver<WriteJob>) {
    while let Some(first) = jobs.blocking_recv() {
        let batch = gather(first, &mut jobs);
        let outcome = write_batch(&conn, &batch).map_err(|e| format!("sqlite: {e}"));
        answer(batch, outcome);
    }
}

/// One transaction for the whole batch: all of it is stored, or none.
fn write_batch(conn: &Connection, batch: &[WriteJob]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut ins = tx.prepare_cached(INSERT_MEASUREMENT)?;
        let mut rep = tx.prepare_cached(INSERT_REPORT)?;
        for job in batch {
            match &job.kind {
                WriteKind::Rows(rows) => {
                    for r in rows {
                        ins.execute(rusqlite::params![
                            r.uid,
                            r.report_id,
                            r.received,
                            r.start,
                            r.asn,
                            r.cc,
                            r.input,
                            r.status,
                            r.body
                        ])?;
                    }
                }
                WriteKind::Report(r) => {
                    rep.execute(rusqlite::params_from_iter(r.values.iter()))?;
                }
            }
        }
    }
    tx.commit()
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn body(&self, i: usize) -> Result<String, StoreError> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => decode_body(b),
            _ => Err(StoreError::Backend("stored body is not text".into())),
        }
    }
}
