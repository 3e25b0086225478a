//! One redirect depth: resolve, start the endpoint flows, pick the best
//! connected endpoint and fetch the page over it once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::http::HttpParams;
use probes::records::HttpTransaction;
use probes::Failure;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use url::Url;

use super::context::Ctx;
use super::cookies::CookieJar;
use super::dns::{self, rank};
use super::endpoints::{self, Candidate, Conn, FlowFailure, Offer};

/// How long the fetcher waits for a better endpoint once a lower-priority
/// one connected (OONI's priority selector window).
const PRIORITY_WINDOW: Duration = Duration::from_millis(500);

/// A depth whose flows are running.
pub(crate) struct Depth {
    offers: UnboundedReceiver<Offer>,
    /// Kept for the control at depth 0, so flows to addresses only the
    /// control found can still offer their connection.
    hook_tx: Option<UnboundedSender<Offer>>,
    flows: JoinSet<()>,
    /// The best rank among the addresses dialled (granted at once).
    top_rank: u8,
    /// Addresses the probe resolved (dialled or not).
    probe_addrs: Vec<IpAddr>,
    dns_failure: Option<Failure>,
}

/// What the control needs from depth 0.
pub(crate) struct ControlHook {
    /// Every address the probe resolved.
    pub probe_addrs: Vec<IpAddr>,
    /// Where flows to the control's extra addresses offer connections.
    pub offers: UnboundedSender<Offer>,
}

/// How a depth ended.
pub(crate) struct HopOutcome {
    /// The Location of a redirect response.
    pub location: Option<String>,
    /// The GET's failure, or why there was no GET.
    pub failure: Option<Failure>,
}

impl Depth {
    /// Hands the control its view of this depth (once).
    pub fn take_control_hook(&mut self) -> Option<ControlHook> {
        let offers = self.hook_tx.take()?;
        Some(ControlHook {
            probe_addrs: self.probe_addrs.clone(),
            offers,
        })
    }
}

/// Resolves `url`'s host and starts the flows of depth `depth`.
pub(crate) async fn start_depth(ctx: &Arc<Ctx>, url: &Url, depth: u32) -> Depth {
    let res = dns::resolve(ctx, url, depth).await;
    if depth == 0 {
        ctx.with(|r| r.dns_experiment_failure = res.system_failure.as_ref().map(|f| f.to_string()));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut flows = JoinSet::new();
    let mut top_rank = u8::MAX;
    for &(ip, f) in &res.addrs {
        if endpoints::dialable(ctx, ip) {
            top_rank = top_rank.min(rank(f));
        }
        endpoints::spawn_flows(ctx, &mut flows, url, depth, ip, f, &tx);
    }
    Depth {
        offers: rx,
        hook_tx: (depth == 0).then_some(tx),
        flows,
        top_rank,
        probe_addrs: res.addrs.iter().map(|(ip, _)| *ip).collect(),
        dns_failure: if res.addrs.is_empty() {
            res.first_failure
        } else {
            None
        },
    }
}

/// Waits for the best endpoint, fetches `url` over it, and returns how the
/// depth ended plus its still-running flows (validation handshakes).
pub(crate) async fn finish_depth(
    ctx: &Arc<Ctx>,
    url: &Url,
    mut d: Depth,
    jar: &mut CookieJar,
) -> (HopOutcome, JoinSet<()>) {
    d.hook_tx = None;
    let (chosen, failures) = select(&mut d.offers, d.top_rank).await;
    drop(d.offers);
    let outcome = match chosen {
        Some(c) => {
            let tx = get(ctx, url, c, jar.header(url)).await;
            jar.store(url, &tx.response.headers_list);
            let outcome = HopOutcome {
                location: tx.location().map(str::to_string),
                failure: tx.failure.clone(),
            };
            ctx.with(|r| r.requests.push(tx));
            outcome
        }
        None => HopOutcome {
            location: None,
            failure: explain(failures).or(d.dns_failure),
        },
    };
    (outcome, d.flows)
}

/// OONI's priority selector: a connection of the best rank present is taken
/// at once; otherwise the best one offered within [`PRIORITY_WINDOW`] of the
/// first. Ends early when every flow has reported.
async fn select(
    offers: &mut UnboundedReceiver<Offer>,
    top_rank: u8,
) -> (Option<Candidate>, Vec<FlowFailure>) {
    let mut best: Option<Candidate> = None;
    let mut failures = Vec::new();
    let mut window: Option<tokio::time::Instant> = None;
    loop {
        let next = match window {
            Some(w) => match tokio::time::timeout_at(w, offers.recv()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => offers.recv().await,
        };
        match next {
            None => break,
            Some(Offer::Failed(f)) => failures.push(f),
            Some(Offer::Ready(c)) => {
                if c.rank <= top_rank {
                    return (Some(c), failures);
                }
                if best.as_ref().is_none_or(|b| c.rank < b.rank) {
                    best = Some(c);
                }
                window.get_or_insert_with(|| tokio::time::Instant::now() + PRIORITY_WINDOW);
            }
        }
    }
    (best, failures)
}

/// Why no endpoint could fetch: the failure of the best-ranked flow that got
/// furthest (IPv4 before IPv6).
fn explain(mut failures: Vec<FlowFailure>) -> Option<Failure> {
    failures.sort_by_key(|f| (f.rank, u8::MAX - f.stage, f.ipv6));
    failures.into_iter().next().map(|f| f.failure)
}

/// The GET over the chosen connection (in its own task, so a bug in it is a
/// recorded failure, aborted if this future is dropped).
async fn get(ctx: &Ctx, url: &Url, c: Candidate, cookie: Option<String>) -> HttpTransaction {
    let mut headers = probes::http::default_headers();
    if let Some(cookie) = cookie {
        headers.push(("Cookie".to_string(), cookie));
    }
    let params = HttpParams {
        url: url.clone(),
        host_header: None,
        headers,
        body_cap: ctx.settings.body_cap,
        timeout: ctx.settings.http,
    };
    let Candidate {
        addr,
        conn,
        alpn,
        trace,
        permit,
        ..
    } = c;
    let task_trace = trace.clone();
    let mut task = JoinSet::new();
    task.spawn(async move {
        let _permit = permit;
        match conn {
            Conn::Plain(s) => probes::http::get(&task_trace, s, addr, &alpn, &params).await,
            Conn::Tls(s) => probes::http::get(&task_trace, *s, addr, &alpn, &params).await,
        }
    });
    match task.join_next().await {
        Some(Ok(tx)) => tx,
        other => {
            let why = match other {
                Some(Err(e)) => format!("internal error: {e}"),
                _ => "internal error".to_string(),
            };
            HttpTransaction {
                network: "tcp".into(),
                address: addr.to_string(),
                failure: Some(Failure::Unknown(why)),
                t0: trace.clock.now(),
                t: trace.clock.now(),
                tags: trace.tags.clone(),
                transaction_id: trace.transaction_id,
                ..HttpTransaction::default()
            }
        }
    }
}
