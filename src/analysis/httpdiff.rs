//! Comparing the probe's final page with the control's: OONI LTE's four
//! classic keys, and our "same site?" judgement that survives dynamic and
//! client-dependent pages.

use std::collections::BTreeSet;

use probes::records::HttpTransaction;

use crate::control::protocol::ControlHttp;

use super::observe;

/// Header names too common to show that two responses came from the same
/// server: OONI's 25, plus the framing headers every HTTP/1.1 response may
/// carry (`content-length`, `connection`, `transfer-encoding`, `keep-alive`),
/// which would otherwise make any two pages "share" a header.
const COMMON_HEADERS: [&str; 29] = [
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "date",
    "content-type",
    "server",
    "cache-control",
    "vary",
    "set-cookie",
    "location",
    "expires",
    "x-powered-by",
    "content-encoding",
    "last-modified",
    "accept-ranges",
    "pragma",
    "x-frame-options",
    "etag",
    "x-content-type-options",
    "age",
    "via",
    "p3p",
    "x-xss-protection",
    "content-language",
    "cf-ray",
    "strict-transport-security",
    "link",
    "x-varnish",
];

/// Body proportion above which lengths "match" (OONI).
pub const BODY_PROPORTION_MATCH: f64 = 0.7;

/// The classic comparison of the probe's final response with the control's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Diff {
    /// min/max of the body lengths (null when unknown or truncated).
    pub body_proportion: Option<f64>,
    /// proportion > 0.7.
    pub body_length_match: Option<bool>,
    /// Equal codes; null when they differ and the control's is not 2xx.
    pub status_code_match: Option<bool>,
    /// A shared uncommon header name.
    pub headers_match: Option<bool>,
    /// No long title word on one side only.
    pub title_match: Option<bool>,
}

impl Diff {
    /// Compares a probe response with the control's HTTP result.
    pub fn compute(tx: &HttpTransaction, ctl: &ControlHttp) -> Diff {
        let mut d = Diff::default();
        let plen = observe::body_len(tx) as i64;
        if ctl.body_length > 0 && plen > 0 && !tx.response.body_is_truncated {
            let (a, b) = (plen.min(ctl.body_length), plen.max(ctl.body_length));
            let p = a as f64 / b as f64;
            d.body_proportion = Some(p);
            d.body_length_match = Some(p > BODY_PROPORTION_MATCH);
        }
        let (pc, cc) = (tx.response.code, ctl.status_code);
        d.status_code_match = if pc == cc {
            Some(true)
        } else if (200..300).contains(&cc) {
            Some(false)
        } else {
            None
        };
        d.headers_match = Some(shares_uncommon_header(tx, ctl));
        d.title_match = Some(titles_match(&observe::title_of(tx), &ctl.title));
        d
    }

    /// OONI's rule: no difference iff the status matches and the body
    /// length, an uncommon header or the title matches.
    pub fn same(&self) -> bool {
        self.status_code_match == Some(true)
            && (self.body_length_match == Some(true)
                || self.headers_match == Some(true)
                || self.title_match == Some(true))
    }
}

fn shares_uncommon_header(tx: &HttpTransaction, ctl: &ControlHttp) -> bool {
    let uncommon = |k: &String| {
        let k = k.to_ascii_lowercase();
        (!COMMON_HEADERS.contains(&k.as_str())).then_some(k)
    };
    let probe: BTreeSet<String> = tx.response.headers.keys().filter_map(uncommon).collect();
    ctl.headers
        .keys()
        .filter_map(uncommon)
        .any(|k| probe.contains(&k))
}

/// Long (≥ 5 characters) lower-case title words.
fn long_words(t: &str) -> BTreeSet<String> {
    t.split_whitespace()
        .filter(|w| w.chars().count() >= 5)
        .map(str::to_lowercase)
        .collect()
}

/// OONI LTE: no long word on one side only (two empty titles match).
pub(crate) fn titles_match(a: &str, b: &str) -> bool {
    long_words(a) == long_words(b)
}

/// True when the two responses name the same server software (a
/// non-empty, equal `Server` header): with the same status code, a page that
/// differs only in content (dates, ids, a local edition) came from the same
/// site.
pub(crate) fn same_server(tx: &HttpTransaction, ctl: &ControlHttp) -> bool {
    let get = |h: &std::collections::BTreeMap<String, String>| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("server"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    };
    matches!((get(&tx.response.headers), get(&ctl.headers)), (Some(a), Some(b)) if a == b)
}
