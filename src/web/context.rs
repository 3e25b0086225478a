//! The measurement of one URL: shared state, the deadline, the redirect
//! chain, and assembling the test keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use probes::flow::{redirect, Next};
use probes::records::{DnsQuery, HttpTransaction, TcpConnect, TlsHandshake, Trace};
use probes::Failure;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use url::Url;

use super::cookies::CookieJar;
use super::{fetch, injection, WebSettings};
use super::{
    CONTROL_DISABLED, INTERRUPTED_DEADLINE, INTERRUPTED_INVALID_INPUT, TOO_MANY_REDIRECTS,
};
use crate::control::client::ControlClient;
use crate::control::protocol::{ControlRequest, ControlResponse};
use crate::model::{InjectionEvidence, WebTestKeys};

/// State shared by every step of one URL's measurement. Records are added
/// as steps finish, so a deadline or a drop loses only steps in flight.
pub(crate) struct Ctx {
    pub settings: WebSettings,
    pub trace: Trace,
    next_id: AtomicU64,
    pub endpoint_slots: Arc<Semaphore>,
    pub records: Mutex<Records>,
}

/// What has been measured so far.
#[derive(Default)]
pub(crate) struct Records {
    /// Keyed by (depth, resolver order within the depth).
    pub queries: Vec<((u32, usize), DnsQuery)>,
    pub tcp_connect: Vec<TcpConnect>,
    pub tls_handshakes: Vec<TlsHandshake>,
    pub quic_handshakes: Vec<TlsHandshake>,
    pub http3_requests: Vec<HttpTransaction>,
    /// Oldest first; reversed when the keys are built.
    pub requests: Vec<HttpTransaction>,
    pub injection: Vec<InjectionEvidence>,
    pub skipped: Vec<String>,
    pub sni_split: Vec<TlsHandshake>,
    pub control_request: Option<ControlRequest>,
    pub control: Option<ControlResponse>,
    pub control_failure: Option<String>,
    pub dns_experiment_failure: Option<String>,
    pub http_experiment_failure: Option<String>,
}

impl Ctx {
    fn new(settings: &WebSettings) -> Ctx {
        Ctx {
            settings: settings.clone(),
            trace: Trace::new(),
            next_id: AtomicU64::new(1),
            endpoint_slots: Arc::new(Semaphore::new(settings.max_parallel_endpoints.max(1))),
            records: Mutex::new(Records::default()),
        }
    }

    /// A fresh transaction id (unique within this measurement).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the records (poisoning is ignored: records are data).
    pub fn with<R>(&self, f: impl FnOnce(&mut Records) -> R) -> R {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

/// The body of [`super::measure`].
pub(crate) async fn measure(
    input: &str,
    settings: &WebSettings,
    control: Option<&ControlClient>,
    fetched: Option<oneshot::Sender<()>>,
) -> WebTestKeys {
    let ctx = Arc::new(Ctx::new(settings));
    let mut interrupted = None;
    match parse_input(input) {
        Ok(url) => {
            let work = run(&ctx, url, control, fetched);
            if tokio::time::timeout(settings.url_deadline, work)
                .await
                .is_err()
            {
                interrupted = Some(INTERRUPTED_DEADLINE.to_string());
                ctx.with(|r| {
                    if r.control_request.is_some() && r.control.is_none() {
                        r.control_failure
                            .get_or_insert_with(|| Failure::Interrupted.to_string());
                    }
                });
            }
        }
        Err(reason) => {
            interrupted = Some(INTERRUPTED_INVALID_INPUT.to_string());
            ctx.with(|r| {
                r.http_experiment_failure =
                    Some(Failure::Unknown(format!("invalid input URL: {reason}")).to_string());
            });
        }
    }
    if control.is_none() {
        ctx.with(|r| r.control_failure = Some(CONTROL_DISABLED.to_string()));
    }
    build_keys(&ctx, interrupted)
}

/// Checks that the input is an http(s) URL with a host.
fn parse_input(input: &str) -> Result<Url, String> {
    let url = Url::parse(input.trim()).map_err(|e| e.to_string())?;
    redirect::check_url(&url).map_err(|f| match f {
        Failure::Unknown(m) => m,
        other => other.to_string(),
    })?;
    Ok(url)
}

/// The redirect chain, with the control (and the optional non-resolver
/// check) running beside it. `fetched` is told once those have ended and
/// only the depths' flows are left (DNS listening windows, late and
/// validation flows).
async fn run(
    ctx: &Arc<Ctx>,
    url: Url,
    control: Option<&ControlClient>,
    fetched: Option<oneshot::Sender<()>>,
) {
    let mut pending: Vec<JoinSet<()>> = Vec::new();

    let mut first = fetch::start_depth(ctx, &url, 0).await;
    let hook = first.take_control_hook();
    let control_side = super::control::run(ctx, &url, hook, control);
    let non_resolver = injection::non_resolver_check(ctx, &url);
    let chain = async {
        let mut hop = first;
        let mut url = url.clone();
        let mut depth = 0u32;
        let mut jar = CookieJar::default();
        loop {
            let (next, flows) = fetch::finish_depth(ctx, &url, hop, &mut jar).await;
            pending.push(flows);
            let next = match next {
                Next::Redirect(next) => next,
                Next::Final => break,
                Next::Failed(f) => {
                    ctx.with(|r| r.http_experiment_failure = Some(f.to_string()));
                    break;
                }
            };
            if depth >= ctx.settings.max_redirects {
                ctx.with(|r| r.http_experiment_failure = Some(TOO_MANY_REDIRECTS.to_string()));
                break;
            }
            depth += 1;
            url = next;
            hop = fetch::start_depth(ctx, &url, depth).await;
        }
    };
    tokio::join!(control_side, non_resolver, chain);
    if let Some(tell) = fetched {
        let _ = tell.send(());
    }
    finish_flows(ctx, pending).await;
}

/// Once the chain ended (the page fetched or not), the flows still running
/// (validation handshakes, addresses that drop SYNs) get one flow's budget
/// (TCP + TLS timeouts) to end. The rest are cancelled and counted in
/// `x_skipped`: not measured, not failures, so a URL whose fetch finished
/// is finished and never runs into the deadline because of them.
async fn finish_flows(ctx: &Ctx, pending: Vec<JoinSet<()>>) {
    let tail = ctx.settings.tcp + ctx.settings.tls;
    let mut sets = pending;
    let wait = async {
        for set in &mut sets {
            while set.join_next().await.is_some() {}
        }
    };
    if tokio::time::timeout(tail, wait).await.is_ok() {
        return;
    }
    let left: usize = sets.iter().map(JoinSet::len).sum();
    for set in &mut sets {
        set.abort_all();
    }
    ctx.with(|r| {
        r.skipped.push(format!(
            "endpoint_flows_cancelled_after_fetch: {left} (still running {tail:?} after the fetch ended)"
        ))
    });
}

/// Builds the test keys from what was recorded.
fn build_keys(ctx: &Ctx, interrupted: Option<String>) -> WebTestKeys {
    let mut r = ctx.with(std::mem::take);
    // Queries in depth order, then resolver order (system, UDP A/AAAA per
    // resolver, DoH A/AAAA per server), whatever order they finished in.
    r.queries.sort_by_key(|(key, _)| *key);
    sort_by_time(&mut r.tcp_connect, |c| c.t0);
    sort_by_time(&mut r.tls_handshakes, |h| h.t0);
    sort_by_time(&mut r.quic_handshakes, |h| h.t0);
    r.requests.reverse();
    WebTestKeys {
        agent: "redirect".to_string(),
        queries: r.queries.into_iter().map(|(_, q)| q).collect(),
        tcp_connect: r.tcp_connect,
        tls_handshakes: r.tls_handshakes,
        quic_handshakes: r.quic_handshakes,
        x_http3_requests: r.http3_requests,
        requests: r.requests,
        network_events: ctx.trace.take_events(),
        x_control_request: r.control_request,
        control: r.control,
        control_failure: r.control_failure,
        dns_experiment_failure: r.dns_experiment_failure,
        http_experiment_failure: r.http_experiment_failure,
        x_injection: r.injection,
        x_interrupted: interrupted,
        x_skipped: r.skipped,
        x_sni_split: r.sni_split,
        ..WebTestKeys::default()
    }
}

fn sort_by_time<T>(v: &mut [T], t0: impl Fn(&T) -> f64) {
    v.sort_by(|a, b| t0(a).total_cmp(&t0(b)));
}
