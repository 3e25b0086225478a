//! A raw-socket sniffer (CAP_NET_RAW): every inbound TCP segment and ICMP
//! error the host receives, with the IP header the kernel's sockets hide.
//!
//! A Linux raw socket for `IPPROTO_TCP` receives a copy of each inbound
//! segment while the kernel still runs our ordinary connections, so the IP
//! TTL and IP-ID of an RST can be compared with the SYN-ACK of the same
//! "server". pnet's Layer3 channel keeps the IP header (Layer4 strips it).
//! The pnet API blocks: each channel runs on its own thread until the
//! [`Sniffer`] is dropped.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::tcp::TcpFlags::{RST, SYN};
use pnet::packet::Packet;
use pnet::transport::{ipv4_packet_iter, transport_channel, TransportChannelType};

use super::packet::{parse_icmp_error, parse_tcp, IcmpError, TcpSegment};

/// At most this many packets are kept; when full, the older half is dropped.
pub const MAX_KEPT: usize = 100_000;

/// What was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// An ICMP time-exceeded or unreachable message.
    Icmp(IcmpError),
}

/// One captured packet with its arrival time.
#[derive(Clone, Copy, Debug)]
pub struct Captured {
    /// When the sniffer read it.
    pub at: Instant,
    /// What it was.
    pub seen: Seen,
}

/// A running sniffer; stops its threads when dropped.
#[derive(Debug)]
pub struct Sniffer {
    kept: Arc<Mutex<Vec<Captured>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sniffer {
    /// Opens Layer3 raw channels for TCP and ICMP and starts reading.
    /// Keeps ICMP errors and TCP segments with SYN or RST set, and with
    /// `keep_data` also segments carrying payload. Fails with
    /// `PermissionDenied` without CAP_NET_RAW.
    pub fn start(keep_data: bool) -> io::Result<Sniffer> {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for proto in [IpNextHeaderProtocols::Tcp, IpNextHeaderProtocols::Icmp] {
            let (k, st) = (Arc::clone(&kept), Arc::clone(&stop));
            threads.push(spawn_reader(proto, k, st, keep_data)?);
        }
        Ok(Sniffer {
            kept,
            stop,
            threads,
        })
    }

    /// Everything captured so far.
    pub fn snapshot(&self) -> Vec<Captured> {
        self.kept.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// TCP segments from `peer:peer_port` (to any local port) that arrived
    /// at or after `since`, in arrival order.
    pub fn segments_from_peer(
        &self,
        peer: Ipv4Addr,
        peer_port: u16,
        since: Instant,
    ) -> Vec<(Instant, TcpSegment)> {
        self.snapshot()
            .into_iter()
            .filter_map(|c| match c.seen {
                Seen::Tcp(t) if c.at >= since && t.ip.src == peer && t.src_port == peer_port => {
                    Some((c.at, t))
                }
                _ => None,
            })
            .collect()
    }

    /// TCP segments from `peer:peer_port` to our `local_port`, in arrival
    /// order.
    pub fn segments_from(
        &self,
        peer: Ipv4Addr,
        peer_port: u16,
        local_port: u16,
    ) -> Vec<(Instant, TcpSegment)> {
        self.snapshot()
            .into_iter()
            .filter_map(|c| match c.seen {
                Seen::Tcp(t)
                    if t.ip.src == peer && t.src_port == peer_port && t.dst_port == local_port =>
                {
                    Some((c.at, t))
                }
                _ => None,
            })
            .collect()
    }

    /// ICMP errors quoting a packet we sent from `local_port` to
    /// `peer:peer_port`, in arrival order.
    pub fn icmp_about(
        &self,
        peer: Ipv4Addr,
        peer_port: u16,
        local_port: u16,
    ) -> Vec<(Instant, IcmpError)> {
        self.snapshot()
            .into_iter()
            .filter_map(|c| match c.seen {
                Seen::Icmp(e)
                    if e.quoted.is_some_and(|q| {
                        q.ip.dst == peer
                            && q.dst_port == Some(peer_port)
                            && q.src_port == Some(local_port)
                    }) =>
                {
                    Some((c.at, e))
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn_reader(
    proto: IpNextHeaderProtocol,
    kept: Arc<Mutex<Vec<Captured>>>,
    stop: Arc<AtomicBool>,
    keep_data: bool,
) -> io::Result<JoinHandle<()>> {
    let (_tx, mut rx) = transport_channel(65535, TransportChannelType::Layer3(proto))?;
    std::thread::Builder::new()
        .name(format!("gatewatch-sniff-{}", proto.0))
        .spawn(move || {
            let mut iter = ipv4_packet_iter(&mut rx);
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some((pkt, _))) = iter.next_with_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let at = Instant::now();
                let bytes = pkt.packet();
                let seen = match parse_tcp(bytes) {
                    Some(t) if keep_data || t.flags & (SYN | RST) != 0 => Some(Seen::Tcp(t)),
                    Some(_) => None,
                    None => parse_icmp_error(bytes).map(Seen::Icmp),
                };
                if let (Some(seen), Ok(mut v)) = (seen, kept.lock()) {
                    if v.len() >= MAX_KEPT {
                        v.drain(..MAX_KEPT / 2);
                    }
                    v.push(Captured { at, seen });
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn sees_the_rst_of_a_closed_port_with_its_ip_header() {
        let Ok(sniffer) = Sniffer::start(false) else {
            println!("skipped: raw sockets need CAP_NET_RAW");
            return;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let since = Instant::now();
        let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let deadline = Instant::now() + Duration::from_secs(2);
        let rst = loop {
            let segs = sniffer.segments_from_peer(Ipv4Addr::LOCALHOST, port, since);
            if let Some((_, s)) = segs.into_iter().find(|(_, s)| s.is_rst()) {
                break s;
            }
            assert!(Instant::now() < deadline, "no RST captured");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            rst.ip.ttl, 64,
            "loopback: the kernel's default TTL, undecremented"
        );
        assert_eq!(rst.ip.dst, Ipv4Addr::LOCALHOST);
    }
}
