//! Exit codes shared by every subcommand, and how an error reaches the
//! user: usage errors (a missing or malformed flag, a file that is not
//! there) exit 2 as they do for `gatewatch run`; anything else exits 1.
//! An error's causes are printed once each, never twice.

/// Usage error: bad flags, or an input that is missing or not usable.
pub const EXIT_USAGE: u8 = 2;
/// Any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// The exit code for an error that reached `main`.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use crate::compare::CompareError;
    use crate::history::HistoryError;
    use crate::schedule::ScheduleError;
    use crate::upload::UploadError;
    let usage = e
        .downcast_ref::<crate::runs::RunsError>()
        .is_some_and(|r| r.is_usage())
        || match e.downcast_ref::<ScheduleError>() {
            Some(s) => s.is_usage(),
            None => false,
        }
        || matches!(
            e.downcast_ref::<UploadError>(),
            Some(UploadError::NoCollector)
        )
        || matches!(
            e.downcast_ref::<HistoryError>(),
            Some(HistoryError::BadDate(_) | HistoryError::NoDatabase(_))
        )
        || matches!(
            e.downcast_ref::<CompareError>(),
            Some(CompareError::LabelCount { .. } | CompareError::DuplicateLabel(_))
        )
        || matches!(
            e.downcast_ref::<crate::report::ReportError>(),
            Some(crate::report::ReportError::Input(
                CompareError::LabelCount { .. } | CompareError::DuplicateLabel(_)
            ))
        );
    if usage {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message already contains (so `cannot open F: No such file` is not
/// followed by the same `No such file` again).
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(crate::results::ResultsError::Open {
            path: "x.jsonl".into(),
            source: io,
        });
        let m = message(&e);
        assert_eq!(m.matches("not found").count(), 1, "{m}");
        assert!(m.starts_with("cannot open x.jsonl: "), "{m}");
        let outer = anyhow::anyhow!("inner detail").context("outer");
        assert_eq!(message(&outer), "outer: inner detail");
    }

    #[test]
    fn usage_errors_exit_2_others_1() {
        let e = anyhow::Error::new(crate::upload::UploadError::NoCollector);
        assert_eq!(exit_code(&e), EXIT_USAGE);
        let e = anyhow::Error::new(crate::schedule::ScheduleError::NoScope);
        assert_eq!(exit_code(&e), EXIT_USAGE);
        let e = anyhow::anyhow!("something else");
        assert_eq!(exit_code(&e), EXIT_FAILURE);
    }
}
