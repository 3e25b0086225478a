//! The local history database: every finished measurement's verdict, kept
//! in SQLite in the data directory, and `gatewatch history` to show when
//! blocking started and stopped per URL and vantage point.
//!
//! Each insert is its own transaction in WAL mode with full sync, so a
//! crash or kill mid-run loses at most the measurement being written and
//! never corrupts the database.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Measurement;

/// A history error.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite said no.
    #[error("history database {path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// `--since` is not a date.
    #[error("--since {0:?} is not a date (YYYY-MM-DD)")]
    BadDate(String),
    /// An `--import` file could not be read.
    #[error(transparent)]
    Read(#[from] crate::results::ResultsError),
    /// `--db` names a file that does not exist.
    #[error("--db {0}: no such file (a history database is made by `gatewatch run`; not creating an empty one)")]
    NoDatabase(PathBuf),
}

/// The history database.
#[derive(Debug)]
pub struct HistoryDb {
    conn: rusqlite::Connection,
    path: PathBuf,
}

/// One stretch of time during which a URL was blocked at a vantage point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// The URL.
    pub input: String,
    /// `AS<n> (CC)` and the network name when known.
    pub vantage: String,
    /// `blocked` or `throttled`.
    pub status: String,
    /// The mechanism(s) seen during the episode, in order of first sight.
    pub mechanisms: Vec<String>,
    /// The first measurement that found it blocked.
    pub started: String,
    /// The last measurement that found it blocked.
    pub last_seen: String,
    /// The first later measurement that found it accessible; `None` while
    /// still blocked.
    pub ended: Option<String>,
    /// How many measurements found it blocked.
    pub measurements: u32,
}

impl HistoryDb {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<HistoryDb, HistoryError> {
        let err = |source| HistoryError::Db {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS observations (
                id INTEGER PRIMARY KEY,
                input TEXT NOT NULL,
                probe_asn TEXT NOT NULL,
                probe_cc TEXT NOT NULL,
                network TEXT,
                start_time TEXT NOT NULL,
                status TEXT NOT NULL,
                layer TEXT,
                mechanism TEXT
            );
            CREATE INDEX IF NOT EXISTS observations_url
                ON observations (input, probe_asn, start_time);",
        )
        .map_err(err)?;
        Ok(HistoryDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The default location: history.sqlite in the data directory.
    pub fn default_path() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("gatewatch")
            .join("history.sqlite")
    }

    /// Records one finished measurement's verdict.
    pub fn record(&self, m: &Measurement) -> Result<(), HistoryError> {
        let v = m.test_keys.x_verdict.clone().unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO observations
                 (input, probe_asn, probe_cc, network, start_time, status, layer, mechanism)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    m.input.clone().unwrap_or_default(),
                    m.probe_asn,
                    m.probe_cc,
                    m.probe_network_name,
                    m.measurement_start_time,
                    v.status.as_str(),
                    v.layer,
                    v.mechanism,
                ],
            )
            .map_err(|source| HistoryError::Db {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }

    /// Records `m` unless the same URL, network and start time is already
    /// there (importing a file twice adds nothing); true when recorded.
    pub fn record_new(&self, m: &Measurement) -> Result<bool, HistoryError> {
        let seen = self
            .conn
            .query_row(
                "SELECT 1 FROM observations
                 WHERE input = ?1 AND probe_asn = ?2 AND start_time = ?3 LIMIT 1",
                rusqlite::params![
                    m.input.clone().unwrap_or_default(),
                    m.probe_asn,
                    m.measurement_start_time
                ],
                |_| Ok(()),
            )
            .map(|()| true)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(false),
                e => Err(e),
            })
            .map_err(|source| HistoryError::Db {
                path: self.path.clone(),
                source,
            })?;
        if seen {
            return Ok(false);
        }
        self.record(m)?;
        Ok(true)
    }

    /// The blocking episodes, optionally for one URL and from a date on
    /// (episodes that overlap the date are included).
    pub fn episodes(
        &self,
        url: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<Episode>, HistoryError> {
        let err = |source| HistoryError::Db {
            path: self.path.clone(),
            source,
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT input, probe_asn, probe_cc, network, start_time, status, mechanism
                 FROM observations WHERE (?1 IS NULL OR input = ?1)
                 ORDER BY input, probe_asn, probe_cc, start_time, id",
            )
            .map_err(err)?;
        let rows = st
            .query_map([url], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(err)?;
        let mut out: Vec<Episode> = Vec::new();
        let mut open: Option<Episode> = None;
        let mut key = (String::new(), String::new());
        for row in rows {
            let (input, asn, cc, net, t, status, mech) = row.map_err(err)?;
            // One vantage point per ASN and country: a row without the
            // network's name (OONI's older data) does not start another.
            let network = format!("{asn} ({cc})");
            let vantage = match &net {
                Some(n) if !n.is_empty() => format!("{asn} ({cc}, {n})"),
                _ => network.clone(),
            };
            if key != (input.clone(), network.clone()) {
                out.extend(open.take());
                key = (input.clone(), network);
            }
            if let Some(ep) = open.as_mut().filter(|e| e.vantage.len() < vantage.len()) {
                ep.vantage = vantage.clone();
            }
            match status.as_str() {
                "blocked" | "throttled" => {
                    let ep = open.get_or_insert_with(|| Episode {
                        input: input.clone(),
                        vantage: vantage.clone(),
                        status: status.clone(),
                        mechanisms: Vec::new(),
                        started: t.clone(),
                        last_seen: t.clone(),
                        ended: None,
                        measurements: 0,
                    });
                    ep.last_seen = t;
                    ep.measurements += 1;
                    if let Some(m) = mech {
                        if !ep.mechanisms.contains(&m) {
                            ep.mechanisms.push(m);
                        }
                    }
                }
                "accessible" => {
                    if let Some(mut ep) = open.take() {
                        ep.ended = Some(t);
                        out.push(ep);
                    }
                }
                // down and inconclusive say nothing about censorship.
                _ => {}
            }
        }
        out.extend(open);
        if let Some(since) = since {
            out.retain(|e| e.ended.as_deref().is_none_or(|end| end >= since));
        }
        Ok(out)
    }
}

const HISTORY_EXAMPLES: &str = "Examples:
  gatewatch history
  gatewatch history https://example.org/ --since 2026-11-01
  gatewatch history --db ./history.sqlite --json";

/// `gatewatch history` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = HISTORY_EXAMPLES)]
pub struct HistoryArgs {
    /// Only this URL.
    pub url: Option<String>,
    /// Only episodes still open on or after this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// The database [default: history.sqlite in the data directory].
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// First add these measurements (ours or OONI's, any format the
    /// results reader takes; those without our verdict are analysed).
    #[arg(long = "import", value_name = "FILE")]
    pub import: Vec<PathBuf>,
}

/// Adds the measurements of `files` to `db` (analysing those without our
/// verdict); the number added and what the reader found.
pub fn import(
    db: &HistoryDb,
    files: &[PathBuf],
) -> Result<(u64, crate::results::ReadStats), HistoryError> {
    let mut ctx = crate::analysis::AnalysisContext::default();
    let mut added = 0;
    let mut failed: Option<HistoryError> = None;
    let stderr = std::io::stderr();
    let stats = crate::results::read_files(
        files,
        &mut |w| {
            use std::io::Write;
            let _ = writeln!(
                stderr.lock(),
                "{}",
                crate::compare::text::clean(&w.to_string())
            );
        },
        &mut |_, mut m| {
            if failed.is_some() {
                return;
            }
            if m.test_keys.x_verdict.is_none() {
                crate::analyze::analyze_in_place(&mut m, &mut ctx);
            }
            match db.record_new(&m) {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(e) => failed = Some(e),
            }
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok((added, stats)),
    }
}

/// Runs `gatewatch history`.
pub async fn execute(args: HistoryArgs) -> Result<u8, HistoryError> {
    if let Some(s) = &args.since {
        // `get`, not `[..10]`: a non-ASCII argument must be an error, not a
        // panic on a char boundary.
        let ok = s.get(..10).is_some_and(|day| {
            time::Date::parse(
                day,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_ok()
        });
        if !ok {
            return Err(HistoryError::BadDate(s.clone()));
        }
    }
    if let Some(p) = args.db.as_ref().filter(|p| !p.exists()) {
        return Err(HistoryError::NoDatabase(p.clone()));
    }
    let db = HistoryDb::open(&args.db.unwrap_or_else(HistoryDb::default_path))?;
    let mut code = 0;
    if !args.import.is_empty() {
        let (added, stats) = import(&db, &args.import)?;
        eprintln!(
            "imported {added} new measurement(s) of {} read",
            stats.measurements
        );
        code = stats.exit_code();
    }
    let eps = db.episodes(args.url.as_deref(), args.since.as_deref())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&eps).unwrap_or_else(|_| "[]".into())
        );
        return Ok(code);
    }
    if eps.is_empty() {
        println!("No blocking recorded.");
        return Ok(code);
    }
    println!(
        "{:<40} {:<24} {:<10} {:<20} {:<20} {:<20} mechanism",
        "URL", "vantage point", "status", "started", "last seen", "ended"
    );
    for e in eps {
        println!(
            "{:<40} {:<24} {:<10} {:<20} {:<20} {:<20} {}",
            e.input,
            e.vantage,
            e.status,
            e.started,
            e.last_seen,
            e.ended.as_deref().unwrap_or("(still blocked)"),
            e.mechanisms.join(", ")
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Verdict, VerdictStatus};

    fn m(url: &str, asn: &str, t: &str, status: VerdictStatus, mech: Option<&str>) -> Measurement {
        let mut m = Measurement {
            input: Some(url.into()),
            probe_asn: asn.into(),
            probe_cc: "KH".into(),
            measurement_start_time: t.into(),
            ..Default::default()
        };
        m.test_keys.x_verdict = Some(Verdict {
            status,
            mechanism: mech.map(str::to_string),
            ..Default::default()
        });
        m
    }

    #[test]
    fn episodes_start_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let db = HistoryDb::open(&dir.path().join("h.sqlite")).unwrap();
        use VerdictStatus::*;
        let u = "https://news.example/";
        for (t, s, mech) in [
            ("2026-11-01 10:00:00", Accessible, None),
            ("2026-11-02 10:00:00", Blocked, Some("dns.nxdomain")),
            ("2026-11-03 10:00:00", Down, None),
            ("2026-11-04 10:00:00", Blocked, Some("tcp.timeout")),
            ("2026-11-05 10:00:00", Accessible, None),
            ("2026-11-06 10:00:00", Blocked, Some("tls.reset")),
        ] {
            db.record(&m(u, "AS38623", t, s, mech)).unwrap();
        }
        db.record(&m(u, "AS17976", "2026-11-02 11:00:00", Accessible, None))
            .unwrap();
        let eps = db.episodes(Some(u), None).unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].vantage, "AS38623 (KH)");
        assert_eq!(eps[0].started, "2026-11-02 10:00:00");
        assert_eq!(eps[0].last_seen, "2026-11-04 10:00:00");
        assert_eq!(eps[0].ended.as_deref(), Some("2026-11-05 10:00:00"));
        assert_eq!(eps[0].mechanisms, vec!["dns.nxdomain", "tcp.timeout"]);
        assert_eq!(eps[0].measurements, 2);
        assert_eq!(eps[1].started, "2026-11-06 10:00:00");
        assert_eq!(eps[1].ended, None);
        let recent = db.episodes(None, Some("2026-11-06")).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].mechanisms, vec!["tls.reset"]);
    }

    #[tokio::test]
    async fn a_since_that_is_not_a_date_is_an_error_naming_it() {
        for bad in ["2026-11", "2026-11-0é", "ééééé-11-06"] {
            let args = HistoryArgs {
                url: None,
                since: Some(bad.into()),
                db: None,
                json: false,
                import: Vec::new(),
            };
            match execute(args).await {
                Err(e @ HistoryError::BadDate(_)) => assert!(e.to_string().contains(bad)),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
