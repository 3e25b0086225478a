//! `gatewatch geo update`: downloads free ASN and country databases so runs
//! record `probe_asn`, `probe_cc` and `probe_network_name` instead of
//! `AS0`/`ZZ` (which makes `compare` and `history` merge ISPs).
//!
//! Which: DB-IP's "IP to ASN Lite" and "IP to Country Lite" (`.mmdb`,
//! MaxMind's format and field names, updated monthly). Why: their licence,
//! Creative Commons Attribution 4.0, allows use and redistribution by anyone
//! with attribution ("IP Geolocation by DB-IP", <https://db-ip.com>), with
//! no account or licence key — unlike MaxMind's GeoLite2, which needs both
//! and forbids redistribution. The ASN database carries the network name,
//! which IPtoASN's public-domain data also has but only as TSV.
//!
//! The files go to [`super::default_dir`] (`$XDG_DATA_HOME/gatewatch/geo`),
//! where `run` finds them when `--asn-db`/`--country-db` are not given.
//! Each file is checked (it opens as a database of the right kind) and
//! replaced atomically, so a failed update leaves the previous one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The ASN database file name.
pub const ASN_FILE: &str = "dbip-asn-lite.mmdb";
/// The country database file name.
pub const COUNTRY_FILE: &str = "dbip-country-lite.mmdb";
/// Where DB-IP publishes the free databases.
pub const DBIP_BASE: &str = "https://download.db-ip.com/free/";
/// The attribution the licence asks for.
pub const ATTRIBUTION: &str = "IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0";
/// A decompressed database larger than this is refused.
const MAX_DB_BYTES: u64 = 512 * 1024 * 1024;

/// `gatewatch geo ...`
#[derive(Debug, clap::Subcommand)]
pub enum GeoCommand {
    /// Download DB-IP's free ASN and country databases (CC BY 4.0).
    Update(UpdateArgs),
}

/// `gatewatch geo update` arguments.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Where to write them [default: $XDG_DATA_HOME/gatewatch/geo].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where to download from (tests point it at a local server).
    #[arg(long, env = "GATEWATCH_GEO_URL", default_value = DBIP_BASE, hide = true)]
    pub base_url: String,
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum GeoUpdateError {
    /// No data directory and no `--dir`.
    #[error("no data directory: give --dir DIR")]
    NoDataDir,
    /// The download failed.
    #[error("cannot download {url}: {reason} (is this machine online?)")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// What was downloaded is not the expected database.
    #[error("{url} is not a usable {kind} database: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// `ASN` or `country`.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the command.
pub async fn execute(cmd: GeoCommand) -> Result<u8, GeoUpdateError> {
    match cmd {
        GeoCommand::Update(a) => {
            let dir = match a.dir {
                Some(d) => d,
                None => super::default_dir().ok_or(GeoUpdateError::NoDataDir)?,
            };
            let http = reqwest::Client::builder()
                .user_agent(crate::control::client::USER_AGENT)
                .connect_timeout(Duration::from_secs(15))
                .timeout(Duration::from_secs(600))
                .build()
                .map_err(|e| GeoUpdateError::Download {
                    url: a.base_url.clone(),
                    reason: e.to_string(),
                })?;
            let today = time::OffsetDateTime::now_utc().date();
            for (kind, name, file) in [
                ("country", "country", COUNTRY_FILE),
                ("ASN", "asn", ASN_FILE),
            ] {
                let path = dir.join(file);
                update_one(&http, &a.base_url, today, kind, name, &path).await?;
                println!("wrote {}", path.display());
            }
            println!("{ATTRIBUTION}");
            Ok(0)
        }
    }
}

/// `dbip-<name>-lite-YYYY-MM.mmdb.gz` for `month`.
pub fn file_url(base: &str, name: &str, month: time::Date) -> String {
    let base = base.trim_end_matches('/');
    format!(
        "{base}/dbip-{name}-lite-{}-{:02}.mmdb.gz",
        month.year(),
        u8::from(month.month())
    )
}

/// This month's file, or last month's when this month's is not out yet.
async fn update_one(
    http: &reqwest::Client,
    base: &str,
    today: time::Date,
    kind: &'static str,
    name: &str,
    path: &Path,
) -> Result<(), GeoUpdateError> {
    let last_month = today
        .replace_day(1)
        .ok()
        .and_then(|d| d.previous_day())
        .unwrap_or(today);
    let mut last_err = None;
    for month in [today, last_month] {
        let url = file_url(base, name, month);
        match download(http, &url).await {
            Ok(Some(gz)) => {
                let db = gunzip(&gz).map_err(|reason| GeoUpdateError::Invalid {
                    url: url.clone(),
                    kind,
                    reason,
                })?;
                check(&db, kind).map_err(|reason| GeoUpdateError::Invalid {
                    url: url.clone(),
                    kind,
                    reason,
                })?;
                return write_atomically(path, &db);
            }
            Ok(None) => {
                last_err = Some(GeoUpdateError::Download {
                    url,
                    reason: "not found (404)".into(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or(GeoUpdateError::NoDataDir))
}

/// The body, `None` on 404.
async fn download(http: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, GeoUpdateError> {
    let err = |reason: String| GeoUpdateError::Download {
        url: url.to_string(),
        reason,
    };
    let resp = http.get(url).send().await.map_err(|e| err(chain(&e)))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let bytes = resp.bytes().await.map_err(|e| err(chain(&e)))?;
    Ok(Some(bytes.to_vec()))
}

fn gunzip(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(MAX_DB_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() as u64 > MAX_DB_BYTES {
        return Err(format!("larger than {MAX_DB_BYTES} bytes"));
    }
    Ok(out)
}

/// Opens as a MaxMind database whose type names `kind`.
fn check(db: &[u8], kind: &str) -> Result<(), String> {
    let r = maxminddb::Reader::from_source(db).map_err(|e| e.to_string())?;
    let ty = r.metadata().database_type.to_ascii_lowercase();
    if ty.contains(&kind.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!("its type is {:?}", r.metadata().database_type))
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), GeoUpdateError> {
    let io = |source| GeoUpdateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("mmdb.part");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_file_names() {
        let d = time::macros::date!(2026 - 12 - 07);
        assert_eq!(
            file_url("https://x.example/free/", "asn", d),
            "https://x.example/free/dbip-asn-lite-2026-12.mmdb.gz"
        );
        assert_eq!(
            file_url("https://x.example/free", "country", d),
            "https://x.example/free/dbip-country-lite-2026-12.mmdb.gz"
        );
    }

    #[test]
    fn not_gzip_or_not_a_database_is_refused() {
        assert!(gunzip(b"plain").is_err());
        assert!(check(b"not a database", "asn").is_err());
    }
}
