//! DNS injection evidence: racing replies with different answers, replies
//! whose IP TTLs differ, and answers from an address that runs no resolver.

use std::collections::BTreeSet;
use std::sync::Arc;

use probes::dns::{DnsOptions, QueryType};
use probes::records::{DnsQuery, DnsReply};
use url::{Host, Url};

use super::context::Ctx;
use crate::model::InjectionEvidence;

/// `x_injection` kind: several usable replies to one query disagree.
pub const DUPLICATE_REPLIES: &str = "dns.duplicate_replies";
/// `x_injection` kind: replies to one query arrived with different IP TTLs.
pub const TTL_MISMATCH: &str = "dns.ttl_mismatch";
/// `x_injection` kind: an address without a DNS server answered a query.
pub const NON_RESOLVER_ANSWER: &str = "dns.non_resolver_answer";

/// Evidence in the replies of one UDP lookup.
pub(crate) fn dns_evidence(q: &DnsQuery) -> Vec<InjectionEvidence> {
    let usable: Vec<&DnsReply> = q.x_replies.iter().filter(|r| r.failure.is_none()).collect();
    let mut out = Vec::new();
    if usable.len() < 2 {
        return out;
    }
    let target = format!("{} {} @{}", q.hostname, q.query_type, q.resolver_address);
    let distinct: BTreeSet<(u16, Vec<String>)> = usable.iter().map(|r| answer_key(r)).collect();
    if distinct.len() > 1 {
        out.push(InjectionEvidence {
            kind: DUPLICATE_REPLIES.to_string(),
            target: target.clone(),
            detail: format!(
                "{} replies with {} different answers: {}",
                usable.len(),
                distinct.len(),
                describe(&usable)
            ),
        });
    }
    let ttls: BTreeSet<u8> = usable.iter().filter_map(|r| r.ip_ttl).collect();
    if ttls.len() > 1 {
        out.push(InjectionEvidence {
            kind: TTL_MISMATCH.to_string(),
            target,
            detail: format!(
                "replies arrived with IP TTLs {:?}: {}",
                ttls,
                describe(&usable)
            ),
        });
    }
    out
}

/// At depth 0, when configured: an A query for the URL's host sent to an
/// address that runs no DNS server; any reply is evidence of an on-path
/// injector. The query itself is not a `queries[]` entry (it is no lookup).
pub(crate) async fn non_resolver_check(ctx: &Arc<Ctx>, url: &Url) {
    let Some(addr) = ctx.settings.dns_non_resolver_check else {
        return;
    };
    let Some(Host::Domain(host)) = url.host() else {
        return;
    };
    let trace = ctx
        .trace
        .child(ctx.next_id(), vec!["x_non_resolver_check".to_string()]);
    let opts = DnsOptions {
        timeout: ctx.settings.dns,
        listen_after_first: ctx.settings.listen_after_first,
    };
    let q = probes::dns::udp::query(&trace, addr, host, QueryType::A, &opts).await;
    if q.x_replies.is_empty() && q.answers.is_empty() {
        return;
    }
    let replies: Vec<&DnsReply> = q.x_replies.iter().collect();
    let detail = if replies.is_empty() {
        format!(
            "{addr}, which runs no DNS server, answered: [{}]",
            ips(&q).join(", ")
        )
    } else {
        format!(
            "{addr}, which runs no DNS server, answered: {}",
            describe(&replies)
        )
    };
    ctx.with(|r| {
        r.injection.push(InjectionEvidence {
            kind: NON_RESOLVER_ANSWER.to_string(),
            target: host.to_string(),
            detail,
        })
    });
}

fn answer_key(r: &DnsReply) -> (u16, Vec<String>) {
    let mut a: Vec<String> = r
        .answers
        .iter()
        .map(|a| {
            a.ipv4
                .clone()
                .or_else(|| a.ipv6.clone())
                .or_else(|| a.hostname.clone())
                .unwrap_or_default()
        })
        .collect();
    a.sort();
    (r.rcode, a)
}

fn ips(q: &DnsQuery) -> Vec<String> {
    q.addrs().iter().map(|ip| ip.to_string()).collect()
}

fn describe(replies: &[&DnsReply]) -> String {
    replies
        .iter()
        .map(|r| {
            let (rcode, answers) = answer_key(r);
            let ttl = r.ip_ttl.map_or("unknown".to_string(), |t| t.to_string());
            format!(
                "[{}] rcode {} from {} at {:.4} s, IP TTL {}",
                answers.join(", "),
                rcode,
                r.source,
                r.t,
                ttl
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::records::DnsAnswer;

    fn reply(ip: &str, ttl: Option<u8>) -> DnsReply {
        DnsReply {
            t: 0.001,
            source: "192.0.2.53:53".into(),
            ip_ttl: ttl,
            id: 7,
            rcode: 0,
            answers: vec![DnsAnswer {
                answer_type: "A".into(),
                ipv4: Some(ip.into()),
                ..DnsAnswer::default()
            }],
            raw: String::new(),
            failure: None,
            x_unasked: Vec::new(),
        }
    }

    fn query(replies: Vec<DnsReply>) -> DnsQuery {
        DnsQuery {
            engine: "udp".into(),
            hostname: "site.example".into(),
            query_type: "A".into(),
            resolver_address: "192.0.2.53:53".into(),
            x_replies: replies,
            ..DnsQuery::default()
        }
    }

    #[test]
    fn one_reply_is_no_evidence() {
        assert!(dns_evidence(&query(vec![reply("198.51.100.1", Some(60))])).is_empty());
    }

    #[test]
    fn identical_duplicates_are_no_evidence() {
        let q = query(vec![
            reply("198.51.100.1", Some(60)),
            reply("198.51.100.1", Some(60)),
        ]);
        assert!(dns_evidence(&q).is_empty());
    }

    #[test]
    fn racing_replies_and_ttls() {
        let q = query(vec![
            reply("203.0.113.9", Some(250)),
            reply("198.51.100.1", Some(60)),
        ]);
        let ev = dns_evidence(&q);
        let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, vec![DUPLICATE_REPLIES, TTL_MISMATCH]);
        assert_eq!(ev[0].target, "site.example A @192.0.2.53:53");
        assert_eq!(
            ev[0].detail,
            "2 replies with 2 different answers: [203.0.113.9] rcode 0 from 192.0.2.53:53 \
             at 0.0010 s, IP TTL 250; [198.51.100.1] rcode 0 from 192.0.2.53:53 at 0.0010 s, IP TTL 60"
        );
        assert_eq!(
            ev[1].detail.split(':').next(),
            Some("replies arrived with IP TTLs {60, 250}")
        );
    }
}
