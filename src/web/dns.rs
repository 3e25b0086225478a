//! DNS fan-out for one host at one depth: the system resolver, UDP A/AAAA
//! to each resolver, DoH A/AAAA to each DoH server, all in parallel. Each
//! lookup is its own `queries[]` entry; the addresses are united with flags
//! saying where each came from.

use std::net::IpAddr;
use std::sync::Arc;

use probes::dns::{DnsOptions, QueryType};
use probes::records::DnsQuery;
use probes::Failure;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use url::{Host, Url};

use super::context::Ctx;
use super::injection;
use crate::control::protocol::{MAX_ADDRS_PER_NAME, MAX_ADDRS_PER_URL};

/// Where an address came from (OONI's flags, plus ours).
pub(crate) mod flags {
    /// The system resolver.
    pub const SYSTEM: u8 = 1;
    /// A UDP resolver.
    pub const UDP: u8 = 2;
    /// A DoH server.
    pub const DOH: u8 = 4;
    /// Only the control found it.
    pub const CONTROL: u8 = 8;
    /// The URL's host is this IP literal.
    pub const LITERAL: u8 = 16;
}

/// The fetch priority of an address with these flags: 0 (system resolver or
/// IP literal) is best, then UDP, DoH, and the control's addresses.
pub(crate) fn rank(f: u8) -> u8 {
    if f & (flags::SYSTEM | flags::LITERAL) != 0 {
        0
    } else if f & flags::UDP != 0 {
        1
    } else if f & flags::DOH != 0 {
        2
    } else {
        3
    }
}

/// The addresses known so far and why there are none.
pub(crate) struct Resolution {
    /// Every address, in resolver order (system, UDP, DoH), with its flags.
    pub addrs: Vec<(IpAddr, u8)>,
    /// The system lookup's failure, if it ran and failed.
    pub system_failure: Option<Failure>,
    /// The first failure in resolver order (explains "no address").
    pub first_failure: Option<Failure>,
    /// Addresses found but not measured: beyond [`MAX_ADDRS_PER_NAME`] of
    /// one lookup or [`MAX_ADDRS_PER_URL`] in all.
    pub capped: usize,
}

type Lookup = (usize, u8, DnsQuery);

/// The addresses of a UDP lookup's first valid reply, told before the
/// lookup ends (it keeps listening for late and duplicate replies).
type EarlyAnswer = (usize, Vec<IpAddr>);

/// The lookups of one host at one depth, running in parallel. Each lookup
/// is recorded as soon as it ends.
pub(crate) struct Fanout {
    depth: u32,
    set: JoinSet<Lookup>,
    done: Vec<Lookup>,
    literal: Option<IpAddr>,
    started: usize,
    early_tx: mpsc::UnboundedSender<EarlyAnswer>,
    early_rx: mpsc::UnboundedReceiver<EarlyAnswer>,
    /// First answers of UDP lookups still listening.
    early: Vec<EarlyAnswer>,
}

impl Fanout {
    /// Starts every lookup of `url`'s host (none for an IP literal).
    pub fn start(ctx: &Arc<Ctx>, url: &Url, depth: u32) -> Fanout {
        let (early_tx, early_rx) = mpsc::unbounded_channel();
        let mut fan = Fanout {
            depth,
            set: JoinSet::new(),
            done: Vec::new(),
            literal: None,
            started: 0,
            early_tx,
            early_rx,
            early: Vec::new(),
        };
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(a)) => {
                fan.literal = Some(IpAddr::V4(a));
                return fan;
            }
            Some(Host::Ipv6(a)) => {
                fan.literal = Some(IpAddr::V6(a));
                return fan;
            }
            None => return fan,
        };
        let s = &ctx.settings;
        let opts = DnsOptions {
            timeout: s.dns,
            listen_after_first: s.listen_after_first,
        };
        let depth_tag = format!("depth={depth}");
        let mut order = 0usize;
        if s.system_resolver {
            let trace = ctx
                .trace
                .child(ctx.next_id(), vec![depth_tag.clone(), "classic".into()]);
            let (host, timeout, i) = (host.clone(), s.dns, order);
            fan.set.spawn(async move {
                let q = super::resend::system_lookup(&trace, &host, timeout).await;
                (i, flags::SYSTEM, q)
            });
            order += 1;
        }
        for &resolver in &s.resolvers {
            for qtype in [QueryType::A, QueryType::Aaaa] {
                let trace = ctx.trace.child(ctx.next_id(), vec![depth_tag.clone()]);
                let (host, opts, i) = (host.clone(), opts.clone(), order);
                let early = fan.early_tx.clone();
                fan.set.spawn(async move {
                    let (first_tx, first_rx) = oneshot::channel();
                    let tell = async {
                        if let Ok(addrs) = first_rx.await {
                            let _ = early.send((i, addrs));
                        }
                    };
                    let lookup = probes::dns::udp::query_telling_first(
                        &trace,
                        resolver,
                        &host,
                        qtype,
                        &opts,
                        Some(first_tx),
                    );
                    let (q, ()) = tokio::join!(lookup, tell);
                    (i, flags::UDP, q)
                });
                order += 1;
            }
        }
        for server in &s.doh {
            for qtype in [QueryType::A, QueryType::Aaaa] {
                let trace = ctx.trace.child(ctx.next_id(), vec![depth_tag.clone()]);
                let (host, opts, i) = (host.clone(), opts.clone(), order);
                let (server, roots) = (server.clone(), Arc::clone(&s.roots));
                fan.set.spawn(async move {
                    let q =
                        probes::dns::doh::query(&trace, &server, &host, qtype, &roots, &opts).await;
                    (i, flags::DOH, q)
                });
                order += 1;
            }
        }
        fan.started = order;
        fan
    }

    /// Whether every lookup has ended.
    pub fn is_complete(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits until the system resolver gave an address `usable` accepts
    /// (its addresses are fetched over first, so the slower resolvers need
    /// not hold the page up), or every lookup ended or, for a UDP lookup
    /// still listening for late replies, had its first reply, with some
    /// address known (the listening window is off the critical path). The other lookups
    /// go on; [`Fanout::finish`] waits for them and records them.
    pub async fn first_usable(&mut self, ctx: &Ctx, usable: impl Fn(IpAddr) -> bool) -> Resolution {
        loop {
            let system_ready = self
                .done
                .iter()
                .any(|(_, o, q)| *o == flags::SYSTEM && q.addrs().into_iter().any(&usable));
            if system_ready || self.answered_or_ended() || !self.step(ctx).await {
                return self.resolution(ctx);
            }
        }
    }

    /// Whether every lookup ended or is a UDP lookup that had its first
    /// reply, and some address is known (with none, the failures that
    /// explain it are only known once every lookup ended).
    fn answered_or_ended(&self) -> bool {
        let listening: Vec<&EarlyAnswer> = self
            .early
            .iter()
            .filter(|(i, _)| !self.done.iter().any(|(d, _, _)| d == i))
            .collect();
        let some_address = listening.iter().any(|(_, a)| !a.is_empty())
            || self.done.iter().any(|(_, _, q)| !q.addrs().is_empty());
        !listening.is_empty() && some_address && self.done.len() + listening.len() >= self.started
    }

    /// Waits for one more lookup to end or tell its first answer; false
    /// when no lookup is left.
    async fn step(&mut self, ctx: &Ctx) -> bool {
        let got = tokio::select! {
            biased;
            Some(e) = self.early_rx.recv() => Ok(e),
            joined = self.set.join_next() => Err(joined),
        };
        match got {
            Ok(e) => {
                self.early.push(e);
                true
            }
            Err(None) => false,
            Err(Some(joined)) => {
                self.record(ctx, joined);
                true
            }
        }
    }

    /// Waits for every lookup; the full resolution.
    pub async fn finish(&mut self, ctx: &Ctx) -> Resolution {
        while self.next(ctx).await {}
        self.resolution(ctx)
    }

    /// Waits for one more lookup and records it; false when none is left.
    async fn next(&mut self, ctx: &Ctx) -> bool {
        let Some(joined) = self.set.join_next().await else {
            return false;
        };
        self.record(ctx, joined);
        true
    }

    /// Records an ended lookup.
    fn record(&mut self, ctx: &Ctx, joined: Result<Lookup, tokio::task::JoinError>) {
        if let Ok((i, origin, q)) = joined {
            let evidence = if origin == flags::UDP {
                injection::dns_evidence(&q)
            } else {
                Vec::new()
            };
            ctx.with(|r| {
                if q.failure == Some(Failure::ProbeResourceLimit) {
                    let note = format!(
                        "{}:{}:{}",
                        q.engine,
                        q.hostname,
                        Failure::ProbeResourceLimit
                    );
                    if !r.skipped.contains(&note) {
                        r.skipped.push(note);
                    }
                }
                r.queries.push(((self.depth, i), q.clone()));
                r.injection.extend(evidence);
            });
            self.done.push((i, origin, q));
            self.done.sort_by_key(|(i, _, _)| *i);
        }
    }

    /// What the lookups ended so far say.
    fn resolution(&self, ctx: &Ctx) -> Resolution {
        if let Some(ip) = self.literal {
            return Resolution {
                addrs: vec![(ip, flags::LITERAL)],
                system_failure: None,
                first_failure: None,
                capped: 0,
            };
        }
        let mut res = Resolution {
            addrs: Vec::new(),
            system_failure: None,
            first_failure: None,
            capped: 0,
        };
        let mut own_limit = None;
        let mut capped = std::collections::BTreeSet::new();
        // Ended lookups, and the first answers of UDP lookups still
        // listening, in resolver order.
        let mut known: Vec<(usize, u8, Option<&Failure>, Vec<IpAddr>)> = self
            .done
            .iter()
            .map(|(i, o, q)| (*i, *o, q.failure.as_ref(), q.addrs()))
            .collect();
        for (i, addrs) in &self.early {
            if !self.done.iter().any(|(d, _, _)| d == i) {
                known.push((*i, flags::UDP, None, addrs.clone()));
            }
        }
        known.sort_by_key(|k| k.0);
        for (_, origin, failure, addrs) in &known {
            // A lookup our own limits kept from running is no failure of
            // the network: it explains "no address" only when nothing else
            // does.
            if *failure == Some(&Failure::ProbeResourceLimit) {
                own_limit = failure.cloned();
                continue;
            }
            if *origin == flags::SYSTEM {
                res.system_failure = failure.cloned();
            }
            if res.first_failure.is_none() {
                res.first_failure = failure.cloned();
            }
            for (n, ip) in addrs.iter().copied().enumerate() {
                let room = n < MAX_ADDRS_PER_NAME && res.addrs.len() < MAX_ADDRS_PER_URL;
                match res.addrs.iter_mut().find(|(a, _)| *a == ip) {
                    Some((_, f)) => *f |= origin,
                    None if room => res.addrs.push((ip, *origin)),
                    None => {
                        capped.insert(ip);
                    }
                }
            }
        }
        capped.retain(|ip| !res.addrs.iter().any(|(a, _)| a == ip));
        res.capped = capped.len();
        if res.addrs.is_empty() && res.first_failure.is_none() {
            res.first_failure = own_limit;
        }
        if self.started == 0 {
            res.first_failure = Some(Failure::Unknown("no resolver configured".into()));
        }
        if res.capped > 0 {
            let prefix = format!("addresses_capped:depth={}:", self.depth);
            let note = format!(
                "{prefix}{} not measured (at most {MAX_ADDRS_PER_NAME} per lookup, {MAX_ADDRS_PER_URL} per URL)",
                res.capped
            );
            ctx.with(|r| {
                r.skipped.retain(|s| !s.starts_with(&prefix));
                r.skipped.push(note);
            });
        }
        res
    }
}
