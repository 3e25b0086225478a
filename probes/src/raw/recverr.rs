//! Unprivileged ICMP and TTL observation on ordinary sockets.
//!
//! With `IP_RECVERR` set, the kernel queues every ICMP error matched to the
//! socket (time exceeded, unreachable) on its error queue, with the address
//! of the router that sent it (the "offender"); `recvmsg(MSG_ERRQUEUE)`
//! reads them. This is how `tracepath` works without root. With
//! `IP_RECVTTL`, every datagram received carries the IP TTL it arrived with.
//! IPv6 sockets do the same with `IPV6_RECVERR` (ICMPv6 errors).

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrStorage,
};
use serde::{Deserialize, Serialize};

/// `ee_origin` of an error that came from an ICMP message.
pub const ORIGIN_ICMP: u8 = 2;
/// ICMP type 11.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP type 3.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// `ee_origin` of an error that came from an ICMPv6 message.
pub const ORIGIN_ICMP6: u8 = 3;
/// ICMPv6 type 3 (time exceeded).
pub const ICMP6_TIME_EXCEEDED: u8 = 3;

/// One entry of a socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedError {
    /// The router or host that sent the ICMP message.
    pub offender: Option<IpAddr>,
    /// `ee_origin` (2 for ICMP, 3 for ICMPv6, 1 for local errors).
    pub origin: u8,
    /// The ICMP type (11 time exceeded, 3 unreachable; ICMPv6: 3 time
    /// exceeded, 1 unreachable).
    pub icmp_type: u8,
    /// The ICMP code.
    pub icmp_code: u8,
    /// The errno the kernel mapped it to.
    pub errno: u32,
}

impl QueuedError {
    /// An ICMP time exceeded.
    pub fn is_time_exceeded(&self) -> bool {
        (self.origin == ORIGIN_ICMP && self.icmp_type == ICMP_TIME_EXCEEDED)
            || (self.origin == ORIGIN_ICMP6 && self.icmp_type == ICMP6_TIME_EXCEEDED)
    }

    /// Came from an ICMP or ICMPv6 message (not a local error).
    pub fn is_icmp(&self) -> bool {
        self.origin == ORIGIN_ICMP || self.origin == ORIGIN_ICMP6
    }
}

/// Turns on `IP_RECVERR` (queue ICMP errors with their sender).
pub fn enable_recverr<F: AsFd>(fd: &F) -> io::Result<()> {
    setsockopt(fd, sockopt::Ipv4RecvErr, &true).map_err(io::Error::from)
}

/// Turns on `IPV6_RECVERR` (queue ICMPv6 errors with their sender).
pub fn enable_recverr_v6<F: AsFd>(fd: &F) -> io::Result<()> {
    setsockopt(fd, sockopt::Ipv6RecvErr, &true).map_err(io::Error::from)
}

/// Turns on `IP_RECVTTL` (report each datagram's IP TTL).
pub fn enable_recv_ttl<F: AsFd>(fd: &F) -> io::Result<()> {
    setsockopt(fd, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)
}

/// Reads everything queued on the socket's error queue, without blocking.
pub fn drain_error_queue<F: AsRawFd>(fd: &F) -> Vec<QueuedError> {
    let mut out = Vec::new();
    // Bounded: a socket cannot have more than a few hundred queued errors.
    for _ in 0..256 {
        let mut data = [0u8; 512];
        let mut iov = [IoSliceMut::new(&mut data)];
        // Room for the error and the offender, plus the IP_TTL / IP_PKTINFO
        // messages the kernel adds when those options are on too (a
        // truncated control buffer would lose the entry).
        let mut cmsg = vec![0u8; 512];
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let Ok(msg) = recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
        else {
            break;
        };
        let Ok(cmsgs) = msg.cmsgs() else { continue };
        for c in cmsgs {
            let (ee, offender) = match c {
                ControlMessageOwned::Ipv4RecvErr(ee, offender) => (
                    ee,
                    offender.map(|sa| IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))),
                ),
                ControlMessageOwned::Ipv6RecvErr(ee, offender) => (
                    ee,
                    offender.map(|sa| IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr))),
                ),
                _ => continue,
            };
            out.push(QueuedError {
                offender,
                origin: ee.ee_origin,
                icmp_type: ee.ee_type,
                icmp_code: ee.ee_code,
                errno: ee.ee_errno,
            });
        }
    }
    out
}

/// Receives one datagram into `buf` (blocking per the socket's timeout);
/// returns its length and the IP TTL it arrived with (needs
/// [`enable_recv_ttl`]).
pub fn recv_with_ttl<F: AsRawFd>(fd: &F, buf: &mut [u8]) -> io::Result<(usize, Option<u8>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = vec![0u8; 256];
    let msg = recvmsg::<SockaddrIn>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let mut ttl = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4Ttl(t) = c {
                ttl = u8::try_from(t).ok();
            }
        }
    }
    Ok((msg.bytes, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn recv_ttl_on_loopback_is_the_senders_ttl() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        enable_recv_ttl(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_ttl(37).unwrap();
        tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let (n, ttl) = recv_with_ttl(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(ttl, Some(37));
    }

    #[test]
    fn port_unreachable_lands_on_the_error_queue() {
        // A port nobody listens on: bind, note the port, close.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_recverr(&s).unwrap();
        // IP_TTL control messages ride along on the error queue too.
        enable_recv_ttl(&s).unwrap();
        s.connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send(b"query").unwrap();
        let mut buf = [0u8; 16];
        let err = s.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let q = drain_error_queue(&s);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].origin, ORIGIN_ICMP);
        assert_eq!((q[0].icmp_type, q[0].icmp_code), (ICMP_DEST_UNREACH, 3));
        assert_eq!(q[0].offender, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!q[0].is_time_exceeded());
    }

    #[test]
    fn icmpv6_port_unreachable_lands_on_the_error_queue() {
        let Ok(probe) = UdpSocket::bind("[::1]:0") else {
            println!("skipped: no IPv6 loopback here");
            return;
        };
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let s = UdpSocket::bind("[::1]:0").unwrap();
        enable_recverr_v6(&s).unwrap();
        s.connect(("::1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send(b"query").unwrap();
        let mut buf = [0u8; 16];
        let err = s.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let q = drain_error_queue(&s);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].origin, ORIGIN_ICMP6);
        // ICMPv6 destination unreachable (1), port unreachable (4).
        assert_eq!((q[0].icmp_type, q[0].icmp_code), (1, 4));
        assert_eq!(q[0].offender, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(q[0].is_icmp() && !q[0].is_time_exceeded());
    }
}
