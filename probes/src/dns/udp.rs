//! DNS over UDP to a chosen resolver, built with hickory-proto.
//!
//! The query goes out from an *unconnected* socket, so datagrams from any
//! source are seen, and with `IP_RECVTTL` (`IPV6_RECVHOPLIMIT`) enabled, so
//! each reply's IP TTL is known without privilege. After the first valid
//! reply we keep listening for [`DnsOptions::listen_after_first`]: an
//! injected reply racing the genuine one, or a duplicate, ends up in
//! `x_replies` next to it.
//!
//! # Resends (lossy links)
//!
//! A lost datagram is not a block. While no valid reply has come, the same
//! query (same id, same socket, so a late reply to any copy counts) is sent
//! again [`FIRST_RESEND`] (1 s) after the first send, then after doubling
//! gaps (1 s, 2 s, 4 s, ...), at most [`MAX_SENDS`] times in all, and never
//! after `opts.timeout`: the resends live inside the step's timeout, so a
//! name that is really blocked costs no extra time. With the default 4 s
//! timeout the sends are at 0, 1 and 3 s. The count is `x_attempts`; on a
//! line losing 10 % of packets each way, one send fails ~19 % of the time,
//! three ~0.7 %.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::wire::{self, WireQuery};
use super::{start_query, DnsOptions, QueryType};
use crate::failure::Failure;
use crate::records::{DnsQuery, Trace};

/// The largest datagram we read.
const MAX_DATAGRAM: usize = 65535;

/// Receive errors tolerated before giving up on the socket.
const MAX_RECV_ERRORS: usize = 16;

/// The silence after the first send that triggers a resend; each later gap
/// doubles.
pub const FIRST_RESEND: Duration = Duration::from_secs(1);

/// The most times one query is sent (the first send included).
pub const MAX_SENDS: u32 = 3;

/// Sends one query for `host`/`qtype` to `resolver` and records every reply
/// that arrives within the listening window (engine `udp`).
///
/// - Every datagram received is in `x_replies`, in arrival order, with its
///   source, IP TTL, id, rcode, answers, raw bytes, and a `failure` when it
///   cannot be the answer (undecodable, not a response,
///   `dns_reply_with_wrong_query_id`, another question, another source).
/// - `answers`, `rcode`, `raw_response` and `failure` come from the
///   **first valid** reply (right source, id and question). NXDOMAIN,
///   SERVFAIL and REFUSED map to `dns_nxdomain_error`,
///   `dns_servfail_error`, `dns_refused_error`; NOERROR without records of
///   the asked type is `dns_no_answer`.
/// - `t` is the arrival time of the first valid reply (so `t - t0` is the
///   round trip), not the end of the listening window; each reply has its
///   own `t`.
/// - No valid reply within `opts.timeout`: `generic_timeout_error`; but an
///   undecodable reply from the resolver's address ends the wait
///   `opts.listen_after_first` (at least 1 s) after it, with its parse
///   failure.
/// - While no valid reply has come, the query is resent (see the module
///   doc); `x_attempts` says how many times it went out when more than once.
/// - **Truncation.** When the first valid reply has the TC bit, the query
///   is repeated over TCP ([`super::tcp::query`]) after the listening
///   window; the record then has engine `udp+tcp`, the TCP reply's
///   answers/rcode/raw_response/failure, `t` at the end of the TCP
///   exchange, and the UDP datagrams (the truncated one included) in
///   `x_replies`, followed by the TCP reply when it could not be used.
/// - Which reply fields reach the record follows
///   [`wire::record_reply`], the rule shared with TCP and DoH.
pub async fn query(
    trace: &Trace,
    resolver: SocketAddr,
    host: &str,
    qtype: QueryType,
    opts: &DnsOptions,
) -> DnsQuery {
    query_telling_first(trace, resolver, host, qtype, opts, None).await
}

/// [`query`], and as soon as the first valid reply arrives (before the
/// listening window ends) its addresses are sent on `first`, so the caller
/// can go on with them while late and duplicate replies are still being
/// collected. Nothing is sent for a truncated first reply (TCP follows) or
/// when no valid reply comes; the returned record is the same as
/// [`query`]'s.
pub async fn query_telling_first(
    trace: &Trace,
    resolver: SocketAddr,
    host: &str,
    qtype: QueryType,
    opts: &DnsOptions,
    mut first: Option<tokio::sync::oneshot::Sender<Vec<IpAddr>>>,
) -> DnsQuery {
    let (mut q, wq) = start_query(trace, "udp", resolver.to_string(), host, qtype, None);
    let Some(wq) = wq else {
        return q;
    };
    let sock = match open_socket(resolver).await {
        Ok(s) => s,
        Err(e) => {
            q.failure = Some(Failure::from_io(&e));
            q.t = trace.clock.now();
            return q;
        }
    };
    let started = Instant::now();
    if let Err(e) = sock.send_to(&wq.bytes, resolver).await {
        q.failure = Some(Failure::from_io(&e));
        q.t = trace.clock.now();
        return q;
    }
    let (replies, first, sends) =
        collect(trace, &sock, resolver, &wq, started, opts, &mut first).await;
    q.x_attempts = sends;
    q.x_replies = replies.iter().map(|r| r.reply.clone()).collect();
    match first {
        None => {
            q.failure = Some(malformed_from(&replies, resolver).unwrap_or(Failure::GenericTimeout))
        }
        Some(i) if replies[i].truncated => {
            let mut via_tcp = super::tcp::query(trace, resolver, host, qtype, opts).await;
            via_tcp.engine = "udp+tcp".to_string();
            via_tcp.t0 = q.t0;
            via_tcp.x_attempts = sends;
            let mut replies = std::mem::take(&mut q.x_replies);
            replies.append(&mut via_tcp.x_replies);
            via_tcp.x_replies = replies;
            return via_tcp;
        }
        Some(i) => {
            let read = &replies[i];
            wire::record_reply(&mut q, read);
            q.t = read.reply.t;
            return q;
        }
    }
    q.t = trace.clock.now();
    q
}

/// Opens an unconnected socket of the resolver's family with the TTL of
/// received datagrams reported.
async fn open_socket(resolver: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = match resolver {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    let res = match resolver {
        SocketAddr::V4(_) => setsockopt(&sock, sockopt::Ipv4RecvTtl, &true),
        SocketAddr::V6(_) => setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true),
    };
    // Without the TTL we still measure; the replies' ip_ttl stays null.
    if let Err(e) = res {
        tracing::debug!("cannot enable IP TTL reporting: {e}");
    }
    Ok(sock)
}

/// Receives datagrams until `opts.timeout` after `started` if no valid
/// reply came, or until `opts.listen_after_first` after the first valid
/// one, resending the query while none came (see the module doc). Returns
/// every datagram read, the index of the first valid one and how many
/// times the query was sent (the first send, made by the caller, included).
async fn collect(
    trace: &Trace,
    sock: &UdpSocket,
    resolver: SocketAddr,
    wq: &WireQuery,
    started: Instant,
    opts: &DnsOptions,
    tell_first: &mut Option<tokio::sync::oneshot::Sender<Vec<IpAddr>>>,
) -> (Vec<wire::ReadReply>, Option<usize>, u32) {
    let mut replies = Vec::new();
    let mut first = None;
    let mut deadline = started + opts.timeout;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut errors = 0;
    let mut sends = 1u32;
    let mut gap = FIRST_RESEND;
    let mut resend_at = started + gap;
    loop {
        let resend_due = first.is_none() && sends < MAX_SENDS && resend_at < deadline;
        let wait_until = if resend_due { resend_at } else { deadline };
        let got = tokio::time::timeout_at(wait_until, recv_with_ttl(sock, &mut buf)).await;
        let (n, source, ttl) = match got {
            Err(_) if resend_due => {
                // A failed resend is not a reply either; the earlier sends
                // may still be answered.
                if let Err(e) = sock.send_to(&wq.bytes, resolver).await {
                    tracing::debug!("udp resend: {e}");
                }
                sends += 1;
                gap *= 2;
                resend_at += gap;
                continue;
            }
            Err(_) => break,
            Ok(Err(e)) => {
                // A socket error is not a reply; keep listening, but do not
                // spin on a socket that only returns errors.
                tracing::debug!("udp recv: {e}");
                errors += 1;
                if errors > MAX_RECV_ERRORS {
                    break;
                }
                continue;
            }
            Ok(Ok(x)) => x,
        };
        let at = Instant::now();
        let mut read = wire::read_reply(&buf[..n], wq);
        read.reply.t = trace.clock.now();
        read.reply.ip_ttl = ttl;
        read.reply.source = source.map(|s| s.to_string()).unwrap_or_default();
        if read.valid && source != Some(resolver) {
            read.valid = false;
            read.reply.failure = Some(Failure::Unknown(
                "DNS reply from an unexpected source".to_string(),
            ));
        }
        if read.valid && first.is_none() {
            first = Some(replies.len());
            deadline = at + opts.listen_after_first;
            if let Some(tx) = tell_first.take().filter(|_| !read.truncated) {
                let _ = tx.send(read.reply.answers.iter().filter_map(|a| a.ip()).collect());
            }
        }
        // An undecodable reply from the resolver ends the wait: a parse
        // failure, not a timeout. A genuine reply racing a forged broken
        // one still wins if it comes within the listening window (at
        // least [`MALFORMED_GRACE`]).
        if first.is_none() && read.rcode.is_none() && source == Some(resolver) {
            deadline = deadline.min(at + opts.listen_after_first.max(MALFORMED_GRACE));
        }
        replies.push(read);
    }
    (replies, first, sends)
}

/// How long a lookup still listens after an undecodable reply from the
/// resolver's address, at least.
const MALFORMED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The failure of the first undecodable reply from the resolver itself.
fn malformed_from(replies: &[wire::ReadReply], resolver: SocketAddr) -> Option<Failure> {
    let from = resolver.to_string();
    replies
        .iter()
        .find(|r| r.rcode.is_none() && r.reply.source == from)
        .and_then(|r| r.reply.failure.clone())
}

/// One `recvmsg` through tokio's readiness: bytes, source, IP TTL.
async fn recv_with_ttl(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SocketAddr>, Option<u8>)> {
    sock.async_io(Interest::READABLE, || {
        let mut cmsg = nix::cmsg_space!(libc::c_int);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let mut ttl = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                        ttl = u8::try_from(t).ok();
                    }
                    _ => {}
                }
            }
        }
        let source = msg.address.as_ref().and_then(to_socket_addr);
        Ok((msg.bytes, source, ttl))
    })
    .await
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::from((v6.ip(), v6.port())));
    }
    None
}
