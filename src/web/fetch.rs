//! One redirect depth: resolve, start the endpoint flows, pick the best
//! connected endpoint and fetch the page over it once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::flow::{self, Next};
use probes::http::HttpParams;
use probes::records::HttpTransaction;
use probes::Failure;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use url::Url;

use super::context::Ctx;
use super::cookies::CookieJar;
use super::dns::{self, rank};
use super::endpoints::{self, Candidate, FlowFailure, Offer};

/// How long the fetcher waits for a better endpoint once a lower-priority
/// one connected (OONI's priority selector window).
const PRIORITY_WINDOW: Duration = Duration::from_millis(500);

/// A depth whose flows are running.
pub(crate) struct Depth {
    offers: UnboundedReceiver<Offer>,
    /// Kept for the control at depth 0, so flows to addresses only the
    /// control found can still offer their connection.
    hook_tx: Option<UnboundedSender<Offer>>,
    /// Every address the probe resolved, once all lookups ended (depth 0).
    hook_addrs: Option<oneshot::Receiver<Vec<IpAddr>>>,
    flows: JoinSet<()>,
    /// The best rank among the addresses dialled (granted at once).
    top_rank: u8,
    dns_failure: Option<Failure>,
}

/// What the control needs from depth 0.
pub(crate) struct ControlHook {
    /// Every address the probe resolved, when all its lookups ended.
    pub probe_addrs: oneshot::Receiver<Vec<IpAddr>>,
    /// Where flows to the control's extra addresses offer connections.
    pub offers: UnboundedSender<Offer>,
}

impl Depth {
    /// Hands the control its view of this depth (once).
    pub fn take_control_hook(&mut self) -> Option<ControlHook> {
        Some(ControlHook {
            offers: self.hook_tx.take()?,
            probe_addrs: self.hook_addrs.take()?,
        })
    }
}

/// Resolves `url`'s host and starts the flows of depth `depth`.
///
/// Returns as soon as the system resolver gave a usable address (those are
/// fetched over first) or every lookup ended; lookups still running then
/// go on in the background and flows start for the new addresses they
/// bring.
pub(crate) async fn start_depth(ctx: &Arc<Ctx>, url: &Url, depth: u32) -> Depth {
    let mut fan = dns::Fanout::start(ctx, url, depth);
    let early = fan
        .first_usable(ctx, |ip| endpoints::dialable(ctx, ip))
        .await;
    if depth == 0 {
        ctx.with(|r| {
            r.dns_experiment_failure = early.system_failure.as_ref().map(|f| f.to_string())
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (addrs_tx, addrs_rx) = oneshot::channel();
    let mut flows = JoinSet::new();
    let mut top_rank = u8::MAX;
    let mut started: Vec<IpAddr> = Vec::new();
    for &(ip, f) in &early.addrs {
        if endpoints::dialable(ctx, ip) {
            top_rank = top_rank.min(rank(f));
        }
        endpoints::spawn_flows(ctx, &mut flows, url, depth, ip, f, &tx);
        started.push(ip);
    }
    let dns_failure = if fan.is_complete() {
        let _ = addrs_tx.send(started);
        (early.addrs.is_empty())
            .then_some(early.first_failure)
            .flatten()
    } else {
        // The rest of the lookups, and flows to what only they found.
        let (ctx, url, tx) = (Arc::clone(ctx), url.clone(), tx.clone());
        flows.spawn(async move {
            let full = fan.finish(&ctx).await;
            let mut late = JoinSet::new();
            for &(ip, f) in &full.addrs {
                if !started.contains(&ip) {
                    endpoints::spawn_flows(&ctx, &mut late, &url, depth, ip, f, &tx);
                }
            }
            drop(tx);
            let _ = addrs_tx.send(full.addrs.iter().map(|(ip, _)| *ip).collect());
            while late.join_next().await.is_some() {}
        });
        None
    };
    Depth {
        offers: rx,
        hook_tx: (depth == 0).then_some(tx),
        hook_addrs: (depth == 0).then_some(addrs_rx),
        flows,
        top_rank,
        dns_failure,
    }
}

/// Waits for the best endpoint, fetches `url` over it, and returns what
/// follows the depth ([`flow::next`]: a redirect, a failure — the GET's, or
/// why there was no GET — or nothing) plus its still-running flows
/// (validation handshakes).
pub(crate) async fn finish_depth(
    ctx: &Arc<Ctx>,
    url: &Url,
    mut d: Depth,
    jar: &mut CookieJar,
) -> (Next, JoinSet<()>) {
    d.hook_tx = None;
    let (chosen, failures) = select(&mut d.offers, d.top_rank).await;
    drop(d.offers);
    let outcome = match chosen {
        Some(c) => {
            let tx = get(ctx, url, c, jar.header(url)).await;
            jar.store(url, &tx.response.headers_list);
            let next = flow::next(url, &tx);
            ctx.with(|r| r.requests.push(tx));
            next
        }
        None => match explain(failures).or(d.dns_failure) {
            Some(f) => Next::Failed(f),
            None => Next::Final,
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
        flow::fetch(&task_trace, conn, addr, &alpn, &params).await
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
