//! DNS fan-out for one host at one depth: the system resolver, UDP A/AAAA
//! to each resolver, DoH A/AAAA to each DoH server, all in parallel. Each
//! lookup is its own `queries[]` entry; the addresses are united with flags
//! saying where each came from.

use std::net::IpAddr;
use std::sync::Arc;

use probes::dns::{DnsOptions, QueryType};
use probes::records::DnsQuery;
use probes::Failure;
use tokio::task::JoinSet;
use url::{Host, Url};

use super::context::Ctx;
use super::injection;

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

/// The result of the fan-out.
pub(crate) struct Resolution {
    /// Every address, in resolver order (system, UDP, DoH), with its flags.
    pub addrs: Vec<(IpAddr, u8)>,
    /// The system lookup's failure, if it ran and failed.
    pub system_failure: Option<Failure>,
    /// The first failure in resolver order (explains "no address").
    pub first_failure: Option<Failure>,
}

/// Resolves `url`'s host (an IP literal skips DNS).
pub(crate) async fn resolve(ctx: &Arc<Ctx>, url: &Url, depth: u32) -> Resolution {
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_string(),
        Some(Host::Ipv4(a)) => return literal(IpAddr::V4(a)),
        Some(Host::Ipv6(a)) => return literal(IpAddr::V6(a)),
        None => {
            return Resolution {
                addrs: Vec::new(),
                system_failure: None,
                first_failure: Some(Failure::HttpInvalidRedirectLocationHost),
            }
        }
    };
    let s = &ctx.settings;
    let opts = DnsOptions {
        timeout: s.dns,
        listen_after_first: s.listen_after_first,
    };
    let depth_tag = format!("depth={depth}");
    let mut set: JoinSet<(usize, u8, DnsQuery)> = JoinSet::new();
    let mut order = 0usize;

    if s.system_resolver {
        let trace = ctx
            .trace
            .child(ctx.next_id(), vec![depth_tag.clone(), "classic".into()]);
        let (host, timeout, i) = (host.clone(), s.dns, order);
        set.spawn(async move {
            let q = probes::dns::system::lookup(&trace, &host, timeout).await;
            (i, flags::SYSTEM, q)
        });
        order += 1;
    }
    for &resolver in &s.resolvers {
        for qtype in [QueryType::A, QueryType::Aaaa] {
            let trace = ctx.trace.child(ctx.next_id(), vec![depth_tag.clone()]);
            let (host, opts, i) = (host.clone(), opts.clone(), order);
            set.spawn(async move {
                let q = probes::dns::udp::query(&trace, resolver, &host, qtype, &opts).await;
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
            set.spawn(async move {
                let q = probes::dns::doh::query(&trace, &server, &host, qtype, &roots, &opts).await;
                (i, flags::DOH, q)
            });
            order += 1;
        }
    }

    let mut done = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(item) = joined {
            done.push(item);
        }
    }
    done.sort_by_key(|(i, _, _)| *i);

    let mut res = Resolution {
        addrs: Vec::new(),
        system_failure: None,
        first_failure: None,
    };
    let mut evidence = Vec::new();
    for (_, origin, q) in &done {
        if *origin == flags::SYSTEM {
            res.system_failure = q.failure.clone();
        }
        if res.first_failure.is_none() {
            res.first_failure = q.failure.clone();
        }
        if *origin == flags::UDP {
            evidence.extend(injection::dns_evidence(q));
        }
        for ip in q.addrs() {
            match res.addrs.iter_mut().find(|(a, _)| *a == ip) {
                Some((_, f)) => *f |= origin,
                None => res.addrs.push((ip, *origin)),
            }
        }
    }
    if done.is_empty() {
        res.first_failure = Some(Failure::Unknown("no resolver configured".into()));
    }
    ctx.with(|r| {
        r.queries.extend(done.into_iter().map(|(_, _, q)| q));
        r.injection.extend(evidence);
    });
    res
}

fn literal(ip: IpAddr) -> Resolution {
    Resolution {
        addrs: vec![(ip, flags::LITERAL)],
        system_failure: None,
        first_failure: None,
    }
}
