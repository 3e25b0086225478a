//! Reference checks: is the whole network intercepted?
//!
//! On café Wi-Fi before the portal's terms are accepted, on prepaid data
//! whose balance ran out, every site fails the same way. That is not
//! censorship of those sites. A check measures a few harmless reference
//! targets that no censor blocks — the control's own host over HTTP and
//! HTTPS, and neutral names (`http(s)://example.com/` unless `--reference`
//! says otherwise) — with the same web measurement and control comparison
//! as any URL. When most of them fail at the probe while the control sees
//! them (or no control answers and they fail anyway), the network is
//! intercepting everything. [`super::netwatch`] decides what that means
//! for the run's measurements.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::measure::UrlContext;
use crate::model::{Measurement, VerdictStatus};

/// Default interval between checks during a run.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Neutral reference targets besides the control's host: the IANA example
/// domain, which carries nothing anyone could find sensitive.
pub const NEUTRAL_REFERENCES: [&str; 2] = ["http://example.com/", "https://example.com/"];

/// The reference targets: `configured` (`none`: no checks), else the
/// control's host over HTTP and HTTPS plus [`NEUTRAL_REFERENCES`].
pub fn reference_urls(configured: &[String], control_urls: &[String]) -> Vec<String> {
    if configured.iter().any(|r| r.eq_ignore_ascii_case("none")) {
        return Vec::new();
    }
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut out = Vec::new();
    if let Some(host) = control_urls
        .first()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
    {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        out.push(format!("http://{host}/"));
        out.push(format!("https://{host}/"));
    }
    out.extend(NEUTRAL_REFERENCES.iter().map(|s| s.to_string()));
    out
}

/// What one reference target showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefStatus {
    /// It loaded as the control saw it.
    Fine,
    /// It was tampered with at the probe (the control saw it).
    Intercepted,
    /// It failed at the probe and there is nothing to compare with.
    Failed,
    /// Down for the control too, or nothing measured: counts neither way.
    Unknown,
}

/// One reference target's result.
#[derive(Clone, Debug)]
pub struct RefResult {
    /// The URL.
    pub url: String,
    /// What it showed.
    pub status: RefStatus,
    /// One line for people and for the evidence.
    pub line: String,
    /// The portal recognised in its answer, if any.
    pub portal: Option<String>,
}

/// One check of every reference target.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// When the check started (reference time).
    pub at: OffsetDateTime,
    /// Per target.
    pub refs: Vec<RefResult>,
}

impl CheckReport {
    /// True when most reference targets (that could be judged) failed or
    /// were tampered with at the probe.
    pub fn network_wide(&self) -> bool {
        let bad = self
            .refs
            .iter()
            .filter(|r| matches!(r.status, RefStatus::Intercepted | RefStatus::Failed))
            .count();
        let judged = bad
            + self
                .refs
                .iter()
                .filter(|r| r.status == RefStatus::Fine)
                .count();
        judged > 0 && bad * 2 > judged
    }

    /// The first portal recognised.
    pub fn portal(&self) -> Option<String> {
        self.refs.iter().find_map(|r| r.portal.clone())
    }

    /// One line per target.
    pub fn lines(&self) -> Vec<String> {
        self.refs.iter().map(|r| r.line.clone()).collect()
    }
}

/// Measures every reference target at once (each as a URL of the run:
/// web measurement, control, analysis) and judges them.
pub async fn check(ctx: Arc<UrlContext>, urls: &[String], at: OffsetDateTime) -> CheckReport {
    let mut set = tokio::task::JoinSet::new();
    for (i, u) in urls.iter().enumerate() {
        let ctx = Arc::clone(&ctx);
        let u = u.clone();
        set.spawn(async move {
            let keys = tokio::time::timeout(
                ctx.web.url_deadline + Duration::from_secs(5),
                crate::web::measure(&u, &ctx.web, ctx.control.as_ref()),
            )
            .await
            .unwrap_or_default();
            let mut m = Measurement {
                input: Some(u.clone()),
                test_keys: keys,
                ..Measurement::default()
            };
            crate::analysis::analyze(&mut m, &ctx.analysis);
            (i, judge(&u, &m))
        });
    }
    let mut refs: Vec<(usize, RefResult)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            refs.push((i, r));
        }
    }
    refs.sort_by_key(|(i, _)| *i);
    CheckReport {
        at,
        refs: refs.into_iter().map(|(_, r)| r).collect(),
    }
}

/// Judges one reference measurement.
pub fn judge(url: &str, m: &Measurement) -> RefResult {
    let v = m.test_keys.x_verdict.as_ref();
    // What loaded as the control saw it is no portal, whatever it looks
    // like (the control sees the same redirect).
    let fine = matches!(
        v.map(|v| v.status),
        Some(VerdictStatus::Accessible | VerdictStatus::Throttled)
    );
    let portal = if fine { None } else { portal_of(m) };
    let failure = m
        .test_keys
        .http_experiment_failure
        .clone()
        .or_else(|| m.test_keys.dns_experiment_failure.clone());
    let status = match v.map(|v| v.status) {
        _ if fine => RefStatus::Fine,
        Some(VerdictStatus::Blocked) => RefStatus::Intercepted,
        _ if portal.is_some() => RefStatus::Intercepted,
        Some(VerdictStatus::Inconclusive) if failure.is_some() => RefStatus::Failed,
        _ => RefStatus::Unknown,
    };
    let what = match status {
        RefStatus::Fine => "loaded as the control saw it".to_string(),
        RefStatus::Intercepted => format!(
            "intercepted ({})",
            v.and_then(|v| v.mechanism.clone())
                .or_else(|| portal.clone())
                .unwrap_or_else(|| "tampered with".into())
        ),
        RefStatus::Failed => format!("failed ({})", failure.unwrap_or_default()),
        RefStatus::Unknown => "could not be judged".to_string(),
    };
    RefResult {
        url: url.to_string(),
        status,
        line: format!("reference {url}: {what}"),
        portal,
    }
}

/// Words of a login, terms or top-up page (English and Khmer).
const PORTAL_WORDS: [&str; 14] = [
    "login",
    "log in",
    "sign in",
    "password",
    "accept",
    "terms",
    "agree",
    "top up",
    "top-up",
    "recharge",
    "balance",
    "voucher",
    "បញ្ចូលលុយ",
    "ចូលប្រើ",
];

/// Recognises a portal in a measurement: a redirect to another host
/// (named by that host), or a page with a form and a login, terms or
/// top-up wording (named by its title and host).
pub fn portal_of(m: &Measurement) -> Option<String> {
    let input_host = m
        .input
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))?;
    for tx in &m.test_keys.requests {
        if let Some(loc) = tx
            .response
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v)
        {
            let base = url::Url::parse(&tx.request.url).ok();
            let target = base
                .as_ref()
                .and_then(|b| b.join(loc).ok())
                .or_else(|| url::Url::parse(loc).ok());
            if let Some(h) = target.as_ref().and_then(|t| t.host_str()) {
                if !same_site(h, &input_host) {
                    return Some(format!("a redirect to {h}"));
                }
            }
        }
    }
    let tx = m.test_keys.requests.first()?;
    let body = String::from_utf8_lossy(&tx.response.body.to_bytes()).to_lowercase();
    if body.contains("<form") && PORTAL_WORDS.iter().any(|w| body.contains(w)) {
        let title = tx.response.x_title.clone().unwrap_or_default();
        let host = url::Url::parse(&tx.request.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        return Some(if title.is_empty() {
            format!("a login or top-up page at {host}")
        } else {
            format!("the login or top-up page \"{title}\" at {host}")
        });
    }
    None
}

/// `a` and `b` are the same site (equal, or one is `www.` of the other).
fn same_site(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim_start_matches("www.").to_ascii_lowercase();
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;
    use probes::records::{HttpRequestRecord, HttpResponseRecord, HttpTransaction, MaybeBinary};

    fn page(url: &str, code: i64, headers: &[(&str, &str)], body: &str) -> Measurement {
        let tx = HttpTransaction {
            request: HttpRequestRecord {
                url: url.into(),
                ..Default::default()
            },
            response: HttpResponseRecord {
                code,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: MaybeBinary::Text(body.into()),
                x_title: probes::http::extract_title(body.as_bytes()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut m = Measurement {
            input: Some(url.into()),
            ..Default::default()
        };
        m.test_keys.requests.push(tx);
        m
    }

    #[test]
    fn references_default_to_the_control_host_and_neutral_names() {
        let r = reference_urls(&[], &["https://th.example.net:8443/".into()]);
        assert_eq!(
            r,
            vec![
                "http://th.example.net/",
                "https://th.example.net/",
                "http://example.com/",
                "https://example.com/"
            ]
        );
        assert!(reference_urls(&["none".into()], &[]).is_empty());
        assert_eq!(
            reference_urls(&["http://127.0.0.1:9/".into()], &[]),
            vec!["http://127.0.0.1:9/"]
        );
    }

    #[test]
    fn portals_are_recognised_and_named() {
        let m = page(
            "http://news.example/",
            302,
            &[("Location", "http://portal.cafe.example/login")],
            "",
        );
        assert_eq!(
            portal_of(&m).as_deref(),
            Some("a redirect to portal.cafe.example")
        );
        let m = page(
            "http://news.example/",
            200,
            &[],
            "<html><head><title>Cafe WiFi</title></head><body><form>Accept the terms</form></body></html>",
        );
        assert_eq!(
            portal_of(&m).as_deref(),
            Some("the login or top-up page \"Cafe WiFi\" at news.example")
        );
        // An ordinary page, and a redirect within the site, are not portals.
        let m = page("http://news.example/", 200, &[], "<p>Terms of use</p>");
        assert_eq!(portal_of(&m), None);
        let m = page(
            "http://news.example/",
            301,
            &[("location", "https://www.news.example/")],
            "",
        );
        assert_eq!(portal_of(&m), None);
    }

    #[test]
    fn most_references_failing_is_network_wide() {
        let r = |status| RefResult {
            url: String::new(),
            status,
            line: String::new(),
            portal: None,
        };
        let report = |s: Vec<RefStatus>| CheckReport {
            at: OffsetDateTime::UNIX_EPOCH,
            refs: s.into_iter().map(r).collect(),
        };
        use RefStatus::*;
        assert!(report(vec![Intercepted, Failed, Fine]).network_wide());
        assert!(!report(vec![Intercepted, Fine, Fine]).network_wide());
        assert!(!report(vec![Unknown, Unknown]).network_wide());
        assert!(report(vec![Failed, Unknown]).network_wide());
        let mut blocked = page("http://news.example/", 200, &[], "x");
        blocked.test_keys.x_verdict = Some(Verdict {
            status: VerdictStatus::Blocked,
            mechanism: Some("http.blockpage".into()),
            ..Default::default()
        });
        assert_eq!(judge("http://news.example/", &blocked).status, Intercepted);
    }
}
