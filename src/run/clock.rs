//! The probe's clock against a reference time.
//!
//! A Raspberry Pi without a real-time clock boots into the past after a
//! power cut; a wrong clock makes every certificate look expired or not yet
//! valid, and dates results in the wrong year. Before measuring, the run
//! asks the control for its time (our control's `x_time`, else the `Date`
//! header of its answer), or, without a control, reads the `Date` headers
//! of the reference targets' answers (see [`super::netcheck`]). The
//! difference is the offset: certificates are judged at the corrected time
//! (`WebSettings::clock_offset_secs`), every measurement records it
//! (`x_clock_offset`, `x_clock`) and its times are written corrected, with
//! the local readings kept. Beyond [`TOLERANCE_SECS`] the run warns.
//!
//! For tests, [`SKEW_ENV`] makes this machine's clock read wrong by the
//! given number of seconds (an injectable clock: the local readings and the
//! time certificates are judged at move together, as with a wrong system
//! clock).

use time::{Duration, OffsetDateTime};

use crate::control::client::ControlClient;
use crate::control::protocol::{ControlRequest, ControlResponse};
pub use crate::model::describe_offset;
use crate::model::{ClockNote, Measurement};

/// Testing aid: seconds to add to this machine's clock (negative: behind).
pub const SKEW_ENV: &str = "GATEWATCH_CLOCK_SKEW";

/// `source` when the run has no control to ask (`--control none`): an
/// unchecked clock matters less then (no control, no `tls.mitm`), so it is
/// only warned about when the sites' `Date` headers say it is off.
pub const NO_CONTROL: &str = "none (no control)";

/// An offset within this many seconds is the usual drift: no warning.
pub const TOLERANCE_SECS: i64 = 120;

/// This machine's clock (skewed by [`SKEW_ENV`] in tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalClock {
    skew_secs: i64,
}

impl LocalClock {
    /// The system clock, skewed by [`SKEW_ENV`] when it is set to a whole
    /// number of seconds.
    pub fn from_env() -> LocalClock {
        let skew_secs = std::env::var(SKEW_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        LocalClock { skew_secs }
    }

    /// A clock off by `skew_secs`.
    pub fn skewed(skew_secs: i64) -> LocalClock {
        LocalClock { skew_secs }
    }

    /// What this machine's clock reads now.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::seconds(self.skew_secs)
    }

    /// The seconds to add to the system clock so that certificates are
    /// judged at `local + offset` (the skew itself plus the correction).
    pub fn cert_offset(&self, offset: Option<i64>) -> i64 {
        self.skew_secs.saturating_add(offset.unwrap_or(0))
    }
}

/// The run's knowledge of the time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockState {
    /// This machine's clock.
    pub local: LocalClock,
    /// Reference minus local, seconds; `None` without a reference.
    pub offset: Option<i64>,
    /// Where the reference came from.
    pub source: String,
}

impl ClockState {
    /// No reference (yet).
    pub fn unknown(local: LocalClock) -> ClockState {
        ClockState {
            local,
            offset: None,
            source: "none".to_string(),
        }
    }

    /// True when the local clock is off by more than the tolerance.
    pub fn beyond_tolerance(&self) -> bool {
        self.offset.is_some_and(|o| o.abs() > TOLERANCE_SECS)
    }

    /// True when validity-window failures cannot be trusted: no reference,
    /// or a clock found off.
    pub fn in_doubt(&self) -> bool {
        self.offset.is_none() || self.beyond_tolerance()
    }

    /// The reference time for a local reading.
    pub fn corrected(&self, local: OffsetDateTime) -> OffsetDateTime {
        local + Duration::seconds(self.offset.unwrap_or(0))
    }

    /// The reference time now (the local clock when there is none).
    pub fn now(&self) -> OffsetDateTime {
        self.corrected(self.local.now())
    }

    /// Writes the corrected times into a measurement, keeping the local
    /// readings in `x_clock`. `local_start` is when its URL started by the
    /// local clock; `local_test_start` when the run did.
    pub fn stamp(
        &self,
        m: &mut Measurement,
        local_start: OffsetDateTime,
        local_test_start: OffsetDateTime,
    ) {
        m.measurement_start_time = super::measure::utc_string(self.corrected(local_start));
        m.test_start_time = super::measure::utc_string(self.corrected(local_test_start));
        m.x_clock_offset = self.offset;
        m.x_clock = Some(ClockNote {
            source: self.source.clone(),
            in_doubt: self.in_doubt(),
            local_measurement_start_time: super::measure::utc_string(local_start),
            local_test_start_time: super::measure::utc_string(local_test_start),
        });
    }
}

/// The clock in `--json-summary` and the printed summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClockSummary {
    /// Reference minus local, seconds (null: no reference).
    pub offset_seconds: Option<i64>,
    /// Where the reference came from.
    pub source: String,
    /// Off by more than the tolerance ([`TOLERANCE_SECS`]).
    pub beyond_tolerance: bool,
    /// The tolerance, seconds.
    pub tolerance_seconds: i64,
    /// What the `Date` headers of the run's first responses say (reference
    /// minus local, seconds; their median), when there were enough.
    pub date_headers_offset_seconds: Option<i64>,
}

impl ClockSummary {
    /// The warning to show, if any.
    pub fn warning(&self, lang: super::strings::Lang) -> Option<String> {
        let dates = self.date_headers_offset_seconds;
        match self.offset_seconds {
            None => match dates {
                Some(d) if d.abs() > TOLERANCE_SECS => Some(super::strings::clock_warning(
                    lang,
                    &describe_offset(d),
                    d > 0,
                    "Date headers of the sites' answers",
                )),
                _ if self.source == NO_CONTROL => None,
                _ => Some(super::strings::clock_unchecked(lang).to_string()),
            },
            Some(o) if self.beyond_tolerance => Some(super::strings::clock_warning(
                lang,
                &describe_offset(o),
                o > 0,
                &self.source,
            )),
            Some(_) => None,
        }
    }
}

impl ClockState {
    /// The summary form.
    pub fn summary(&self) -> ClockSummary {
        ClockSummary {
            offset_seconds: self.offset,
            source: self.source.clone(),
            beyond_tolerance: self.beyond_tolerance(),
            tolerance_seconds: TOLERANCE_SECS,
            date_headers_offset_seconds: None,
        }
    }
}

/// One reading of a reference clock, with the local readings around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The reference time.
    pub reference: OffsetDateTime,
    /// The local clock when the question was sent.
    pub local_before: OffsetDateTime,
    /// The local clock when the answer was in.
    pub local_after: OffsetDateTime,
}

impl Sample {
    /// Reference minus the local midpoint, whole seconds.
    pub fn offset(&self) -> i64 {
        let half: Duration = (self.local_after - self.local_before) / 2;
        let d: Duration = self.reference - (self.local_before + half);
        d.whole_seconds()
    }
}

/// The control's time in an answer and where it came from: our `x_time`,
/// else the HTTP `Date` header.
pub fn control_time(r: &ControlResponse) -> Option<(OffsetDateTime, &'static str)> {
    if let Some(t) = r
        .x_time
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
    {
        return Some((t, "control x_time"));
    }
    r.x_date_header
        .as_deref()
        .and_then(parse_http_date)
        .map(|t| (t, "control Date header"))
}

/// Parses an HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &f)
        .ok()
        .map(|t| t.assume_utc())
}

/// The `Date` headers of a measurement's HTTP answers.
pub fn response_dates(m: &Measurement) -> Vec<OffsetDateTime> {
    m.test_keys
        .requests
        .iter()
        .filter_map(|r| {
            r.response
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("date"))
                .and_then(|(_, v)| parse_http_date(v))
        })
        .collect()
}

/// The median offset of the samples (robust to one lying server).
pub fn median_offset(samples: &[Sample]) -> Option<i64> {
    let mut o: Vec<i64> = samples.iter().map(Sample::offset).collect();
    o.sort_unstable();
    o.get(o.len() / 2).copied()
}

/// Cross-checks the clock with the `Date` headers of the first responses
/// of the run (robust to a few liars: the median of up to [`DATE_SAMPLES`]).
#[derive(Clone, Debug, Default)]
pub struct DateWatch {
    samples: Vec<Sample>,
}

/// How many response `Date` headers the cross-check uses.
pub const DATE_SAMPLES: usize = 16;

impl DateWatch {
    /// Takes the `Date` headers of one finished measurement (its local
    /// window: the local start, plus its runtime).
    pub fn observe(&mut self, m: &Measurement) {
        if self.samples.len() >= DATE_SAMPLES {
            return;
        }
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let Some(start) = m
            .x_clock
            .as_ref()
            .and_then(|c| time::PrimitiveDateTime::parse(&c.local_measurement_start_time, &f).ok())
            .map(|t| t.assume_utc())
        else {
            return;
        };
        let end = start + Duration::seconds_f64(m.test_runtime.max(0.0)) + Duration::seconds(1);
        for d in response_dates(m) {
            if self.samples.len() < DATE_SAMPLES {
                self.samples.push(Sample {
                    reference: d,
                    local_before: start,
                    local_after: end,
                });
            }
        }
    }

    /// The median offset the `Date` headers say, once there are at least
    /// three.
    pub fn offset(&self) -> Option<i64> {
        (self.samples.len() >= 3)
            .then(|| median_offset(&self.samples))
            .flatten()
    }
}

/// Asks the control for its time (one query, for the control's own URL,
/// which reveals nothing) and works out the offset. Without a control, or
/// when it does not answer in time, the clock stays unchecked.
pub async fn check_control(local: LocalClock, control: Option<&ControlClient>) -> ClockState {
    let Some(c) = control else {
        return ClockState {
            source: NO_CONTROL.to_string(),
            ..ClockState::unknown(local)
        };
    };
    let req = ControlRequest {
        http_request: c.urls().first().cloned().unwrap_or_default(),
        ..ControlRequest::default()
    };
    let local_before = local.now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(15), c.query(&req)).await;
    let local_after = local.now();
    match answer {
        Ok(Ok(r)) => match control_time(&r) {
            Some((reference, source)) => ClockState {
                local,
                offset: Some(
                    Sample {
                        reference,
                        local_before,
                        local_after,
                    }
                    .offset(),
                ),
                source: source.to_string(),
            },
            None => ClockState::unknown(local),
        },
        _ => ClockState::unknown(local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(datetime!(1994-11-06 08:49:37 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn the_control_time_comes_from_x_time_then_date() {
        let mut r = ControlResponse {
            x_date_header: Some("Mon, 07 Dec 2026 04:00:00 GMT".into()),
            ..Default::default()
        };
        assert_eq!(
            control_time(&r),
            Some((datetime!(2026-12-07 04:00:00 UTC), "control Date header"))
        );
        r.x_time = Some("2026-12-07T04:00:05Z".into());
        assert_eq!(
            control_time(&r),
            Some((datetime!(2026-12-07 04:00:05 UTC), "control x_time"))
        );
    }

    #[test]
    fn offsets_use_the_midpoint_and_the_median() {
        let s = |reference, before, after| Sample {
            reference,
            local_before: before,
            local_after: after,
        };
        let a = s(
            datetime!(2026-12-07 04:00:00 UTC),
            datetime!(2025-11-01 04:00:00 UTC),
            datetime!(2025-11-01 04:00:02 UTC),
        );
        assert_eq!(a.offset(), 401 * 86_400 - 1);
        let near = s(
            datetime!(2026-12-07 04:00:00 UTC),
            datetime!(2026-12-07 04:00:00 UTC),
            datetime!(2026-12-07 04:00:00 UTC),
        );
        assert_eq!(median_offset(&[near, a, a]), Some(a.offset()));
        assert_eq!(median_offset(&[]), None);
    }

    #[test]
    fn stamps_corrected_times_and_keeps_the_local_ones() {
        let st = ClockState {
            local: LocalClock::default(),
            offset: Some(400 * 86_400),
            source: "control x_time".into(),
        };
        assert!(st.in_doubt());
        let mut m = Measurement::default();
        let local = datetime!(2025-11-02 10:00:00 UTC);
        st.stamp(&mut m, local, datetime!(2025-11-02 09:59:00 UTC));
        assert_eq!(m.measurement_start_time, "2026-12-07 10:00:00");
        assert_eq!(m.test_start_time, "2026-12-07 09:59:00");
        assert_eq!(m.x_clock_offset, Some(400 * 86_400));
        let note = m.x_clock.unwrap();
        assert_eq!(note.local_measurement_start_time, "2025-11-02 10:00:00");
        assert!(note.in_doubt);
        let fine = ClockState {
            offset: Some(30),
            ..st
        };
        assert!(!fine.in_doubt());
        assert_eq!(describe_offset(-400 * 86_400), "400 days");
    }

    #[test]
    fn date_headers_of_responses_cross_check_the_clock() {
        use probes::records::HttpTransaction;
        let mut w = DateWatch::default();
        let mut m = Measurement {
            test_runtime: 1.0,
            x_clock: Some(ClockNote {
                local_measurement_start_time: "2025-11-02 10:00:00".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut tx = HttpTransaction::default();
        tx.response
            .headers
            .insert("Date".into(), "Mon, 07 Dec 2026 10:00:01 GMT".into());
        m.test_keys.requests.push(tx);
        w.observe(&m);
        w.observe(&m);
        assert_eq!(w.offset(), None, "two are not enough");
        w.observe(&m);
        assert_eq!(w.offset(), Some(400 * 86_400));
        let s = ClockSummary {
            offset_seconds: None,
            source: NO_CONTROL.into(),
            date_headers_offset_seconds: w.offset(),
            ..Default::default()
        };
        let warn = s.warning(super::super::strings::Lang::En).unwrap();
        assert!(warn.contains("400 days behind"), "{warn}");
        let quiet = ClockSummary {
            date_headers_offset_seconds: Some(3),
            ..s
        };
        assert_eq!(quiet.warning(super::super::strings::Lang::En), None);
    }
}
