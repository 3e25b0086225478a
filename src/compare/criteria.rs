//! The attribution vocabulary: a criterion, which way it leans, and the
//! tally. Plain data, read by `summary` (which carries it) and `report`,
//! filled in by `attribution` (which reads the summary): it depends on no
//! step, so neither of them depends on the other through it.

use std::collections::BTreeMap;

use serde::Serialize;

/// Which way a criterion's evidence points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leaning {
    /// What a shared, central gateway would produce.
    Gateway,
    /// What independent ISP-level blocking would produce.
    Isp,
    /// Some of each.
    Mixed,
    /// Data present but not enough to lean either way.
    Inconclusive,
    /// The inputs hold nothing for this criterion.
    NotMeasured,
}

impl Leaning {
    /// A short phrase.
    pub fn describe(self) -> &'static str {
        match self {
            Leaning::Gateway => "consistent with a central gateway",
            Leaning::Isp => "consistent with ISP-level blocking",
            Leaning::Mixed => "mixed",
            Leaning::Inconclusive => "inconclusive",
            Leaning::NotMeasured => "not measured",
        }
    }
}

/// One criterion.
#[derive(Clone, Debug, Serialize)]
pub struct Criterion {
    /// Stable identifier (`blocklist_consistency`, ...).
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// What a central gateway would produce.
    pub gateway_expectation: &'static str,
    /// What ISP-level blocking would produce.
    pub isp_expectation: &'static str,
    /// Which way the evidence points.
    pub leaning: Leaning,
    /// The observations, as sentences.
    pub evidence: Vec<String>,
}

/// All criteria and their tally.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attribution {
    /// Criterion by criterion.
    pub criteria: Vec<Criterion>,
    /// How many criteria lean each way.
    pub tally: BTreeMap<String, usize>,
    /// What the tally means and does not mean.
    pub notes: Vec<String>,
}
