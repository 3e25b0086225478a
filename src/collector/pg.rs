//! The PostgreSQL backend: a pool of async connections (deadpool-postgres)
//! for reads, and one writer task that stores the writes waiting for it in
//! one transaction with one `INSERT ... SELECT FROM unnest(...)` per batch.
//! `measurements` is partitioned by month of `measurement_start_time`
//! (partitions are created as months appear), indexed for the API's
//! filters, and holds zlib-compressed bodies.

use std::collections::HashSet;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::store::{answer, decode_body, gather, NewRow, Row, StoreError, WriteJob, WriteKind};

/// Connections in the pool (the writer uses one at a time).
const POOL_SIZE: usize = 8;

const SCHEMA: &str = r#"
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
    measurement_uid TEXT NOT NULL,
    report_id TEXT NOT NULL,
    received TEXT NOT NULL,
    measurement_start_time TEXT COLLATE "C" NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    input TEXT,
    status TEXT,
    body BYTEA NOT NULL,
    PRIMARY KEY (measurement_start_time, measurement_uid)
) PARTITION BY RANGE (measurement_start_time);
CREATE TABLE IF NOT EXISTS measurements_other PARTITION OF measurements DEFAULT;
CREATE INDEX IF NOT EXISTS measurements_uid_idx ON measurements (measurement_uid);
CREATE INDEX IF NOT EXISTS measurements_asn_order
    ON measurements (probe_asn, measurement_start_time, measurement_uid);
CREATE INDEX IF NOT EXISTS measurements_input_order
    ON measurements (input, measurement_start_time, measurement_uid);
"#;

/// A table of the earlier layout (not partitioned, text bodies) is moved
/// into the new one, in one transaction, when the collector opens it.
const MIGRATE_V1: &str = r#"
ALTER TABLE measurements RENAME TO measurements_v1;
ALTER INDEX IF EXISTS measurements_pkey RENAME TO measurements_v1_pkey;
DROP INDEX IF EXISTS measurements_time;
DROP INDEX IF EXISTS measurements_asn;
DROP INDEX IF EXISTS measurements_input;
"#;

const INSERT_ROWS: &str = "INSERT INTO measurements SELECT * FROM unnest(\
     $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::bytea[]) ON CONFLICT DO NOTHING";
const INSERT_REPORT: &str = "INSERT INTO reports VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)";

/// A PostgreSQL collector database.
pub(super) struct PgStore {
    pool: Pool,
    rt: tokio::runtime::Handle,
}

impl PgStore {
    /// Connects, creates (or migrates) the schema and starts the writer on
    /// `jobs`. Blocking: needs a tokio runtime and must run off its workers.
    pub fn open(
        spec: &str,
        jobs: tokio::sync::mpsc::UnboundedReceiver<WriteJob>,
    ) -> Result<PgStore, StoreError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("PostgreSQL needs a tokio runtime".into()))?;
        let config: tokio_postgres::Config = spec.parse()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let months = rt.block_on(prepare_schema(&pool))?;
        rt.spawn(write_loop(pool.clone(), jobs, months));
        Ok(PgStore { pool, rt })
    }

    /// Runs a read query (`$n` text parameters) on a pooled connection.
    /// Blocking: call it off the async workers.
    pub fn rows<T>(
        &self,
        sql: &str,
        args: &[String],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.rt.block_on(async {
            let c = self.pool.get().await.map_err(pool_error)?;
            let st = c.prepare_cached(sql).await?;
            let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            Ok::<_, StoreError>(c.query(&st, &p).await?)
        })?;
        rows.iter().map(|r| map(r)).collect()
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Pool(e.to_string())
}

/// Creates the schema (moving an earlier unpartitioned table into it) and
/// returns the months that already have a partition.
async fn prepare_schema(pool: &Pool) -> Result<HashSet<String>, StoreError> {
    let mut c = pool.get().await.map_err(pool_error)?;
    let tx = c.transaction().await?;
    // One collector at a time changes the schema.
    tx.execute("SELECT pg_advisory_xact_lock(5720417)", &[])
        .await?;
    let kind: Option<i8> = tx
        .query_opt(
            "SELECT relkind::\"char\" FROM pg_class \
             WHERE relname = 'measurements' AND relnamespace = current_schema()::regnamespace",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let old = kind == Some(b'r' as i8);
    if old {
        tx.batch_execute(MIGRATE_V1).await?;
    }
    tx.batch_execute(SCHEMA).await?;
    let mut months = HashSet::new();
    if old {
        for r in tx
            .query(
                "SELECT DISTINCT substr(measurement_start_time, 1, 7) FROM measurements_v1",
                &[],
            )
            .await?
        {
            let m: String = r.get(0);
            create_partition(&*tx, &m, &mut months).await?;
        }
        tx.batch_execute(
            "INSERT INTO measurements SELECT measurement_uid, report_id, received, \
             measurement_start_time, probe_asn, probe_cc, input, status, \
             convert_to(body, 'UTF8') FROM measurements_v1 ON CONFLICT DO NOTHING; \
             DROP TABLE measurements_v1;",
        )
        .await?;
    }
    tx.commit().await?;
    for r in c
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'measurements' AND p.relnamespace = current_schema()::regnamespace",
            &[],
        )
        .await?
    {
        let name: String = r.get(0);
        if let Some(m) = month_of_partition(&name) {
            months.insert(m);
        }
    }
    Ok(months)
}

/// `YYYY-MM` of a measurement time, when it has one.
fn month_of(start: &str) -> Option<String> {
    let b = start.as_bytes();
    let ok = b.len() >= 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && (1..=12).contains(&start[5..7].parse::<u32>().unwrap_or(0));
    ok.then(|| start[..7].to_string())
}

fn partition_name(month: &str) -> String {
    format!("measurements_{}", month.replace('-', "_"))
}

fn month_of_partition(name: &str) -> Option<String> {
    let rest = name.strip_prefix("measurements_")?;
    month_of(&rest.replace('_', "-"))
}

/// Creates the partition of `month` (`YYYY-MM`) unless known.
async fn create_partition(
    c: &impl tokio_postgres::GenericClient,
    month: &str,
    known: &mut HashSet<String>,
) -> Result<(), StoreError> {
    if known.contains(month) {
        return Ok(());
    }
    let Some(m) = month_of(month) else {
        return Ok(());
    };
    let (y, mo): (u32, u32) = (m[..4].parse().unwrap_or(0), m[5..7].parse().unwrap_or(1));
    let next = if mo == 12 {
        format!("{:04}-01", y + 1)
    } else {
        format!("{y:04}-{:02}", mo + 1)
    };
    // `m` is digits and one dash: safe to put in the statement.
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF measurements FOR VALUES FROM ('{m}') TO ('{next}')",
        partition_name(&m)
    ))
    .await?;
    known.insert(m);
    Ok(())
}

async fn write_loop(
    pool: Pool,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<WriteJob>,
    mut months: HashSet<String>,
) {
    while let Some(first) = jobs.recv().await {
        let batch = gather(first, &mut jobs);
        let outcome = write_batch(&pool, &batch, &mut months)
            .await
            .map_err(|e| e.to_string());
        answer(batch, outcome);
    }
}

/// One transaction for the whole batch: all of it is stored, or none.
async fn write_batch(
    pool: &Pool,
    batch: &[WriteJob],
    months: &mut HashSet<String>,
) -> Result<(), StoreError> {
    let mut c = pool.get().await.map_err(pool_error)?;
    let rows: Vec<&NewRow> = batch
        .iter()
        .filter_map(|j| match &j.kind {
            WriteKind::Rows(r) => Some(r.iter()),
            WriteKind::Report(_) => None,
        })
        .flatten()
        .collect();
    for r in &rows {
        if let Some(m) = month_of(&r.start) {
            if !months.contains(&m) {
                create_partition(&**c, &m, months).await?;
            }
        }
    }
    let tx = c.transaction().await?;
    let rep = tx.prepare_cached(INSERT_REPORT).await?;
    for j in batch {
        if let WriteKind::Report(r) = &j.kind {
            let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = r
                .values
                .iter()
                .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.execute(&rep, &p).await?;
        }
    }
    if !rows.is_empty() {
        let col = |f: fn(&NewRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<&str>>();
        let uid = col(|r| &r.uid);
        let report = col(|r| &r.report_id);
        let received = col(|r| &r.received);
        let start = col(|r| &r.start);
        let asn = col(|r| &r.asn);
        let cc = col(|r| &r.cc);
        let input: Vec<Option<&str>> = rows.iter().map(|r| r.input.as_deref()).collect();
        let status: Vec<Option<&str>> = rows.iter().map(|r| r.status.as_deref()).collect();
        let body: Vec<&[u8]> = rows.iter().map(|r| r.body.as_slice()).collect();
        let ins = tx.prepare_cached(INSERT_ROWS).await?;
        tx.execute(
            &ins,
            &[
                &uid, &report, &received, &start, &asn, &cc, &input, &status, &body,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Row for tokio_postgres::Row {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn body(&self, i: usize) -> Result<String, StoreError> {
        let b: &[u8] = self.try_get(i)?;
        decode_body(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_partitions() {
        assert_eq!(month_of("2026-11-27 10:00:00").as_deref(), Some("2026-11"));
        assert_eq!(month_of("2026-13-01 00:00:00"), None);
        assert_eq!(month_of("20261127"), None);
        assert_eq!(partition_name("2026-11"), "measurements_2026_11");
        assert_eq!(
            month_of_partition("measurements_2026_11").as_deref(),
            Some("2026-11")
        );
        assert_eq!(month_of_partition("measurements_other"), None);
    }
}
