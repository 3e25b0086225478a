//! `gatewatch schedule status|uninstall|logs|cron`, and the facts
//! `install` prints: where units live, whether the user's timer runs while
//! they are logged out (`loginctl enable-linger`), and the documentation
//! file the service's `Documentation=` names.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ScheduleError;

/// The service unit's file name.
pub const SERVICE: &str = "gatewatch.service";
/// The timer unit's file name.
pub const TIMER: &str = "gatewatch.timer";
/// The documentation file written beside the units.
pub const DOC: &str = "gatewatch-schedule.txt";

/// Where units are installed: `--unit-dir`, /etc/systemd/system for
/// `--system`, else the user's systemd directory.
pub fn unit_dir(system: bool, given: Option<&Path>) -> PathBuf {
    match given {
        Some(d) => d.to_path_buf(),
        None if system => PathBuf::from("/etc/systemd/system"),
        None => dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from(".config"))
            .join("systemd")
            .join("user"),
    }
}

/// The text of [`DOC`]: how to look at, and remove, the schedule.
pub fn doc_text(system: bool) -> String {
    let scope = if system { "--system" } else { "--user" };
    format!(
        "gatewatch daily runs\n\
         ====================\n\n\
         Installed by `gatewatch schedule install {scope}`.\n\n\
         gatewatch schedule status {scope}     last run, next run, exit status\n\
         gatewatch schedule logs {scope}       the last run's log\n\
         gatewatch schedule uninstall {scope}  stop and remove the timer\n\
         gatewatch runs                        the results of past runs\n"
    )
}

/// The sentence about lingering for a user install, when it is needed:
/// without it a user's timers only fire while the user is logged in.
pub fn linger_hint(system: bool) -> Option<String> {
    if system {
        return None;
    }
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty())?;
    if Path::new("/var/lib/systemd/linger").join(&user).exists() {
        return None;
    }
    Some(format!(
        "note: runs happen only while {user} is logged in; to run them when logged out too: loginctl enable-linger {user}"
    ))
}

fn systemctl(system: bool) -> Command {
    let mut c = Command::new("systemctl");
    if !system {
        c.arg("--user");
    }
    c
}

fn show_prop(system: bool, unit: &str, props: &str) -> Option<Vec<(String, String)>> {
    let out = systemctl(system)
        .args(["show", unit, "-p", props])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// `schedule status`: installed files, the calendar, and what systemd says
/// about the last and next run (or that it could not be asked).
pub fn status(system: bool, dir: &Path, ask_systemd: bool) -> String {
    let mut s = String::new();
    let timer = dir.join(TIMER);
    let service = dir.join(SERVICE);
    if !timer.exists() && !service.exists() {
        s.push_str(&format!(
            "not installed in {} (install with: gatewatch schedule install {})\n",
            dir.display(),
            if system { "--system" } else { "--user" }
        ));
        return s;
    }
    for f in [&service, &timer] {
        let state = if f.exists() { "installed" } else { "missing" };
        s.push_str(&format!("{}: {state}\n", f.display()));
    }
    if let Ok(t) = std::fs::read_to_string(&timer) {
        for l in t
            .lines()
            .filter(|l| l.starts_with("OnCalendar=") || l.starts_with("RandomizedDelaySec="))
        {
            s.push_str(&format!("schedule: {l}\n"));
        }
    }
    let asked = if ask_systemd {
        let t = show_prop(
            system,
            TIMER,
            "ActiveState,LastTriggerUSec,NextElapseUSecRealtime",
        );
        let v = show_prop(
            system,
            SERVICE,
            "ExecMainStatus,ExecMainExitTimestamp,Result",
        );
        t.zip(v)
    } else {
        None
    };
    match asked {
        Some((t, v)) => {
            let get = |kv: &[(String, String)], k: &str| {
                kv.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| {
                        if v.is_empty() {
                            "never".to_string()
                        } else {
                            v.clone()
                        }
                    })
                    .unwrap_or_else(|| "unknown".into())
            };
            s.push_str(&format!("timer: {}\n", get(&t, "ActiveState")));
            s.push_str(&format!("last run: {}\n", get(&t, "LastTriggerUSec")));
            s.push_str(&format!(
                "next run: {}\n",
                get(&t, "NextElapseUSecRealtime")
            ));
            s.push_str(&format!(
                "last exit status: {} ({})\n",
                get(&v, "ExecMainStatus"),
                get(&v, "Result")
            ));
        }
        None => {
            s.push_str("last run, next run, exit status: unknown (systemd could not be asked)\n")
        }
    }
    if let Some(h) = linger_hint(system) {
        s.push_str(&h);
        s.push('\n');
    }
    s
}

/// `schedule uninstall`: stops and disables the timer (when systemd is
/// asked) and removes the files; returns the files removed.
pub fn uninstall(
    system: bool,
    dir: &Path,
    ask_systemd: bool,
) -> Result<Vec<PathBuf>, ScheduleError> {
    if ask_systemd {
        // Best effort: the files go whether or not systemd knew them.
        let _ = systemctl(system).args(["disable", "--now", TIMER]).output();
    }
    let mut removed = Vec::new();
    for name in [TIMER, SERVICE, DOC] {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ScheduleError::Io { path: p, source }),
        }
    }
    if ask_systemd && !removed.is_empty() {
        let _ = systemctl(system).arg("daemon-reload").output();
    }
    Ok(removed)
}

/// The cron log file (its directory is created).
pub fn cron_log() -> Result<PathBuf, ScheduleError> {
    let dir = crate::run::config::data_dir().unwrap_or_else(|| PathBuf::from("/var/tmp/gatewatch"));
    std::fs::create_dir_all(&dir).map_err(|source| ScheduleError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir.join("cron.log"))
}

/// `schedule cron`: the crontab text with this binary's absolute path and
/// a log file in a directory that exists.
pub fn cron_text(bin: &Path, log: &Path) -> String {
    super::CRON_TEMPLATE
        .replace("@BIN@", &shell_quote(&bin.display().to_string()))
        .replace("@LOG@", &shell_quote(&log.display().to_string()))
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `schedule logs`: the journal of the last runs (systemd), or the tail of
/// the cron log.
pub fn logs(system: bool, lines: usize) -> String {
    let mut c = Command::new("journalctl");
    if !system {
        c.arg("--user");
    }
    let n = lines.to_string();
    if let Ok(out) = c.args(["-u", SERVICE, "-n", &n, "--no-pager"]).output() {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.lines().count() > 1 {
            return text;
        }
    }
    if let Ok(log) = cron_log() {
        if let Ok(t) = std::fs::read_to_string(&log) {
            let all: Vec<&str> = t.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            return format!("{}:\n{}\n", log.display(), tail.join("\n"));
        }
    }
    "no logs found (journalctl had none for gatewatch.service, and there is no cron log)\n".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_text_has_an_absolute_binary_and_log() {
        let t = cron_text(
            Path::new("/opt/gw bin/gatewatch"),
            Path::new("/home/v/.local/share/gatewatch/cron.log"),
        );
        let line = t.lines().find(|l| !l.starts_with('#')).unwrap();
        assert!(line.contains("'/opt/gw bin/gatewatch' run "), "{line}");
        assert!(
            line.ends_with(">> /home/v/.local/share/gatewatch/cron.log 2>&1"),
            "{line}"
        );
        assert!(!t.contains('@'));
    }

    #[test]
    fn status_and_uninstall_work_on_a_unit_dir() {
        let d = tempfile::tempdir().unwrap();
        assert!(status(false, d.path(), false).starts_with("not installed in "));
        std::fs::write(d.path().join(TIMER), "[Timer]\nOnCalendar=*-*-* 04:00:00\n").unwrap();
        std::fs::write(d.path().join(SERVICE), "[Service]\n").unwrap();
        let s = status(false, d.path(), false);
        assert!(s.contains("schedule: OnCalendar=*-*-* 04:00:00"), "{s}");
        assert!(s.contains("unknown (systemd could not be asked)"), "{s}");
        let removed = uninstall(false, d.path(), false).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(!d.path().join(TIMER).exists());
    }
}
