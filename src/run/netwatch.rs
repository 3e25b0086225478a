//! The run-level judgement: network-wide interception is not censorship.
//!
//! Results are written per URL as they finish, so the decision has to come
//! before a result is written. This module sits between the scheduler and
//! the results file:
//!
//! - A result that is not `accessible`/`throttled` ("bad") is **held back**
//!   while it is among the last [`WINDOW`] results. When [`BURST`] of them
//!   are bad, a reference check ([`super::netcheck`]) runs at once; checks
//!   also run every `--recheck-interval`.
//! - A check that finds the references fine releases the held results
//!   unchanged (a country-wide block of many sites stays `blocked`), and
//!   the next burst check waits a quiet stretch (8, 16, 32 ... up to
//!   [`MAX_QUIET`] results) so a heavily censored list costs few checks. A check
//!   that finds them intercepted starts an **episode**: the held results and
//!   every bad result until a check finds the network fine again are
//!   **marked** — `x_network_interception`, an evidence sentence "network-wide
//!   interception (...) from HH:MM", the classic keys cleared and the verdict
//!   `inconclusive` (never `blocked`). Results that loaded are left alone.
//! - An episode that starts during the run stops it: unattended runs stop
//!   at once (what was measured is kept, exit code
//!   [`super::EXIT_NETWORK_INTERCEPTED`]); interactive runs ask whether to go
//!   on. `--resume` measures the marked URLs again.
//!
//! A held result is written at the latest when the check it waits for
//! ends, or at the end of the run; a run killed meanwhile loses at most the
//! held results, which `--resume` measures again.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::measure::{utc_string, Finished, UrlContext};
use super::netcheck::{self, CheckReport};
use super::strings::{self, Lang};
use crate::model::{Blocking, NetworkNote, Verdict, VerdictStatus};

/// Results looked at for a burst of failures.
pub const WINDOW: usize = 8;
/// Bad results among the last [`WINDOW`] that start a check.
pub const BURST: usize = 6;
/// The longest quiet stretch (results) after checks that found the
/// network fine; the periodic check still runs.
pub const MAX_QUIET: u64 = 256;

/// One stretch of time during which the references were intercepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Episode {
    /// From (reference time, `YYYY-MM-DD hh:mm:ss`).
    pub since: String,
    /// Until a check found the network fine again, if one did.
    pub until: Option<String>,
    /// The portal recognised, if any.
    pub portal: Option<String>,
    /// What the reference check saw.
    pub references: Vec<String>,
    /// Measurements marked.
    pub marked: u64,
    /// Found before the first URL was measured.
    pub before_run: bool,
    /// How the sites held back failed alike (`5 of 6 failing sites got the
    /// same answer: the page "CafeNet Wi-Fi"`), when most did.
    pub pattern: Option<String>,
}

impl Episode {
    /// `HH:MM` of the start.
    pub fn since_hhmm(&self) -> &str {
        self.since.get(11..16).unwrap_or(&self.since)
    }
}

#[derive(Debug, Default)]
struct Shared {
    current: Option<Episode>,
    done: Vec<Episode>,
    pending: bool,
    generation: u64,
    /// Reference checks made during the run (the one before it aside).
    checks: u64,
    /// The earliest start among the held results when the check was asked.
    burst_since: Option<String>,
    stop: bool,
}

/// The gate between the scheduler and the results file.
pub struct NetWatch {
    shared: Arc<Mutex<Shared>>,
    trigger: Arc<Notify>,
    held: Vec<(u64, Finished)>,
    recent: VecDeque<bool>,
    seq: u64,
    seen_generation: u64,
    /// After a check found the network fine: no burst check (and no
    /// holding back) before this result number.
    quiet_until: u64,
    /// The next quiet stretch, doubled after each clear check, so a list of
    /// many blocked sites costs a few checks, not one per burst.
    quiet_len: u64,
    enabled: bool,
    task: Option<tokio::task::JoinHandle<()>>,
    stop_checks: CancellationToken,
}

/// How the watch reacts to an episode starting during the run.
#[derive(Clone, Debug)]
pub struct Reaction {
    /// Cancels the run.
    pub cancel: CancellationToken,
    /// Ask on the terminal (else stop).
    pub interactive: bool,
    /// Language of the messages.
    pub lang: Lang,
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl NetWatch {
    /// A watch that does nothing (no reference targets).
    pub fn disabled() -> NetWatch {
        NetWatch {
            shared: Arc::default(),
            trigger: Arc::new(Notify::new()),
            held: Vec::new(),
            recent: VecDeque::new(),
            seq: 0,
            seen_generation: 0,
            quiet_until: 0,
            quiet_len: WINDOW as u64,
            enabled: false,
            task: None,
            stop_checks: CancellationToken::new(),
        }
    }

    /// Starts watching: checks run in the background every `interval` and
    /// when a burst of failures asks for one. `before` is the check made
    /// before the run, when it found the network intercepted and the run
    /// goes on anyway.
    pub fn start(
        ctx: Arc<UrlContext>,
        urls: Vec<String>,
        interval: Duration,
        before: Option<&CheckReport>,
        reaction: Reaction,
    ) -> NetWatch {
        let mut w = NetWatch::disabled();
        if urls.is_empty() {
            return w;
        }
        w.enabled = true;
        if let Some(r) = before.filter(|r| r.network_wide()) {
            lock(&w.shared).current = Some(Episode {
                since: utc_string(r.at),
                portal: r.portal(),
                references: r.lines(),
                before_run: true,
                ..Episode::default()
            });
        }
        let shared = Arc::clone(&w.shared);
        let trigger = Arc::clone(&w.trigger);
        let stop = w.stop_checks.clone();
        w.task = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = trigger.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
                let at = ctx
                    .clock
                    .as_ref()
                    .map_or_else(OffsetDateTime::now_utc, |(c, _)| c.now());
                let report = netcheck::check(Arc::clone(&ctx), &urls, at).await;
                let started = apply(&shared, &report);
                if started {
                    react(&shared, &reaction, &report).await;
                }
            }
        }));
        w
    }

    /// Takes one finished URL; returns the results to write now (in the
    /// order to write them), marked when the network was intercepted.
    pub fn finished(&mut self, mut f: Finished) -> Vec<Finished> {
        if !self.enabled {
            return vec![f];
        }
        self.seq += 1;
        let bad = is_bad(&f);
        let shared = Arc::clone(&self.shared);
        let mut sh = lock(&shared);
        let mut out = Vec::new();
        // A check ended since the last result: settle what it held.
        if sh.generation != self.seen_generation {
            self.seen_generation = sh.generation;
            self.recent.clear();
            if sh.current.is_none() {
                self.quiet_until = self.seq + self.quiet_len;
                self.quiet_len = (self.quiet_len * 2).min(MAX_QUIET);
            } else {
                self.quiet_len = WINDOW as u64;
            }
            out.extend(self.release(&mut sh));
        }
        if let Some(ep) = sh.current.as_mut() {
            if bad {
                mark(&mut f, ep);
            }
            out.push(f);
            return out;
        }
        if !sh.pending {
            // Bad results that slid out of the window were no burst.
            let seq = self.seq;
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(s, _)| s + WINDOW as u64 <= seq);
            self.held = keep;
            out.extend(old.into_iter().map(|(_, f)| f));
        }
        if !bad || (self.seq < self.quiet_until && !sh.pending) {
            self.remember(bad);
            out.push(f);
            return out;
        }
        self.remember(true);
        self.held.push((self.seq, f));
        let bad_recent = self.recent.iter().filter(|b| **b).count();
        if !sh.pending && bad_recent >= BURST {
            sh.pending = true;
            sh.burst_since = self
                .held
                .iter()
                .map(|(_, f)| f.measurement.measurement_start_time.clone())
                .min();
            self.trigger.notify_one();
        }
        out
    }

    fn remember(&mut self, bad: bool) {
        self.recent.push_back(bad);
        while self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
    }

    /// Releases the held results: marked when an episode is on.
    fn release(&mut self, sh: &mut Shared) -> Vec<Finished> {
        if let Some(ep) = sh.current.as_mut() {
            if ep.pattern.is_none() {
                ep.pattern = common_failure(self.held.iter().map(|(_, f)| f));
            }
        }
        let mut out = Vec::new();
        for (_, mut f) in std::mem::take(&mut self.held) {
            if let Some(ep) = sh.current.as_mut() {
                mark(&mut f, ep);
            }
            out.push(f);
        }
        out
    }

    /// At the end of the run: waits for a check still running (at most
    /// `wait`), stops the checks, and returns what is still held.
    pub async fn finish(&mut self, wait: Duration) -> Vec<Finished> {
        if !self.enabled {
            return Vec::new();
        }
        let deadline = tokio::time::Instant::now() + wait;
        while lock(&self.shared).pending && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop_checks.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let shared = Arc::clone(&self.shared);
        let mut sh = lock(&shared);
        self.release(&mut sh)
    }

    /// Every episode of the run (the current one last).
    pub fn episodes(&self) -> Vec<Episode> {
        let sh = lock(&self.shared);
        let mut v = sh.done.clone();
        v.extend(sh.current.clone());
        v
    }

    /// Reference checks made during the run (the one before it aside).
    pub fn checks(&self) -> u64 {
        lock(&self.shared).checks
    }

    /// True when an episode stopped the run.
    pub fn stopped(&self) -> bool {
        lock(&self.shared).stop
    }
}

/// The check before the run. `Ok(report)` to go on (with the report when
/// one was made); `Err(episode)` when the network is intercepted and the
/// run must not start (unattended, or the volunteer said no) — the message
/// has been printed.
pub async fn before_run(
    ctx: Arc<UrlContext>,
    urls: &[String],
    lang: Lang,
) -> Result<Option<CheckReport>, Episode> {
    if urls.is_empty() {
        return Ok(None);
    }
    let at = ctx
        .clock
        .as_ref()
        .map_or_else(OffsetDateTime::now_utc, |(c, _)| c.now());
    let report = netcheck::check(ctx, urls, at).await;
    if !report.network_wide() {
        return Ok(Some(report));
    }
    let since = utc_string(report.at);
    eprintln!(
        "{}",
        strings::network_wide_message(
            lang,
            since.get(11..16).unwrap_or(&since),
            report.portal().as_deref()
        )
    );
    for l in report.lines() {
        eprintln!("  {l}");
    }
    if interactive()
        && tokio::task::spawn_blocking(move || ask_continue(lang))
            .await
            .unwrap_or(false)
    {
        return Ok(Some(report));
    }
    eprintln!("{}", strings::network_wide_stopping(lang));
    Err(Episode {
        since,
        portal: report.portal(),
        references: report.lines(),
        before_run: true,
        ..Episode::default()
    })
}

/// Records a check's result; returns true when an episode starts now.
fn apply(shared: &Mutex<Shared>, report: &CheckReport) -> bool {
    let mut sh = lock(shared);
    let burst_since = sh.burst_since.take();
    sh.pending = false;
    sh.generation += 1;
    sh.checks += 1;
    let wide = report.network_wide();
    match (&mut sh.current, wide) {
        (None, true) => {
            sh.current = Some(Episode {
                since: burst_since.unwrap_or_else(|| utc_string(report.at)),
                portal: report.portal(),
                references: report.lines(),
                ..Episode::default()
            });
            true
        }
        (Some(ep), true) => {
            if ep.portal.is_none() {
                ep.portal = report.portal();
            }
            false
        }
        (Some(_), false) => {
            if let Some(mut ep) = sh.current.take() {
                ep.until = Some(utc_string(report.at));
                sh.done.push(ep);
            }
            false
        }
        (None, false) => false,
    }
}

/// An episode started during the run: say so; stop unattended runs, ask
/// interactive ones.
async fn react(shared: &Arc<Mutex<Shared>>, r: &Reaction, report: &CheckReport) {
    let (since, portal) = {
        let sh = lock(shared);
        let ep = sh.current.clone().unwrap_or_default();
        (ep.since_hhmm().to_string(), ep.portal)
    };
    eprintln!(
        "{}",
        strings::network_wide_message(r.lang, &since, portal.as_deref())
    );
    for l in report.lines() {
        eprintln!("  {l}");
    }
    let go_on = if r.interactive {
        let lang = r.lang;
        tokio::task::spawn_blocking(move || ask_continue(lang))
            .await
            .unwrap_or(false)
    } else {
        false
    };
    if !go_on {
        eprintln!("{}", strings::network_wide_stopping(r.lang));
        lock(shared).stop = true;
        r.cancel.cancel();
    }
}

/// Asks on the terminal whether to measure on; false unless accepted.
pub fn ask_continue(lang: Lang) -> bool {
    use std::io::{BufRead, Write};
    eprint!("{}", strings::network_wide_prompt(lang));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    strings::is_acceptance(&answer) || answer.trim().eq_ignore_ascii_case("y")
}

/// True when stdin and stderr are a terminal (someone can answer).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// A result that did not load as the control saw it.
fn is_bad(f: &Finished) -> bool {
    !matches!(
        f.measurement.test_keys.x_verdict.as_ref().map(|v| v.status),
        Some(VerdictStatus::Accessible | VerdictStatus::Throttled)
    )
}

/// How one failing result ended, to compare unrelated sites: a redirect
/// off the site (its host), the final page (its title), or the failure.
fn failure_signature(m: &crate::model::Measurement) -> Option<String> {
    if let Some(p) = netcheck::portal_of(m).filter(|p| p.starts_with("a redirect to ")) {
        return Some(p);
    }
    if let Some(t) = m
        .test_keys
        .requests
        .first()
        .and_then(|tx| tx.response.x_title.clone())
        .filter(|t| !t.is_empty())
    {
        return Some(format!("the page \"{t}\""));
    }
    m.test_keys
        .http_experiment_failure
        .clone()
        .or_else(|| m.test_keys.dns_experiment_failure.clone())
        .map(|f| format!("the failure {f}"))
}

/// The answer most failing results share, when at least two and most of
/// them share one.
fn common_failure<'a>(held: impl Iterator<Item = &'a Finished>) -> Option<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut n = 0;
    for f in held {
        n += 1;
        if let Some(sig) = failure_signature(&f.measurement) {
            *counts.entry(sig).or_default() += 1;
        }
    }
    let (sig, k) = counts.into_iter().max_by_key(|(_, k)| *k)?;
    (k >= 2 && k * 2 > n).then(|| format!("{k} of {n} failing sites got the same answer: {sig}"))
}

/// The evidence sentence of an episode.
pub fn sentence(ep: &Episode) -> String {
    let mut s = format!(
        "network-wide interception (captive portal, walled garden, or the connection stopped working) from {} UTC",
        ep.since_hhmm()
    );
    if let Some(p) = &ep.portal {
        s.push_str(&format!(": {p}"));
    }
    if let Some(p) = &ep.pattern {
        s.push_str(&format!("; {p}"));
    }
    s.push_str(
        "; the reference targets failed the same way, so this is not evidence about this site",
    );
    s
}

/// Marks one result of an episode: the verdict becomes `inconclusive`
/// (the original kept in `x_network_interception`), the classic keys are
/// cleared. Results that loaded are left alone.
fn mark(f: &mut Finished, ep: &mut Episode) {
    let tk = &mut f.measurement.test_keys;
    let old = tk.x_verdict.clone().unwrap_or_default();
    if matches!(
        old.status,
        VerdictStatus::Accessible | VerdictStatus::Throttled
    ) {
        return;
    }
    ep.marked += 1;
    let note = NetworkNote {
        since: ep.since.clone(),
        portal: ep.portal.clone(),
        references: ep.references.clone(),
        original_status: old.status.as_str().to_string(),
        original_mechanism: old.mechanism.clone(),
    };
    let mut evidence = vec![sentence(ep)];
    evidence.extend(old.evidence);
    let v = Verdict {
        status: VerdictStatus::Inconclusive,
        evidence,
        ..Verdict::default()
    };
    tk.x_verdict = Some(v.clone());
    tk.blocking = Blocking::Undecided;
    tk.accessible = None;
    tk.x_network_interception = Some(note.clone());
    if let Some(j) = f.json.get_mut("test_keys").and_then(|t| t.as_object_mut()) {
        j.insert(
            "x_verdict".into(),
            serde_json::to_value(&v).unwrap_or_default(),
        );
        j.insert("blocking".into(), serde_json::Value::Null);
        j.insert("accessible".into(), serde_json::Value::Null);
        j.insert(
            "x_network_interception".into(),
            serde_json::to_value(&note).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Measurement;
    use netcheck::{RefResult, RefStatus};

    fn fin(i: usize, status: VerdictStatus) -> Finished {
        let mut m = Measurement {
            input: Some(format!("http://s{i}.example/")),
            measurement_start_time: format!("2026-12-07 05:{i:02}:00"),
            ..Measurement::default()
        };
        m.test_keys.x_verdict = Some(Verdict {
            status,
            mechanism: (status == VerdictStatus::Blocked).then(|| "dns.nxdomain".to_string()),
            ..Verdict::default()
        });
        m.test_keys.blocking = Blocking::Dns;
        let json = serde_json::to_value(&m).unwrap();
        Finished {
            measurement: m,
            json,
        }
    }

    fn report(status: RefStatus) -> CheckReport {
        CheckReport {
            at: time::macros::datetime!(2026-12-07 05:30:00 UTC),
            refs: vec![RefResult {
                url: "http://ref.example/".into(),
                status,
                line: "reference http://ref.example/: ...".into(),
                portal: (status == RefStatus::Intercepted)
                    .then(|| "a redirect to wifi.example".into()),
            }],
        }
    }

    fn watch() -> NetWatch {
        let mut w = NetWatch::disabled();
        w.enabled = true;
        w
    }

    fn marked(f: &Finished) -> bool {
        f.json["test_keys"]["x_network_interception"].is_object()
    }

    #[test]
    fn a_burst_is_held_until_a_check_marks_it() {
        use VerdictStatus::{Accessible, Blocked};
        let mut w = watch();
        for i in 0..3 {
            assert_eq!(w.finished(fin(i, Accessible)).len(), 1);
        }
        for i in 3..9 {
            assert!(w.finished(fin(i, Blocked)).is_empty(), "held back");
        }
        assert!(
            lock(&w.shared).pending,
            "the sixth failure asks for a check"
        );
        assert!(apply(&w.shared, &report(RefStatus::Intercepted)));
        let out = w.finished(fin(9, Accessible));
        assert_eq!(out.len(), 7);
        assert!(out[..6].iter().all(marked));
        assert!(!marked(&out[6]), "a page that loaded is left alone");
        let m = &out[0];
        assert_eq!(m.json["test_keys"]["x_verdict"]["status"], "inconclusive");
        assert!(m.json["test_keys"]["blocking"].is_null());
        assert_eq!(
            m.json["test_keys"]["x_network_interception"]["original_mechanism"],
            "dns.nxdomain"
        );
        let ev = m.json["test_keys"]["x_verdict"]["evidence"][0]
            .as_str()
            .unwrap();
        assert!(
            ev.starts_with("network-wide interception (captive portal, walled garden, or the connection stopped working) from 05:03 UTC: a redirect to wifi.example"),
            "{ev}"
        );
        // Later failures are marked at once; after a clear check, no more.
        assert!(marked(&w.finished(fin(10, Blocked))[0]));
        assert!(!apply(&w.shared, &report(RefStatus::Fine)));
        let out = w.finished(fin(11, Blocked));
        assert_eq!(out.len(), 1);
        assert!(!marked(&out[0]));
        let eps = w.episodes();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].marked, 7);
        assert_eq!(eps[0].since, "2026-12-07 05:03:00");
        assert_eq!(eps[0].until.as_deref(), Some("2026-12-07 05:30:00"));
    }

    #[test]
    fn the_twin_is_released_unchanged_and_checked_less_often() {
        use VerdictStatus::Blocked;
        let mut w = watch();
        for i in 0..6 {
            assert!(w.finished(fin(i, Blocked)).is_empty());
        }
        assert!(!apply(&w.shared, &report(RefStatus::Fine)));
        let out = w.finished(fin(6, Blocked));
        assert_eq!(out.len(), 7);
        assert!(out.iter().all(|f| !marked(f)));
        assert!(out
            .iter()
            .all(|f| f.json["test_keys"]["x_verdict"]["status"] == "blocked"));
        // The quiet stretch: the next 7 failures are written at once.
        for i in 7..14 {
            assert_eq!(w.finished(fin(i, Blocked)).len(), 1);
            assert!(!lock(&w.shared).pending);
        }
        assert!(w.episodes().is_empty());
    }

    #[test]
    fn failures_that_are_no_burst_are_written_once_out_of_the_window() {
        use VerdictStatus::{Accessible, Blocked};
        let mut w = watch();
        assert!(w.finished(fin(0, Blocked)).is_empty());
        let mut written = 0;
        for i in 1..WINDOW {
            written += w.finished(fin(i, Accessible)).len();
        }
        assert_eq!(written, WINDOW - 1);
        let out = w.finished(fin(WINDOW, Accessible));
        assert_eq!(out.len(), 2, "the old failure leaves with this result");
        assert!(!lock(&w.shared).pending);
    }
}
