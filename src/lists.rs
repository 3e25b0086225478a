//! `gatewatch lists update`: download the current Citizen Lab test lists
//! (one country's and the global one) into the user's data directory
//! (`$XDG_DATA_HOME/gatewatch/lists/<name>.csv`), where `gatewatch run
//! --list <name>` finds them. Each download is checked to be a test list and
//! saved atomically, so a failed update keeps the previous copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::testlist::{self, ListSource};

/// Where the Citizen Lab lists are published.
pub const CITIZENLAB_BASE: &str =
    "https://raw.githubusercontent.com/citizenlab/test-lists/master/lists";

/// Errors of this command.
#[derive(Debug, thiserror::Error)]
pub enum ListsError {
    /// The download failed.
    #[error(
        "cannot download {url}: {reason} (are you offline? `gatewatch run` still works with the lists we ship)"
    )]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// What came back is not a test list.
    #[error("{url} did not return a test list: {reason}")]
    NotAList {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The file could not be saved.
    #[error("cannot save {path}: {source}")]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No data directory.
    #[error("no data directory (set XDG_DATA_HOME or HOME)")]
    NoDataDir,
    /// A bad country code.
    #[error("{0:?} is not a two-letter country code")]
    BadCountry(String),
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ListsCommand {
    /// Download the current Citizen Lab lists (a country's and the global one).
    Update(UpdateArgs),
}

/// Arguments of `gatewatch lists update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The country list to fetch besides the global one.
    #[arg(long, default_value = "kh", value_name = "CC")]
    pub country: String,
    /// Where the lists are published (a mirror, or a local server in tests).
    #[arg(long, env = "GATEWATCH_LISTS_URL", default_value = CITIZENLAB_BASE, hide = true)]
    pub source_url: String,
    /// Directory to save into [default: $XDG_DATA_HOME/gatewatch/lists].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs the command; returns the process exit code.
pub async fn execute(cmd: ListsCommand) -> Result<u8, ListsError> {
    match cmd {
        ListsCommand::Update(a) => update(&a).await,
    }
}

async fn update(a: &UpdateArgs) -> Result<u8, ListsError> {
    let cc = a.country.to_ascii_lowercase();
    if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(ListsError::BadCountry(a.country.clone()));
    }
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => crate::run::inputs::downloaded_lists_dir().ok_or(ListsError::NoDataDir)?,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ListsError::Download {
            url: a.source_url.clone(),
            reason: e.to_string(),
        })?;
    for name in [cc.as_str(), "global"] {
        let url = format!("{}/{name}.csv", a.source_url.trim_end_matches('/'));
        let text = fetch(&client, &url).await?;
        let n = count_entries(&url, &text)?;
        let path = dir.join(format!("{name}.csv"));
        save(&path, &text)?;
        println!("{name}: {n} URLs saved to {}", path.display());
    }
    Ok(0)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, ListsError> {
    let err = |e: reqwest::Error| ListsError::Download {
        url: url.to_string(),
        reason: describe(&e),
    };
    let resp = client.get(url).send().await.map_err(err)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ListsError::Download {
            url: url.to_string(),
            reason: format!("HTTP status {status}"),
        });
    }
    resp.text().await.map_err(err)
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

fn count_entries(url: &str, text: &str) -> Result<usize, ListsError> {
    let src = ListSource::Embedded {
        name: url.to_string(),
        text: std::borrow::Cow::Owned(text.to_string()),
    };
    let (entries, _) = testlist::read_all(&src).map_err(|e| ListsError::NotAList {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if entries.is_empty() {
        return Err(ListsError::NotAList {
            url: url.to_string(),
            reason: "no usable URL in it".to_string(),
        });
    }
    Ok(entries.len())
}

fn save(path: &Path, text: &str) -> Result<(), ListsError> {
    let err = |source| ListsError::Save {
        path: path.to_path_buf(),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("csv.part");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
