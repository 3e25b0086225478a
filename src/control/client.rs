//! The control client used by `gatewatch run`: POSTs a [`ControlRequest`]
//! to one or more controls with overlapped failover (the next control is
//! started when the previous one failed or has not answered within the
//! hedge delay; the first good answer wins).
//!
//! Back-pressure: a control that answers 429 or 503 is not an answer lost.
//! The request waits (`Retry-After` when given, else a bounded exponential
//! backoff, both with jitter) and is queued again, until the query's
//! deadline. Each control has its own window of requests in flight
//! ([`backpressure::Window`], AIMD): it grows by one per window of good
//! answers and halves on every push-back, so a probe settles at what the
//! control can take. OONI's public helpers get at most
//! [`OONI_MAX_IN_FLIGHT`] requests at once from us.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::backpressure::{self, ControlHealth, Window};

use crate::control::protocol::{ControlRequest, ControlResponse};

/// OONI's public web-connectivity test helpers, used when the user gives no
/// `--control`. They speak the same protocol (without our `x_` fields, so
/// some of our evidence is missing from their answers). A research team
/// should run its own `gatewatch control serve` and pass it with
/// `--control https://control.example.org/`.
pub const DEFAULT_CONTROLS: &[&str] = &[
    "https://5.th.ooni.org/",
    "https://6.th.ooni.org/",
    "https://0.th.ooni.org/",
    "https://1.th.ooni.org/",
];

/// At most this many requests in flight to each of OONI's public helpers
/// (oohelperd sheds clients that are not ooniprobe above ~25 in flight; we
/// stay well below, as a guest on their infrastructure).
pub const OONI_MAX_IN_FLIGHT: usize = 8;
/// At most this many requests in flight to one of our own controls (the
/// window starts lower and grows while the control keeps up).
pub const OWN_MAX_IN_FLIGHT: usize = 256;
/// Where a control's window starts.
pub const INITIAL_WINDOW: usize = 8;
/// The User-Agent we send: who we are and where to read about it.
pub const USER_AGENT: &str = concat!(
    "gatewatch/",
    env!("CARGO_PKG_VERSION"),
    " (web_connectivity-compatible censorship probe; not ooniprobe)"
);

/// Start the next control when the previous has not answered within this.
pub const DEFAULT_HEDGE_DELAY: Duration = Duration::from_secs(3);
/// Give up on all controls after this.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Control answers larger than this are refused.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Why the control gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The client was built without any control URL.
    #[error("no control URL given")]
    NoControls,
    /// A control URL is not an http(s) URL.
    #[error("invalid control URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (bad CA file, ...).
    #[error("cannot set up the control client: {0}")]
    Setup(String),
    /// No connection or no complete answer.
    #[error("control {url} unreachable: {reason}")]
    Unreachable {
        /// The control.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The control answered with an HTTP error.
    #[error("control {url} answered HTTP {status}: {reason}")]
    HttpStatus {
        /// The control.
        url: String,
        /// The status code.
        status: u16,
        /// The first line of its body.
        reason: String,
        /// Its `Retry-After` (seconds form), when it sent one.
        retry_after: Option<Duration>,
    },
    /// The answer is not a valid control response.
    #[error("control {url} sent an invalid answer: {reason}")]
    InvalidJson {
        /// The control.
        url: String,
        /// What serde said (field, line and column).
        reason: String,
    },
    /// Nothing answered in time.
    #[error("no control answered within {0:?}")]
    Deadline(Duration),
    /// Every control failed; each failure in the order they happened.
    #[error("every control failed: {}", list(.0))]
    AllFailed(Vec<ControlError>),
}

fn list(errors: &[ControlError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Talks to one or more controls, with failover.
#[derive(Debug, Clone)]
pub struct ControlClient {
    urls: Arc<Vec<String>>,
    windows: Arc<Vec<Arc<Window>>>,
    http: reqwest::Client,
    hedge_delay: Duration,
    deadline: Duration,
}

impl ControlClient {
    /// A client for `urls`, tried in this order. The controls' certificates
    /// are checked against Mozilla's roots plus the PEM files in
    /// `extra_roots` (for a team's own CA or tests).
    pub fn new(urls: Vec<String>, extra_roots: &[PathBuf]) -> Result<ControlClient, ControlError> {
        if urls.is_empty() {
            return Err(ControlError::NoControls);
        }
        for u in &urls {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                Ok(_) => {
                    return Err(ControlError::BadUrl {
                        url: u.clone(),
                        reason: "not an http(s) URL with a host".into(),
                    })
                }
                Err(e) => {
                    return Err(ControlError::BadUrl {
                        url: u.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        probes::install_crypto_provider();
        let roots = if extra_roots.is_empty() {
            probes::tls::TrustRoots::webpki()
        } else {
            probes::tls::TrustRoots::with_pem_files(extra_roots)
                .map_err(|e| ControlError::Setup(e.to_string()))?
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ControlError::Setup(e.to_string()))?
            .with_root_certificates(Arc::clone(&roots.store))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(DEFAULT_DEADLINE)
            .no_proxy()
            .build()
            .map_err(|e| ControlError::Setup(e.to_string()))?;
        let windows = urls
            .iter()
            .map(|u| {
                let max = if is_ooni_helper(u) {
                    OONI_MAX_IN_FLIGHT
                } else {
                    OWN_MAX_IN_FLIGHT
                };
                Arc::new(Window::new(u.clone(), INITIAL_WINDOW.min(max), max))
            })
            .collect();
        Ok(ControlClient {
            urls: Arc::new(urls),
            windows: Arc::new(windows),
            http,
            hedge_delay: DEFAULT_HEDGE_DELAY,
            deadline: DEFAULT_DEADLINE,
        })
    }

    /// The default controls ([`DEFAULT_CONTROLS`]).
    pub fn with_defaults() -> Result<ControlClient, ControlError> {
        ControlClient::new(
            DEFAULT_CONTROLS.iter().map(|s| s.to_string()).collect(),
            &[],
        )
    }

    /// Changes the hedge delay and the total deadline.
    pub fn with_timing(mut self, hedge_delay: Duration, deadline: Duration) -> ControlClient {
        self.hedge_delay = hedge_delay;
        self.deadline = deadline;
        self
    }

    /// The controls, in the order they are tried.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// What each control has done so far (answers, push-backs, failures).
    pub fn health(&self) -> Vec<ControlHealth> {
        self.windows.iter().map(|w| w.health()).collect()
    }

    /// The underlying HTTP client (for the preflight's reachability check).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Asks the controls about one URL: the first control is asked at once,
    /// the next one when the previous failed or after the hedge delay; the
    /// first valid answer wins and the other attempts are cancelled.
    pub async fn query(&self, req: &ControlRequest) -> Result<ControlResponse, ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Setup(e.to_string()))?;
        let body = bytes::Bytes::from(body);
        let deadline = tokio::time::sleep(self.deadline);
        tokio::pin!(deadline);
        let mut attempts: JoinSet<Result<ControlResponse, ControlError>> = JoinSet::new();
        let mut errors = Vec::new();
        let mut next = 0;
        // The last push-back of each attempt still waiting, to name it if
        // the deadline comes first.
        let pushed: PushBacks = Arc::default();
        self.start(&mut attempts, &mut next, &body, &pushed);
        let hedge = tokio::time::sleep(self.hedge_delay);
        tokio::pin!(hedge);
        loop {
            tokio::select! {
                Some(done) = attempts.join_next() => {
                    match done {
                        Ok(Ok(resp)) => return Ok(resp),
                        Ok(Err(e)) => errors.push(e),
                        Err(e) => errors.push(ControlError::Unreachable {
                            url: "?".into(),
                            reason: format!("attempt aborted: {e}"),
                        }),
                    }
                    if next < self.urls.len() {
                        self.start(&mut attempts, &mut next, &body, &pushed);
                        hedge.as_mut().reset(tokio::time::Instant::now() + self.hedge_delay);
                    } else if attempts.is_empty() {
                        return Err(if errors.len() == 1 {
                            errors.remove(0)
                        } else {
                            ControlError::AllFailed(errors)
                        });
                    }
                }
                _ = &mut hedge, if next < self.urls.len() => {
                    self.start(&mut attempts, &mut next, &body, &pushed);
                    hedge.as_mut().reset(tokio::time::Instant::now() + self.hedge_delay);
                }
                _ = &mut deadline => {
                    let waiting = std::mem::take(
                        &mut *pushed.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    errors.extend(waiting.into_iter().flatten());
                    return Err(match errors.len() {
                        0 => ControlError::Deadline(self.deadline),
                        1 => errors.remove(0),
                        _ => ControlError::AllFailed(errors),
                    });
                }
            }
        }
    }

    fn start(
        &self,
        attempts: &mut JoinSet<Result<ControlResponse, ControlError>>,
        next: &mut usize,
        body: &bytes::Bytes,
        pushed: &PushBacks,
    ) {
        let url = self.urls[*next].clone();
        let window = Arc::clone(&self.windows[*next]);
        let slot = {
            let mut p = pushed.lock().unwrap_or_else(|e| e.into_inner());
            p.push(None);
            p.len() - 1
        };
        let pushed = Arc::clone(pushed);
        *next += 1;
        let http = self.http.clone();
        let body = body.clone();
        let timeout = self.deadline;
        attempts.spawn(async move {
            let r = ask_patiently(&http, &window, url, body, timeout, &pushed, slot).await;
            // Finished: its push-back, if any, is no longer news.
            if let Some(s) = pushed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(slot)
            {
                *s = None;
            }
            r
        });
    }
}

/// The last push-back (429/503) of each attempt of one query.
type PushBacks = Arc<std::sync::Mutex<Vec<Option<ControlError>>>>;

/// True for OONI's public helpers (`*.th.ooni.org`).
fn is_ooni_helper(u: &str) -> bool {
    url::Url::parse(u)
        .ok()
        .and_then(|p| p.host_str().map(|h| h.ends_with(".th.ooni.org")))
        .unwrap_or(false)
}

/// Asks one control, inside its window; a 429 or 503 is waited out and the
/// request queued again (the caller's deadline ends it).
async fn ask_patiently(
    http: &reqwest::Client,
    window: &Window,
    url: String,
    body: bytes::Bytes,
    timeout: Duration,
    pushed: &PushBacks,
    slot: usize,
) -> Result<ControlResponse, ControlError> {
    let mut attempt: u32 = 0;
    loop {
        let permit = window.acquire().await;
        let result = ask(http, url.clone(), body.clone(), timeout).await;
        match result {
            Ok(r) => {
                window.answered();
                return Ok(r);
            }
            Err(ControlError::HttpStatus {
                url: u,
                status: status @ (429 | 503),
                reason,
                retry_after,
            }) => {
                let wait = backpressure::delay(retry_after, attempt);
                window.pushed_back(status, wait);
                let e = ControlError::HttpStatus {
                    url: u,
                    status,
                    reason,
                    retry_after,
                };
                if let Some(s) = pushed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(slot)
                {
                    *s = Some(e);
                }
                drop(permit);
                attempt = attempt.saturating_add(1);
                // The window is paused for `wait`; `acquire` waits it out.
            }
            Err(e) => {
                window.failed();
                return Err(e);
            }
        }
    }
}

/// One attempt at one control.
async fn ask(
    http: &reqwest::Client,
    url: String,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    let unreachable = |e: reqwest::Error, url: &str| ControlError::Unreachable {
        url: url.to_string(),
        reason: error_chain(&e),
    };
    let resp = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(e, &url))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_capped(resp).await.map_err(|e| unreachable(e, &url))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        let line = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(ControlError::HttpStatus {
            url,
            status: status.as_u16(),
            reason: line,
            retry_after,
        });
    }
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(ControlError::InvalidJson {
            url,
            reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
        });
    }
    let mut answer: ControlResponse =
        serde_json::from_slice(&bytes).map_err(|e| ControlError::InvalidJson {
            url,
            reason: e.to_string(),
        })?;
    answer.x_date_header = date;
    Ok(answer)
}

/// Reads the body, stopping just past the cap.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(out)
}

/// The error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
