//! Unattended daily runs: `gatewatch schedule install` writes a systemd
//! service and timer (or prints a cron line), and [`RunLock`] makes sure two
//! runs never overlap.

use std::fs::File;
use std::path::{Path, PathBuf};

pub mod calendar;
pub mod manage;

/// The shipped systemd service template.
pub const SERVICE_TEMPLATE: &str = include_str!("../contrib/systemd/gatewatch.service");
/// The shipped systemd timer template.
pub const TIMER_TEMPLATE: &str = include_str!("../contrib/systemd/gatewatch.timer");
/// The shipped cron line (with comments).
pub const CRON_TEMPLATE: &str = include_str!("../contrib/cron/gatewatch.cron");

/// Errors of scheduling and locking.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Another run holds the lock.
    #[error("another gatewatch run is in progress (lock {0} is held); not starting a second one")]
    Busy(PathBuf),
    /// A file could not be written or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither --user nor --system, or both.
    #[error("say where to install: --user (your own systemd) or --system (needs root)")]
    NoScope,
    /// The path of this executable is unknown.
    #[error("cannot find the gatewatch executable: {0}")]
    NoBinary(std::io::Error),
    /// The volunteer has not consented (declined, or nobody to ask).
    #[error("{0}")]
    Consent(String),
    /// `--on-calendar` is not a calendar expression.
    #[error("--on-calendar {expr:?}: {reason}")]
    BadCalendar {
        /// What was given.
        expr: String,
        /// Why it was refused.
        reason: String,
    },
}

impl ScheduleError {
    /// True for errors in the command line (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ScheduleError::NoScope | ScheduleError::BadCalendar { .. } | ScheduleError::Consent(_)
        )
    }
}

/// An exclusive lock held for the duration of a run (released on drop, and
/// by the kernel if the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock `run.lock` in `dir`, or fails at once with
    /// [`ScheduleError::Busy`].
    pub fn acquire(dir: &Path) -> Result<RunLock, ScheduleError> {
        let path = dir.join("run.lock");
        let io = |source| ScheduleError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ScheduleError::Busy(path)),
            // Locking itself failed (e.g. a file system without locks): say
            // so rather than claim another run holds it.
            Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `gatewatch schedule ...`
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Write a systemd service and timer for a daily run.
    Install(InstallArgs),
    /// Print a crontab line for a daily run instead.
    Cron(CronArgs),
    /// Show the installed timer: calendar, last run, next run, exit status.
    Status(ScopeArgs),
    /// Stop the timer and remove the units.
    Uninstall(ScopeArgs),
    /// Show the log of the last runs (journal, or the cron log).
    Logs(ScopeArgs),
}

/// `gatewatch schedule cron` arguments.
#[derive(Debug, clap::Args)]
pub struct CronArgs {
    /// I have read the notice above and consent (recorded in the config
    /// directory, so the cron line needs no --yes).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `--user`/`--system` and `--unit-dir`, for status, uninstall and logs.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).multiple(false))]
pub struct ScopeArgs {
    /// The user's own timer.
    #[arg(long, group = "scope")]
    pub user: bool,
    /// The system-wide timer.
    #[arg(long, group = "scope")]
    pub system: bool,
    /// The directory the units were written to (as given to install); not
    /// asking systemd then.
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// Lines of log to show (logs only).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub lines: usize,
}

const INSTALL_EXAMPLES: &str = "Examples:
  gatewatch schedule install --user
  gatewatch schedule install --user --on-calendar 'Mon..Fri 20:00' --run-args '--config ~/gw.toml --lang km'
  gatewatch schedule status --user";

/// `gatewatch schedule install` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = INSTALL_EXAMPLES)]
#[command(group = clap::ArgGroup::new("scope").required(true).multiple(false))]
pub struct InstallArgs {
    /// Install for this user (~/.config/systemd/user).
    #[arg(long, group = "scope")]
    pub user: bool,
    /// Install system-wide (/etc/systemd/system; needs root).
    #[arg(long, group = "scope")]
    pub system: bool,
    /// When to run, in systemd's OnCalendar syntax (checked).
    #[arg(long, default_value = "*-*-* 03:17:00", value_name = "CALENDAR")]
    pub on_calendar: String,
    /// Start within this random delay after the calendar time.
    #[arg(long, default_value = "30min")]
    pub random_delay: String,
    /// Write the unit files into this directory instead of systemd's.
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// Extra arguments for `gatewatch run` (e.g. "--config /etc/gatewatch.toml").
    #[arg(
        long,
        default_value = "",
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub run_args: String,
    /// I have read the notice and consent (recorded in the config
    /// directory, so the unit needs no --yes).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Shows the risk notice and records consent, or says why not.
fn consent(yes: bool) -> Result<(), ScheduleError> {
    use crate::run::consent::{for_schedule, Consent};
    use crate::run::strings::{self, Lang};
    let lang = Lang::from_env();
    match for_schedule(yes, lang) {
        Consent::Given => Ok(()),
        Consent::Declined => Err(ScheduleError::Consent(
            strings::consent_declined(lang).to_string(),
        )),
        Consent::Missing => Err(ScheduleError::Consent(match lang {
            Lang::En => "consent has not been given: run this on a terminal to answer, or add \
                         --yes once you have read the notice above"
                .to_string(),
            Lang::Km => "មិនទាន់មានការយល់ព្រមទេ៖ សូមដំណើរការពាក្យបញ្ជានេះនៅលើ terminal ដើម្បីឆ្លើយ \
                         ឬបន្ថែម --yes បន្ទាប់ពីអានសេចក្តីជូនដំណឹងខាងលើ"
                .to_string(),
        })),
    }
}

/// The scope and the calendar expression of `schedule install`.
fn validate(a: &InstallArgs) -> Result<(), ScheduleError> {
    if a.user == a.system {
        return Err(ScheduleError::NoScope);
    }
    calendar::check(&a.on_calendar).map_err(|reason| ScheduleError::BadCalendar {
        expr: a.on_calendar.clone(),
        reason,
    })
}

/// Runs `gatewatch schedule`.
pub async fn execute(cmd: ScheduleCommand) -> Result<u8, ScheduleError> {
    match cmd {
        ScheduleCommand::Cron(c) => {
            consent(c.yes)?;
            let bin = std::env::current_exe().map_err(ScheduleError::NoBinary)?;
            print!("{}", manage::cron_text(&bin, &manage::cron_log()?));
            Ok(0)
        }
        ScheduleCommand::Status(a) => {
            let dir = manage::unit_dir(a.system, a.unit_dir.as_deref());
            print!("{}", manage::status(a.system, &dir, a.unit_dir.is_none()));
            Ok(0)
        }
        ScheduleCommand::Uninstall(a) => {
            let dir = manage::unit_dir(a.system, a.unit_dir.as_deref());
            let removed = manage::uninstall(a.system, &dir, a.unit_dir.is_none())?;
            if removed.is_empty() {
                println!("nothing installed in {}", dir.display());
            }
            for p in &removed {
                println!("removed {}", p.display());
            }
            Ok(0)
        }
        ScheduleCommand::Logs(a) => {
            print!("{}", manage::logs(a.system, a.lines));
            Ok(0)
        }
        ScheduleCommand::Install(a) => {
            // The command line is checked before the notice is shown.
            validate(&a)?;
            consent(a.yes)?;
            let written = install(&a)?;
            for p in &written {
                println!("wrote {}", p.display());
            }
            let ctl = if a.system {
                "systemctl"
            } else {
                "systemctl --user"
            };
            println!("enable it with: {ctl} daemon-reload && {ctl} enable --now gatewatch.timer");
            if let Some(h) = manage::linger_hint(a.system) {
                println!("{h}");
            }
            Ok(0)
        }
    }
}

/// Writes the service and timer; returns the files written.
pub fn install(a: &InstallArgs) -> Result<Vec<PathBuf>, ScheduleError> {
    validate(a)?;
    let dir = manage::unit_dir(a.system, a.unit_dir.as_deref());
    let bin = std::env::current_exe().map_err(ScheduleError::NoBinary)?;
    let doc = dir.join(manage::DOC);
    let (service, timer) = render_units(&bin, a);
    let service = service.replace("@DOC@", &doc.display().to_string());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScheduleError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let sp = dir.join("gatewatch.service");
    let tp = dir.join("gatewatch.timer");
    std::fs::write(&sp, service).map_err(io(&sp))?;
    std::fs::write(&tp, timer).map_err(io(&tp))?;
    std::fs::write(&doc, manage::doc_text(a.system)).map_err(io(&doc))?;
    Ok(vec![sp, tp, doc])
}

/// The service and timer text for this binary and these arguments.
pub fn render_units(bin: &Path, a: &InstallArgs) -> (String, String) {
    let service = SERVICE_TEMPLATE
        .replace("@BIN@", &bin.display().to_string())
        .replace("@ARGS@", a.run_args.trim());
    let timer = TIMER_TEMPLATE
        .replace("@CALENDAR@", &a.on_calendar)
        .replace("@DELAY@", &a.random_delay);
    (service, timer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        match RunLock::acquire(dir.path()) {
            Err(ScheduleError::Busy(p)) => assert_eq!(p, first.path()),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn units_are_rendered_with_the_binary_and_calendar() {
        let dir = tempfile::tempdir().unwrap();
        let a = InstallArgs {
            user: true,
            system: false,
            on_calendar: "*-*-* 04:00:00".into(),
            random_delay: "1h".into(),
            unit_dir: Some(dir.path().to_path_buf()),
            run_args: "--list kh".into(),
            yes: false,
        };
        let files = install(&a).unwrap();
        let service = std::fs::read_to_string(&files[0]).unwrap();
        let timer = std::fs::read_to_string(&files[1]).unwrap();
        let bin = std::env::current_exe().unwrap();
        assert!(service.contains(&format!(
            "ExecStart={} run --no-progress --list kh",
            bin.display()
        )));
        assert!(timer.contains("OnCalendar=*-*-* 04:00:00"));
        assert!(timer.contains("RandomizedDelaySec=1h"));
        assert!(!service.contains('@') && !timer.contains('@'));
        // Consent is recorded in the config directory, not baked in.
        assert!(!service.contains("--yes"));
        assert!(!CRON_TEMPLATE.contains("--yes"));
        let both = InstallArgs { system: true, ..a };
        assert!(matches!(install(&both), Err(ScheduleError::NoScope)));
    }
}
