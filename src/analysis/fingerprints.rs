//! Blocking fingerprints in OONI's `ooni/blocking-fingerprints` CSV format.
//!
//! Two files, `fingerprints_dns.csv` and `fingerprints_http.csv`, with the
//! columns `name, scope, other_names, location_found, pattern_type, pattern,
//! confidence_no_fp, expected_countries, source, exp_url, notes` (columns are
//! found by their header names; only `name`, `scope`, `location_found`,
//! `pattern_type` and `pattern` are required).
//!
//! - DNS fingerprints (`location_found = dns`) match an answer (an IP address
//!   or a CNAME target) by equality, as OONI's fastpath does.
//! - HTTP fingerprints match the body (`body`) or one header
//!   (`header.<name>`), with `full`, `prefix`, `contains` or `regexp`.
//! - Scope `fp` marks a *known false positive*: a match counts against
//!   blocking (a CAPTCHA, a parked-domain page), never for it.
//!
//! We ship our own small set (the CSVs next to this file, embedded at build
//! time): Cambodia's documented artifacts and a few generic server-side
//! pages. [`Fingerprints::load_dir`] adds a user's files to it.

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;

/// Our DNS fingerprints (OONI's format).
const SHIPPED_DNS: &str = include_str!("fingerprints/fingerprints_dns.csv");
/// Our HTTP fingerprints (OONI's format).
const SHIPPED_HTTP: &str = include_str!("fingerprints/fingerprints_http.csv");

/// Body bytes searched for fingerprints. Blockpages are small; a pattern
/// found deep inside a large page is more likely the page's own text (and
/// searching 1,700 OONI patterns through 512 KiB bodies costs time).
pub const BODY_SCAN_LIMIT: usize = 64 * 1024;

/// A set of DNS and HTTP blocking fingerprints.
#[derive(Clone, Debug, Default)]
pub struct Fingerprints {
    /// DNS fingerprints (answers matched by equality).
    pub dns: Vec<Fingerprint>,
    /// HTTP fingerprints (body or header).
    pub http: Vec<Fingerprint>,
}

/// One fingerprint row.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    /// Unique name, e.g. `ooni.kh_dns_1`.
    pub name: String,
    /// `nat`, `isp`, `prod`, `inst`, `vbw`, `fp`, ... (lower-case).
    pub scope: String,
    /// Where the pattern is looked for.
    pub location: Location,
    /// How the pattern is compared.
    pub pattern: Pattern,
    /// Upper-case country codes where the artifact is known (may be empty).
    pub expected_countries: Vec<String>,
    /// `file:line` the row came from, for messages.
    pub origin: String,
}

/// `location_found`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A DNS answer.
    Dns,
    /// The HTTP body.
    Body,
    /// One HTTP header, by lower-case name.
    Header(String),
}

/// `pattern_type` with its pattern.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// The whole value equals the pattern.
    Full(String),
    /// The value starts with the pattern.
    Prefix(String),
    /// The value contains the pattern.
    Contains(String),
    /// The value matches the regular expression.
    Regexp(Regex),
}

/// A fingerprint that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintMatch {
    /// The fingerprint's name.
    pub name: String,
    /// Its scope.
    pub scope: String,
    /// True when the match confirms blocking by OONI's rule: the probe's
    /// country is expected, or the scope is `isp` or `nat`.
    pub confirmed: bool,
    /// True for scope `fp` (a known false positive: evidence *against*
    /// blocking).
    pub false_positive: bool,
}

/// Why a fingerprint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row (or the header) is malformed.
    #[error("{origin}: {reason}")]
    Malformed {
        /// `file:line`.
        origin: String,
        /// What was wrong.
        reason: String,
    },
    /// The directory holds neither `fingerprints_dns.csv` nor
    /// `fingerprints_http.csv`.
    #[error("{0}: no fingerprints_dns.csv or fingerprints_http.csv in this directory")]
    Empty(PathBuf),
}

impl Fingerprints {
    /// Our shipped set.
    pub fn shipped() -> Fingerprints {
        let mut f = Fingerprints::default();
        f.add_csv(SHIPPED_DNS, "fingerprints_dns.csv (shipped)")
            .expect("the shipped DNS fingerprints parse");
        f.add_csv(SHIPPED_HTTP, "fingerprints_http.csv (shipped)")
            .expect("the shipped HTTP fingerprints parse");
        f
    }

    /// The shipped set plus `fingerprints_dns.csv` and/or
    /// `fingerprints_http.csv` from `dir` (OONI's repository layout). A row
    /// with the name of a shipped one replaces it.
    pub fn load_dir(dir: &Path) -> Result<Fingerprints, FingerprintError> {
        let mut f = Fingerprints::shipped();
        let mut found = false;
        for file in ["fingerprints_dns.csv", "fingerprints_http.csv"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            found = true;
            let text = std::fs::read_to_string(&path).map_err(|source| FingerprintError::Io {
                path: path.clone(),
                source,
            })?;
            f.add_csv(&text, &path.display().to_string())?;
        }
        if !found {
            return Err(FingerprintError::Empty(dir.to_path_buf()));
        }
        Ok(f)
    }

    /// Parses CSV text in OONI's format and adds its rows (DNS rows to
    /// [`Fingerprints::dns`], the others to [`Fingerprints::http`]). `file`
    /// names the source in error messages.
    pub fn add_csv(&mut self, text: &str, file: &str) -> Result<(), FingerprintError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::Headers)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| FingerprintError::Malformed {
                origin: format!("{file}:1"),
                reason: e.to_string(),
            })?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let required = ["name", "scope", "location_found", "pattern_type", "pattern"];
        let mut idx = Vec::new();
        for name in required {
            idx.push(col(name).ok_or_else(|| FingerprintError::Malformed {
                origin: format!("{file}:1"),
                reason: format!("missing column `{name}`"),
            })?);
        }
        let countries_col = col("expected_countries");
        for rec in rdr.records() {
            let rec = rec.map_err(|e| FingerprintError::Malformed {
                origin: format!(
                    "{file}:{}",
                    e.position().map(|p| p.line()).unwrap_or_default()
                ),
                reason: e.to_string(),
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or_default();
            let origin = format!("{file}:{line}");
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let get = |i: usize| rec.get(idx[i]).unwrap_or("").trim();
            let fp = parse_row(
                get(0),
                get(1),
                get(2),
                get(3),
                rec.get(idx[4]).unwrap_or(""),
                countries_col.and_then(|c| rec.get(c)).unwrap_or(""),
                &origin,
            )?;
            let list = if fp.location == Location::Dns {
                &mut self.dns
            } else {
                &mut self.http
            };
            list.retain(|old| old.name != fp.name);
            list.push(fp);
        }
        Ok(())
    }

    /// DNS fingerprints matching one answer (an IP address in text form or a
    /// CNAME target).
    pub fn match_dns(&self, answer: &str, probe_cc: &str) -> Vec<FingerprintMatch> {
        let answer = answer.trim_end_matches('.');
        self.dns
            .iter()
            .filter(|f| f.pattern.matches(answer))
            .map(|f| f.to_match(probe_cc))
            .collect()
    }

    /// HTTP fingerprints matching a response: `body` (as text; only its
    /// first [`BODY_SCAN_LIMIT`] bytes are searched) and `headers`
    /// (lower-case names, first value).
    pub fn match_http(
        &self,
        body: &str,
        headers: &std::collections::BTreeMap<String, String>,
        probe_cc: &str,
    ) -> Vec<FingerprintMatch> {
        let mut end = body.len().min(BODY_SCAN_LIMIT);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        let body = &body[..end];
        self.http
            .iter()
            .filter(|f| match &f.location {
                Location::Body => f.pattern.matches(body),
                Location::Header(h) => headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(h))
                    .is_some_and(|(_, v)| f.pattern.matches(v)),
                Location::Dns => false,
            })
            .map(|f| f.to_match(probe_cc))
            .collect()
    }
}

impl Fingerprint {
    fn to_match(&self, probe_cc: &str) -> FingerprintMatch {
        let cc = probe_cc.to_ascii_uppercase();
        FingerprintMatch {
            name: self.name.clone(),
            scope: self.scope.clone(),
            confirmed: self.scope != "fp"
                && (matches!(self.scope.as_str(), "isp" | "nat")
                    || self.expected_countries.contains(&cc)),
            false_positive: self.scope == "fp",
        }
    }
}

impl Pattern {
    /// True when `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Full(p) => value == p,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Contains(p) => value.contains(p.as_str()),
            Pattern::Regexp(r) => r.is_match(value),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dns => f.write_str("dns"),
            Location::Body => f.write_str("body"),
            Location::Header(h) => write!(f, "header.{h}"),
        }
    }
}

fn parse_row(
    name: &str,
    scope: &str,
    location: &str,
    pattern_type: &str,
    pattern: &str,
    countries: &str,
    origin: &str,
) -> Result<Fingerprint, FingerprintError> {
    let bad = |reason: String| FingerprintError::Malformed {
        origin: origin.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty `name`".into()));
    }
    if scope.is_empty() {
        return Err(bad(format!("{name}: empty `scope`")));
    }
    if pattern.is_empty() {
        return Err(bad(format!("{name}: empty `pattern`")));
    }
    let location = match location.to_ascii_lowercase().as_str() {
        "dns" => Location::Dns,
        "body" => Location::Body,
        l => match l.strip_prefix("header.") {
            Some(h) if !h.is_empty() => Location::Header(h.to_string()),
            _ => {
                return Err(bad(format!(
                    "{name}: `location_found` must be dns, body or header.<name>, not `{location}`"
                )))
            }
        },
    };
    let p = pattern.to_string();
    let pattern = match pattern_type.to_ascii_lowercase().as_str() {
        "full" => Pattern::Full(p),
        "prefix" => Pattern::Prefix(p),
        "contains" => Pattern::Contains(p),
        "regexp" => Pattern::Regexp(
            Regex::new(pattern).map_err(|e| bad(format!("{name}: bad regexp: {e}")))?,
        ),
        other => {
            return Err(bad(format!(
                "{name}: `pattern_type` must be full, prefix, contains or regexp, not `{other}`"
            )))
        }
    };
    let expected_countries = countries
        .split([',', ' ', ';'])
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .collect();
    Ok(Fingerprint {
        name: name.to_string(),
        scope: scope.to_ascii_lowercase(),
        location,
        pattern,
        expected_countries,
        origin: origin.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const HEADER: &str = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n";

    #[test]
    fn shipped_set_has_cambodian_artifacts() {
        let f = Fingerprints::shipped();
        let m = f.match_dns("36.37.242.94", "KH");
        assert_eq!(m.len(), 1);
        assert!(m[0].confirmed, "isp scope confirms");
        let m = f.match_dns("10.10.10.1", "KH");
        assert_eq!(m.len(), 1);
        assert!(m[0].confirmed, "expected country KH confirms");
        let body = "<html><head><title>ERROR: Forbidden</title></head> \n<body><h2>ERROR: Forbidden</h2></body>";
        let m = f.match_http(body, &BTreeMap::new(), "KH");
        assert!(m.iter().any(|m| !m.false_positive));
        let m = f.match_http("<title>Just a moment...</title>", &BTreeMap::new(), "KH");
        assert!(m.iter().all(|m| m.false_positive) && !m.is_empty());
        assert!(f.match_dns("203.0.113.7", "KH").is_empty());
    }

    #[test]
    fn pattern_types_and_headers() {
        let mut f = Fingerprints::default();
        let csv = format!(
            "{HEADER}t.full,isp,,header.server,full,BlockServer,5,XX,,,\n\
             t.prefix,nat,,header.location,prefix,http://block.example/,5,,,,\n\
             t.re,prod,,body,regexp,blocked by order [0-9]+,5,\"KH,TH\",,,\n"
        );
        f.add_csv(&csv, "t.csv").unwrap();
        let mut h = BTreeMap::new();
        h.insert("Server".to_string(), "BlockServer".to_string());
        assert_eq!(f.match_http("", &h, "KH")[0].name, "t.full");
        h.clear();
        h.insert("location".into(), "http://block.example/?u=x".into());
        assert_eq!(f.match_http("", &h, "KH")[0].name, "t.prefix");
        let m = f.match_http("this page is blocked by order 12", &BTreeMap::new(), "TH");
        assert!(m[0].confirmed);
        let m = f.match_http("this page is blocked by order 12", &BTreeMap::new(), "VN");
        assert!(!m[0].confirmed);
    }

    #[test]
    fn only_the_start_of_a_body_is_searched() {
        let f = Fingerprints::shipped();
        let deep = format!("{}<title>Just a moment...</title>", "é".repeat(40_000));
        assert!(f.match_http(&deep, &BTreeMap::new(), "KH").is_empty());
        let near = format!("{}<title>Just a moment...</title>", "é".repeat(1_000));
        assert_eq!(f.match_http(&near, &BTreeMap::new(), "KH").len(), 1);
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let mut f = Fingerprints::default();
        let csv = format!("{HEADER}ok,isp,,dns,full,192.0.2.1,5,,,,\nbad,isp,,dns,fuzzy,x,5,,,,\n");
        let e = f.add_csv(&csv, "x/fingerprints_dns.csv").unwrap_err();
        assert!(
            e.to_string().starts_with("x/fingerprints_dns.csv:3:"),
            "{e}"
        );
        let e = f
            .add_csv("name,scope\nx,isp\n", "y.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("y.csv:1") && e.contains("location_found"), "{e}");
        let csv = format!("{HEADER}r,isp,,body,regexp,([,5,,,,\n");
        let e = f.add_csv(&csv, "z.csv").unwrap_err().to_string();
        assert!(e.starts_with("z.csv:2:") && e.contains("regexp"), "{e}");
    }

    #[test]
    fn load_dir_merges_with_shipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fingerprints_dns.csv"),
            format!("{HEADER}mine,isp,,dns,full,192.0.2.99,5,KH,,,\n"),
        )
        .unwrap();
        let f = Fingerprints::load_dir(dir.path()).unwrap();
        assert_eq!(f.match_dns("192.0.2.99", "KH")[0].name, "mine");
        assert_eq!(f.match_dns("36.37.242.94", "KH").len(), 1);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Fingerprints::load_dir(empty.path()),
            Err(FingerprintError::Empty(_))
        ));
    }
}
