//! One TTL-limited probe: send a trigger with a chosen IP TTL and record
//! what comes back within a listening window. Blocking code, run on
//! tokio's blocking pool.
//!
//! Unprivileged: `IP_TTL` on the socket, `IP_RECVERR` for the ICMP error
//! (the TCP SYN probe also over IPv6: `IPV6_UNICAST_HOPS`, `IPV6_RECVERR`)
//! and the router that sent it, `IP_RECVTTL` for DNS replies. With a
//! [`Sniffer`] (CAP_NET_RAW) also the IP TTL and IP-ID of RSTs and
//! SYN-ACKs, and packets that arrive after an RST closed the socket.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::raw::recverr::{self, QueuedError};
use probes::raw::sniff::Sniffer;
use probes::Failure;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::report::{DnsReplyNote, HopProbe, IcmpNote, Outcome};
use super::trigger;

/// How probes listen.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    /// The longest wait for a first reaction.
    pub timeout: Duration,
    /// How long to keep listening after the first reaction (to catch the
    /// genuine reply racing an injected one).
    pub listen_after: Duration,
    /// The raw sniffer, when privileged.
    pub sniffer: Option<Arc<Sniffer>>,
    /// The trace's start, for `t`.
    pub start: Instant,
}

/// The slice of blocking reads, so deadlines are checked often.
const READ_SLICE: Duration = Duration::from_millis(20);

/// A TCP SYN with IP TTL `ttl` (over IPv6: hop limit `ttl`, ICMPv6
/// errors): SYN-ACK, RST, ICMP or silence.
pub fn tcp_syn(ctx: &ProbeContext, addr: SocketAddr, ttl: u8) -> HopProbe {
    let mut p = new_probe(ctx, ttl);
    let sock = match Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)) {
        Ok(s) => s,
        Err(e) => return failed(p, &e),
    };
    let limited = if addr.is_ipv6() {
        sock.set_unicast_hops_v6(u32::from(ttl))
            .and_then(|()| recverr::enable_recverr_v6(&sock))
    } else {
        sock.set_ttl_v4(u32::from(ttl))
            .and_then(|()| recverr::enable_recverr(&sock))
    };
    if let Err(e) = limited {
        return failed(p, &e);
    }
    let result = sock.connect_timeout(&addr.into(), ctx.timeout);
    let local_port = local_port(&sock);
    match result {
        Ok(()) => {
            p.outcome = Outcome::Response;
            p.response = Some("syn-ack".to_string());
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            p.rst = true;
            p.outcome = Outcome::Rst;
        }
        Err(e) if is_timeout(&e) => {}
        Err(e) => p.failure = Some(Failure::from_io(&e).as_str().into_owned()),
    }
    note_errors(&mut p, recverr::drain_error_queue(&sock));
    // The raw sniffer reads IPv4 only.
    if let (Some(sn), Some(lp), SocketAddr::V4(addr)) = (&ctx.sniffer, local_port, addr) {
        std::thread::sleep(ctx.listen_after.min(Duration::from_millis(200)));
        add_sniffed(&mut p, sn, addr, lp, None);
    }
    finish(p)
}

/// Connects at the normal TTL, then lowers it to `ttl` and writes
/// `payload` (a ClientHello or a GET): data, RST, EOF, ICMP or silence.
/// Over IPv6 the hop limit is lowered instead.
pub fn stream_trigger(ctx: &ProbeContext, addr: SocketAddr, ttl: u8, payload: &[u8]) -> HopProbe {
    let mut p = new_probe(ctx, ttl);
    let mut stream = match TcpStream::connect_timeout(&addr, ctx.timeout) {
        Ok(s) => s,
        Err(e) => {
            p.outcome = Outcome::ConnectFailed;
            p.failure = Some(Failure::from_io(&e).as_str().into_owned());
            return p;
        }
    };
    let local_port = stream.local_addr().map(|a| a.port()).ok();
    let sock = SockRef::from(&stream);
    let limited = if addr.is_ipv6() {
        sock.set_unicast_hops_v6(u32::from(ttl))
            .and_then(|()| recverr::enable_recverr_v6(&stream))
    } else {
        sock.set_ttl_v4(u32::from(ttl))
            .and_then(|()| recverr::enable_recverr(&stream))
    };
    let setup = limited
        .and_then(|()| stream.set_read_timeout(Some(READ_SLICE)))
        .and_then(|()| stream.write_all(payload));
    if let Err(e) = setup {
        return failed(p, &e);
    }
    let sent = Instant::now();
    let mut deadline = sent + ctx.timeout;
    let mut data = Vec::new();
    let mut rst_at = None;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => {
                if data.is_empty() {
                    p.outcome = Outcome::Eof;
                }
                break;
            }
            Ok(n) => {
                if data.len() < 16 * 1024 {
                    data.extend_from_slice(&buf[..n]);
                }
                deadline = deadline.min(Instant::now() + ctx.listen_after);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                p.rst = true;
                rst_at = Some(Instant::now());
                break;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                // An ICMP error reported on the socket. On an established
                // TCP socket Linux reports it (with IP_RECVERR) but queues
                // no sender, so the router stays unknown without raw.
                let before = p.icmp.len();
                note_errors(&mut p, recverr::drain_error_queue(&stream));
                if p.icmp.len() == before {
                    let note = IcmpNote {
                        from: None,
                        kind: format!("icmp_error: {}", Failure::from_io(&e).as_str()),
                        code: 0,
                        raw: false,
                    };
                    if !p.icmp.contains(&note) {
                        p.icmp.push(note);
                    }
                }
                deadline = deadline.min(Instant::now() + ctx.listen_after);
            }
        }
    }
    note_errors(&mut p, recverr::drain_error_queue(&stream));
    if !data.is_empty() {
        p.response = Some(trigger::describe_response(&data));
        if p.outcome == Outcome::Silence {
            p.outcome = Outcome::Response;
        }
    }
    if p.rst {
        p.outcome = Outcome::Rst;
    }
    if let (Some(sn), Some(lp), SocketAddr::V4(addr)) = (&ctx.sniffer, local_port, addr) {
        // Keep listening: a genuine reply may follow an injected RST.
        std::thread::sleep(ctx.listen_after);
        add_sniffed(&mut p, sn, addr, lp, rst_at);
    }
    finish(p)
}

/// A DNS query for `name` with IP TTL `ttl` to `dst`: every reply within
/// the window (with its IP TTL), and ICMP errors.
pub fn dns(ctx: &ProbeContext, dst: SocketAddrV4, ttl: u8, name: &str) -> HopProbe {
    let mut p = new_probe(ctx, ttl);
    let (id, query) = match trigger::dns_query(name) {
        Ok(q) => q,
        Err(e) => {
            p.outcome = Outcome::Error;
            p.failure = Some(e.to_string());
            return p;
        }
    };
    let sock = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => return failed(p, &e),
    };
    let setup = sock
        .connect(dst)
        .and_then(|()| sock.set_ttl(u32::from(ttl)))
        .and_then(|()| recverr::enable_recverr(&sock))
        .and_then(|()| recverr::enable_recv_ttl(&sock))
        .and_then(|()| sock.set_read_timeout(Some(READ_SLICE)))
        .and_then(|()| sock.send(&query).map(drop));
    if let Err(e) = setup {
        return failed(p, &e);
    }
    let sent = Instant::now();
    let mut deadline = sent + ctx.timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match recverr::recv_with_ttl(&sock, &mut buf) {
            Ok((n, ip_ttl)) => {
                if let Some(reply) = trigger::parse_dns_reply(&buf[..n], id) {
                    p.dns_replies.push(DnsReplyNote {
                        t: sent.elapsed().as_secs_f64(),
                        ip_ttl,
                        rcode: reply.rcode,
                        addresses: reply.addresses.iter().map(|a| a.to_string()).collect(),
                    });
                    deadline = deadline.min(Instant::now() + ctx.listen_after);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                note_errors(&mut p, recverr::drain_error_queue(&sock));
                deadline = deadline.min(Instant::now() + ctx.listen_after);
            }
        }
    }
    note_errors(&mut p, recverr::drain_error_queue(&sock));
    if !p.dns_replies.is_empty() {
        p.outcome = Outcome::DnsAnswer;
    }
    finish(p)
}

fn new_probe(ctx: &ProbeContext, ttl: u8) -> HopProbe {
    HopProbe {
        ttl,
        t: ctx.start.elapsed().as_secs_f64(),
        ..HopProbe::default()
    }
}

fn failed(mut p: HopProbe, e: &io::Error) -> HopProbe {
    p.outcome = Outcome::Error;
    p.failure = Some(Failure::from_io(e).as_str().into_owned());
    p
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn local_port(sock: &Socket) -> Option<u16> {
    sock.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
}

/// Records queued ICMP errors; the first time-exceeded sender is the hop.
fn note_errors(p: &mut HopProbe, errors: Vec<QueuedError>) {
    for e in errors {
        if !e.is_icmp() {
            continue;
        }
        let from = e.offender.map(|a| a.to_string());
        let kind = if e.is_time_exceeded() {
            if p.hop.is_none() {
                p.hop = from.clone();
            }
            "time_exceeded"
        } else {
            "unreachable"
        };
        let note = IcmpNote {
            from,
            kind: kind.to_string(),
            code: e.icmp_code,
            raw: false,
        };
        if !p.icmp.contains(&note) {
            p.icmp.push(note);
        }
    }
}

/// Adds what the raw sniffer saw on this connection.
fn add_sniffed(
    p: &mut HopProbe,
    sn: &Sniffer,
    addr: SocketAddrV4,
    local_port: u16,
    rst_at: Option<Instant>,
) {
    let segs = sn.segments_from(*addr.ip(), addr.port(), local_port);
    if let Some((_, s)) = segs.iter().find(|(_, s)| s.is_syn_ack()) {
        p.syn_ack_ip_ttl = Some(s.ip.ttl);
    }
    let first_rst = segs.iter().find(|(_, s)| s.is_rst());
    if let Some((at, s)) = first_rst {
        p.rst = true;
        p.rst_ip_ttl = Some(s.ip.ttl);
        p.rst_ip_id = Some(s.ip.ip_id);
        let later = segs
            .iter()
            .filter(|(t, x)| t > at && !x.is_rst() && x.payload_len > 0)
            .map(|(_, x)| x)
            .next();
        if let Some(x) = later {
            p.after_rst = Some(format!(
                "server data after the RST ({} bytes, ip ttl {})",
                x.payload_len, x.ip.ttl
            ));
        }
    }
    let rst_time = first_rst.map(|(t, _)| *t).or(rst_at);
    for (at, e) in sn.icmp_about(*addr.ip(), addr.port(), local_port) {
        let time_exceeded = e.kind == probes::raw::packet::IcmpErrorKind::TimeExceeded;
        let from = Some(e.ip.src.to_string());
        if time_exceeded && p.hop.is_none() {
            p.hop = from.clone();
        }
        if let (true, Some(r)) = (time_exceeded, rst_time) {
            if at > r && p.after_rst.is_none() {
                p.after_rst = Some(format!(
                    "icmp time exceeded from {} after the RST",
                    e.ip.src
                ));
            }
        }
        let kind = if time_exceeded {
            "time_exceeded"
        } else {
            "unreachable"
        };
        let dup = p
            .icmp
            .iter()
            .any(|n| n.from == from && n.kind == kind && n.code == e.code);
        if !dup {
            p.icmp.push(IcmpNote {
                from,
                kind: kind.to_string(),
                code: e.code,
                raw: true,
            });
        }
    }
}

/// Sets the outcome from ICMP notes when nothing else came back.
fn finish(mut p: HopProbe) -> HopProbe {
    if p.outcome == Outcome::Silence {
        if p.hop.is_some() {
            p.outcome = Outcome::TimeExceeded;
        } else if p.icmp.iter().any(|n| n.kind == "unreachable") {
            p.outcome = Outcome::Unreachable;
        } else if p.icmp.iter().any(|n| n.kind.starts_with("icmp_error")) {
            p.outcome = Outcome::IcmpError;
        } else if p.failure.is_some() {
            p.outcome = Outcome::Error;
        }
    }
    p
}
