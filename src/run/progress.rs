//! Progress: an indicatif bar when stderr is a terminal (done/total,
//! anomalies so far, ETA), plain log lines every [`LOG_EVERY`] otherwise,
//! nothing with `--no-progress`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a non-terminal run logs a progress line.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Reports progress.
#[derive(Debug)]
pub struct Progress {
    kind: Kind,
    total: u64,
    done: u64,
    anomalies: u64,
    lang: super::strings::Lang,
    started: Instant,
}

#[derive(Debug)]
enum Kind {
    Bar(ProgressBar),
    Log { last: Instant },
    Silent,
}

impl Progress {
    /// Chooses the form from the terminal and `--no-progress`.
    pub fn new(total: u64, no_progress: bool, lang: super::strings::Lang) -> Progress {
        let kind = if no_progress {
            Kind::Silent
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {{msg}} {} {{eta}}",
                super::plainwords::progress_words(lang).2
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(format!("{}: 0", super::plainwords::progress_words(lang).1));
            bar.enable_steady_tick(Duration::from_millis(250));
            Kind::Bar(bar)
        } else {
            Kind::Log {
                last: Instant::now(),
            }
        };
        Progress {
            kind,
            total,
            done: 0,
            anomalies: 0,
            lang,
            started: Instant::now(),
        }
    }

    /// One URL finished.
    pub fn finished_one(&mut self, anomalous: bool) {
        self.done += 1;
        if anomalous {
            self.anomalies += 1;
        }
        match &mut self.kind {
            Kind::Bar(b) => {
                b.set_position(self.done);
                let word = super::plainwords::progress_words(self.lang).1;
                b.set_message(format!("{word}: {}", self.anomalies));
            }
            Kind::Log { last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!("gatewatch: {}", self.line());
                }
            }
            Kind::Silent => {}
        }
    }

    /// Removes the bar (the summary follows).
    pub fn finish(&mut self) {
        if let Kind::Bar(b) = &self.kind {
            b.finish_and_clear();
        }
    }

    fn line(&self) -> String {
        let words = super::plainwords::progress_words(self.lang);
        let eta = if self.done > 0 && self.total > self.done {
            let per = self.started.elapsed().as_secs_f64() / self.done as f64;
            let left = Duration::from_secs((per * (self.total - self.done) as f64) as u64);
            format!(", {} {}", words.2, humantime::format_duration(left))
        } else {
            String::new()
        };
        format!(
            "{}/{} {}, {} {}{eta}",
            self.done, self.total, words.0, self.anomalies, words.1
        )
    }
}
