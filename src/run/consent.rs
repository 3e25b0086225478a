//! Informed consent: explain the risks once, ask, and remember the answer in
//! the config directory (`$XDG_CONFIG_HOME/gatewatch/consent`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::strings::{self, Lang};

/// The outcome of the consent check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    /// Go ahead.
    Given,
    /// The volunteer said no.
    Declined,
    /// Nobody to ask and no `--yes` / `consent = true`.
    Missing,
}

/// The file that records acceptance.
pub fn consent_file() -> Option<PathBuf> {
    super::config::config_dir().map(|d| d.join("consent"))
}

/// Checks consent: given by flag/config, remembered, or asked now when
/// stdin and stderr are a terminal.
pub fn check(given: bool, lang: Lang) -> Consent {
    if given {
        return Consent::Given;
    }
    let file = consent_file();
    if file.as_deref().is_some_and(Path::exists) {
        return Consent::Given;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Consent::Missing;
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{}", strings::consent_text(lang));
    let _ = write!(err, "{}", strings::consent_prompt(lang));
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() || !strings::is_acceptance(&answer) {
        return Consent::Declined;
    }
    if let Some(f) = file {
        remember(&f);
    }
    Consent::Given
}

/// For `gatewatch schedule`: always shows the notice (stderr), then
/// records consent in the config directory — given on the command line
/// (`yes`), already recorded, or asked now on a terminal — so the unit or
/// cron line needs no `--yes` and the scheduled runs read it from there.
pub fn for_schedule(yes: bool, lang: Lang) -> Consent {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{}", strings::consent_text(lang));
    let file = consent_file();
    if yes {
        if let Some(f) = &file {
            remember(f);
        }
        return Consent::Given;
    }
    if file.as_deref().is_some_and(Path::exists) {
        return Consent::Given;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Consent::Missing;
    }
    let _ = write!(err, "{}", strings::consent_prompt(lang));
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() || !strings::is_acceptance(&answer) {
        return Consent::Declined;
    }
    if let Some(f) = file {
        remember(&f);
    }
    Consent::Given
}

/// Writes the acceptance file (best effort: failing to remember only means
/// being asked again).
fn remember(file: &Path) {
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = std::fs::write(
        file,
        format!("accepted the gatewatch risk notice at {when}\n"),
    );
}
