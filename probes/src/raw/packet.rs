//! Parsing whole IPv4 packets as a Layer3 raw socket delivers them: the IP
//! header fields that fingerprint an injector (TTL, IP-ID), TCP flags, and
//! ICMP errors together with the header of the packet they quote.

use std::net::Ipv4Addr;

use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{TcpFlags, TcpPacket};
use pnet_packet::Packet;
use serde::{Deserialize, Serialize};

/// The IPv4 header fields we keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpHeader {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live as received.
    pub ttl: u8,
    /// Identification field.
    pub ip_id: u16,
    /// The protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub protocol: u8,
}

/// One TCP segment with its IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSegment {
    /// The IP header.
    pub ip: IpHeader,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Advertised window.
    pub window: u16,
    /// Bytes of payload.
    pub payload_len: usize,
}

impl TcpSegment {
    /// The RST flag is set.
    pub fn is_rst(&self) -> bool {
        self.flags & TcpFlags::RST != 0
    }

    /// SYN and ACK are both set.
    pub fn is_syn_ack(&self) -> bool {
        self.flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK
    }
}

/// The kind of ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcmpErrorKind {
    /// Type 11: the TTL ran out at the sending router.
    TimeExceeded,
    /// Type 3, with its code (0 net, 1 host, 3 port, 13 administratively
    /// prohibited, ...).
    DestinationUnreachable,
}

/// The header of the packet an ICMP error quotes (our own probe, as the
/// router saw it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedPacket {
    /// The quoted IP header (its TTL is what was left on arrival).
    pub ip: IpHeader,
    /// Source port of the quoted TCP or UDP header.
    pub src_port: Option<u16>,
    /// Destination port of the quoted TCP or UDP header.
    pub dst_port: Option<u16>,
}

/// An ICMP error message with the packet it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpError {
    /// The IP header of the ICMP message (its `src` is the router).
    pub ip: IpHeader,
    /// Time exceeded or unreachable.
    pub kind: IcmpErrorKind,
    /// The ICMP code.
    pub code: u8,
    /// The quoted packet, when the message carries a readable one.
    pub quoted: Option<QuotedPacket>,
}

/// The IPv4 header of a whole packet; `None` when it is not IPv4 or is
/// truncated.
pub fn parse_ip(buf: &[u8]) -> Option<IpHeader> {
    let ip = Ipv4Packet::new(buf)?;
    if ip.get_version() != 4 || ip.get_header_length() < 5 {
        return None;
    }
    Some(header_of(&ip))
}

/// A TCP segment in a whole IPv4 packet; `None` for anything else.
pub fn parse_tcp(buf: &[u8]) -> Option<TcpSegment> {
    let ip = Ipv4Packet::new(buf)?;
    if ip.get_version() != 4 || ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
        return None;
    }
    let tcp = TcpPacket::new(ip.payload())?;
    let header_len = usize::from(tcp.get_data_offset()) * 4;
    Some(TcpSegment {
        ip: header_of(&ip),
        src_port: tcp.get_source(),
        dst_port: tcp.get_destination(),
        flags: tcp.get_flags(),
        seq: tcp.get_sequence(),
        window: tcp.get_window(),
        payload_len: ip.payload().len().saturating_sub(header_len),
    })
}

/// An ICMP time-exceeded or destination-unreachable message in a whole IPv4
/// packet; `None` for other ICMP types and anything else.
pub fn parse_icmp_error(buf: &[u8]) -> Option<IcmpError> {
    let ip = Ipv4Packet::new(buf)?;
    if ip.get_version() != 4 || ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp {
        return None;
    }
    let icmp = IcmpPacket::new(ip.payload())?;
    let kind = match icmp.get_icmp_type() {
        IcmpTypes::TimeExceeded => IcmpErrorKind::TimeExceeded,
        IcmpTypes::DestinationUnreachable => IcmpErrorKind::DestinationUnreachable,
        _ => return None,
    };
    // Type, code, checksum, then 4 unused bytes, then the quoted packet.
    let quoted = ip.payload().get(8..).and_then(parse_quoted);
    Some(IcmpError {
        ip: header_of(&ip),
        kind,
        code: icmp.get_icmp_code().0,
        quoted,
    })
}

/// The quoted IP header and the ports of the 8 transport bytes after it
/// (RFC 792 guarantees those 8 bytes; Linux quotes more).
fn parse_quoted(buf: &[u8]) -> Option<QuotedPacket> {
    let ip = Ipv4Packet::new(buf)?;
    if ip.get_version() != 4 {
        return None;
    }
    let header_len = usize::from(ip.get_header_length()) * 4;
    let transport = buf.get(header_len..)?;
    let proto = ip.get_next_level_protocol();
    let has_ports = proto == IpNextHeaderProtocols::Tcp || proto == IpNextHeaderProtocols::Udp;
    let port = |at: usize| {
        transport
            .get(at..at + 2)
            .filter(|_| has_ports)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    Some(QuotedPacket {
        ip: header_of(&ip),
        src_port: port(0),
        dst_port: port(2),
    })
}

fn header_of(ip: &Ipv4Packet<'_>) -> IpHeader {
    IpHeader {
        src: ip.get_source(),
        dst: ip.get_destination(),
        ttl: ip.get_ttl(),
        ip_id: ip.get_identification(),
        protocol: ip.get_next_level_protocol().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmp::{IcmpCode, MutableIcmpPacket};
    use pnet_packet::ip::IpNextHeaderProtocol;
    use pnet_packet::ipv4::{checksum, MutableIpv4Packet};
    use pnet_packet::tcp::MutableTcpPacket;
    use pnet_packet::udp::MutableUdpPacket;

    const PROBE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 40);

    fn ipv4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        id: u16,
        proto: IpNextHeaderProtocol,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + payload.len()];
        let mut ip = MutableIpv4Packet::new(&mut buf).unwrap();
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length((20 + payload.len()) as u16);
        ip.set_ttl(ttl);
        ip.set_identification(id);
        ip.set_next_level_protocol(proto);
        ip.set_source(src);
        ip.set_destination(dst);
        ip.set_payload(payload);
        let sum = checksum(&ip.to_immutable());
        ip.set_checksum(sum);
        buf
    }

    fn tcp(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + payload.len()];
        let mut t = MutableTcpPacket::new(&mut buf).unwrap();
        t.set_source(src_port);
        t.set_destination(dst_port);
        t.set_data_offset(5);
        t.set_flags(flags);
        t.set_sequence(1000);
        t.set_window(29200);
        t.set_payload(payload);
        buf
    }

    fn icmp(kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 8 + quoted.len()];
        let mut m = MutableIcmpPacket::new(&mut buf).unwrap();
        m.set_icmp_type(pnet_packet::icmp::IcmpType(kind));
        m.set_icmp_code(IcmpCode(code));
        buf[8..].copy_from_slice(quoted);
        buf
    }

    #[test]
    fn an_injected_rst_keeps_its_ttl_and_ip_id() {
        let seg = tcp(443, 40000, TcpFlags::RST | TcpFlags::ACK, &[]);
        let pkt = ipv4(SERVER, PROBE, 63, 0, IpNextHeaderProtocols::Tcp, &seg);
        let got = parse_tcp(&pkt).unwrap();
        assert!(got.is_rst());
        assert!(!got.is_syn_ack());
        assert_eq!(got.ip.ttl, 63);
        assert_eq!(got.ip.ip_id, 0);
        assert_eq!(got.ip.src, SERVER);
        assert_eq!((got.src_port, got.dst_port), (443, 40000));
        assert_eq!(got.payload_len, 0);
        assert_eq!(got.window, 29200);
    }

    #[test]
    fn a_syn_ack_with_data_length() {
        let seg = tcp(443, 40000, TcpFlags::SYN | TcpFlags::ACK, b"hello");
        let pkt = ipv4(SERVER, PROBE, 62, 4321, IpNextHeaderProtocols::Tcp, &seg);
        let got = parse_tcp(&pkt).unwrap();
        assert!(got.is_syn_ack());
        assert_eq!(got.payload_len, 5);
        assert_eq!(got.ip.ip_id, 4321);
        assert_eq!(parse_ip(&pkt).unwrap().ttl, 62);
    }

    #[test]
    fn udp_is_not_tcp_and_garbage_is_nothing() {
        let mut u = vec![0u8; 8];
        MutableUdpPacket::new(&mut u).unwrap().set_source(53);
        let pkt = ipv4(SERVER, PROBE, 60, 1, IpNextHeaderProtocols::Udp, &u);
        assert!(parse_tcp(&pkt).is_none());
        assert!(parse_icmp_error(&pkt).is_none());
        assert_eq!(parse_ip(&pkt).unwrap().protocol, 17);
        assert!(parse_ip(&[0x45, 0, 0]).is_none());
        assert!(parse_tcp(&[0x60; 40]).is_none());
    }

    #[test]
    fn time_exceeded_names_the_router_and_quotes_our_probe() {
        // Our ClientHello segment as router 2 saw it: TTL 1 left.
        let seg = tcp(40000, 443, TcpFlags::PSH | TcpFlags::ACK, b"\x16\x03\x01");
        let ours = ipv4(PROBE, SERVER, 1, 777, IpNextHeaderProtocols::Tcp, &seg);
        let msg = icmp(11, 0, &ours[..28]);
        let pkt = ipv4(ROUTER, PROBE, 63, 9, IpNextHeaderProtocols::Icmp, &msg);
        let got = parse_icmp_error(&pkt).unwrap();
        assert_eq!(got.kind, IcmpErrorKind::TimeExceeded);
        assert_eq!(got.code, 0);
        assert_eq!(got.ip.src, ROUTER);
        let q = got.quoted.unwrap();
        assert_eq!(q.ip.src, PROBE);
        assert_eq!(q.ip.dst, SERVER);
        assert_eq!(q.ip.ttl, 1);
        assert_eq!(q.ip.ip_id, 777);
        assert_eq!(q.src_port, Some(40000));
        assert_eq!(q.dst_port, Some(443));
    }

    #[test]
    fn port_unreachable_quoting_a_dns_query() {
        let mut u = vec![0u8; 8];
        {
            let mut p = MutableUdpPacket::new(&mut u).unwrap();
            p.set_source(50000);
            p.set_destination(53);
        }
        let ours = ipv4(PROBE, SERVER, 62, 5, IpNextHeaderProtocols::Udp, &u);
        let msg = icmp(3, 3, &ours);
        let pkt = ipv4(SERVER, PROBE, 62, 10, IpNextHeaderProtocols::Icmp, &msg);
        let got = parse_icmp_error(&pkt).unwrap();
        assert_eq!(got.kind, IcmpErrorKind::DestinationUnreachable);
        assert_eq!(got.code, 3);
        assert_eq!(got.quoted.unwrap().dst_port, Some(53));
    }

    #[test]
    fn a_short_quote_has_no_ports_and_echo_is_not_an_error() {
        let ours = ipv4(PROBE, SERVER, 1, 1, IpNextHeaderProtocols::Tcp, &[0u8; 20]);
        let msg = icmp(11, 0, &ours[..21]);
        let pkt = ipv4(ROUTER, PROBE, 63, 9, IpNextHeaderProtocols::Icmp, &msg);
        let q = parse_icmp_error(&pkt).unwrap().quoted.unwrap();
        assert_eq!((q.src_port, q.dst_port), (None, None));
        let echo = icmp(0, 0, &[]);
        let pkt = ipv4(ROUTER, PROBE, 63, 9, IpNextHeaderProtocols::Icmp, &echo);
        assert!(parse_icmp_error(&pkt).is_none());
    }
}
