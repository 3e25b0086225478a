//! The lab's DNS: an honest public resolver (internet namespace), the ISP's
//! lying resolver (censor namespace; forwards what it does not lie about),
//! and an on-path injector (censor namespace) that sniffs queries crossing
//! the censor with an AF_PACKET socket and races a forged reply out of a raw
//! socket while the genuine query continues.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket, UdpPacket};
use pnet_packet::Packet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::netns::{Ns, Service};
use super::scenarios::Lie;
use super::topology::addr;

/// The answer the injector forges: a public-looking address nobody owns
/// (routable-but-wrong answers are what on-path injectors typically send).
pub const INJECTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 251);

/// How long the public resolver waits before answering names that are
/// injected on the way: the injector sits closer to the probe than the
/// resolver, so its forgery must win the race, as it does in the wild.
pub const FAR_AWAY: Duration = Duration::from_millis(150);

/// The truth: names and their A records.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    /// Host (lower case, no trailing dot) → address.
    pub a: BTreeMap<String, Ipv4Addr>,
    /// Host → IPv6 address (answered to AAAA questions; a host with an A
    /// record and none here gets an empty answer).
    pub aaaa: BTreeMap<String, Ipv6Addr>,
    /// Hosts answered only after [`FAR_AWAY`].
    pub far: BTreeSet<String>,
}

/// Starts the honest public resolver on `PUBLIC_RESOLVER:53` (UDP) in `ns`.
pub fn public_resolver(ns: &Ns, zone: Zone) -> io::Result<Service> {
    let zone = Arc::new(zone);
    ns.serve(
        || UdpSocket::bind((addr::PUBLIC_RESOLVER, 53)),
        move |sock, stop| async move {
            serve_udp(sock, stop, move |query, _| {
                let zone = zone.clone();
                async move {
                    let host = host_of(&query)?;
                    if zone.far.contains(&host) {
                        tokio::time::sleep(FAR_AWAY).await;
                    }
                    let six = zone.aaaa.get(&host).filter(|_| is_aaaa(&query));
                    if let Some(ip6) = six {
                        return Some(reply_aaaa(&query, *ip6));
                    }
                    Some(match zone.a.get(&host) {
                        Some(ip) => reply(&query, ResponseCode::NoError, Some(*ip)),
                        None => reply(&query, ResponseCode::NXDomain, None),
                    })
                }
            })
            .await;
        },
    )
}

/// Starts the ISP resolver on `ISP_RESOLVER:53` (UDP) in `ns`: it lies as
/// `lies` says and forwards every other query to the public resolver.
pub fn isp_resolver(ns: &Ns, lies: BTreeMap<String, Lie>) -> io::Result<Service> {
    let lies = Arc::new(lies);
    ns.serve(
        || UdpSocket::bind((addr::ISP_RESOLVER, 53)),
        move |sock, stop| async move {
            serve_udp(sock, stop, move |query, wire| {
                let lies = lies.clone();
                async move {
                    let host = host_of(&query)?;
                    match lies.get(&host) {
                        Some(Lie::Silent) => None,
                        Some(Lie::Nxdomain) => Some(reply(&query, ResponseCode::NXDomain, None)),
                        Some(Lie::Answer(ip)) => {
                            Some(reply(&query, ResponseCode::NoError, Some(*ip)))
                        }
                        None => forward(&wire).await,
                    }
                }
            })
            .await;
        },
    )
}

/// Starts the on-path injector in the censor namespace: every A query for a
/// host in `hosts` that the probe sends through the censor — to the public
/// resolver or to any other address, even one with no DNS server — gets a
/// forged answer ([`INJECTED`]) from the queried address, sent the moment
/// the query arrives (whatever its remaining TTL); the query itself is not
/// touched. Queries to the censor's own ISP resolver are left alone.
pub fn injector(ns: &Ns, hosts: BTreeSet<String>) -> io::Result<Service> {
    ns.serve_blocking(
        || {
            // ETH_P_IP in network byte order, as AF_PACKET wants it.
            let eth_p_ip = i32::from((libc::ETH_P_IP as u16).to_be());
            let sniff = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(eth_p_ip)))?;
            sniff.set_read_timeout(Some(Duration::from_millis(100)))?;
            let send = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )?;
            Ok((sniff, send))
        },
        move |(sniff, send), stop| {
            let mut seen = HashSet::new();
            let mut buf = vec![0u8; 65536];
            while !stop.is_cancelled() {
                let Ok(n) = (&sniff).read(&mut buf) else {
                    continue; // the read timeout: look at the token again
                };
                if let Some((to, forged)) = forge(&buf[..n], &hosts, &mut seen) {
                    let _ = send.send_to(&forged, &SocketAddrV4::new(to, 0).into());
                }
            }
        },
    )
}

/// The forged IP packet (destination, bytes) answering a sniffed query, or
/// `None` when the packet is not a query to intercept (or was seen already:
/// a forwarded packet shows up once per interface).
fn forge(
    packet: &[u8],
    hosts: &BTreeSet<String>,
    seen: &mut HashSet<(Ipv4Addr, u16, u16)>,
) -> Option<(Ipv4Addr, Vec<u8>)> {
    let ip = Ipv4Packet::new(packet)?;
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp
        || ip.get_destination() == addr::ISP_RESOLVER
        || !ipnet::Ipv4Net::new(addr::PROBE, 29)
            .ok()?
            .contains(&ip.get_source())
    {
        return None;
    }
    let udp = UdpPacket::new(ip.payload())?;
    if udp.get_destination() != 53 {
        return None;
    }
    let query = Message::from_vec(udp.payload()).ok()?;
    let q = query.queries.first()?;
    if q.query_type() != RecordType::A || !hosts.contains(&host_of(&query)?) {
        return None;
    }
    if !seen.insert((ip.get_source(), udp.get_source(), query.metadata.id)) {
        return None;
    }
    let dns = reply(&query, ResponseCode::NoError, Some(INJECTED));
    let (client, client_port) = (ip.get_source(), udp.get_source());
    let queried = ip.get_destination();

    let udp_len = 8 + dns.len();
    let total = 20 + udp_len;
    let mut out = vec![0u8; total];
    {
        let mut u = MutableUdpPacket::new(&mut out[20..])?;
        u.set_source(53);
        u.set_destination(client_port);
        u.set_length(u16::try_from(udp_len).ok()?);
        u.set_payload(&dns);
        let sum = udp::ipv4_checksum(&u.to_immutable(), &queried, &client);
        u.set_checksum(sum);
    }
    {
        let mut h = MutableIpv4Packet::new(&mut out)?;
        h.set_version(4);
        h.set_header_length(5);
        h.set_total_length(u16::try_from(total).ok()?);
        h.set_identification(0x4242);
        h.set_ttl(64);
        h.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        h.set_source(queried);
        h.set_destination(client);
        let sum = ipv4::checksum(&h.to_immutable());
        h.set_checksum(sum);
    }
    Some((client, out))
}

/// Answers each datagram with what `answer` returns (`None`: stay silent),
/// one task per query so slow answers do not hold up others.
async fn serve_udp<F, Fut>(sock: UdpSocket, stop: CancellationToken, answer: F)
where
    F: Fn(Message, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<u8>>> + Send + 'static,
{
    sock.set_nonblocking(true).expect("nonblocking");
    let sock = Arc::new(tokio::net::UdpSocket::from_std(sock).expect("tokio udp"));
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            () = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r { Ok(v) => v, Err(_) => continue },
        };
        let wire = buf[..n].to_vec();
        let Ok(query) = Message::from_vec(&wire) else {
            continue;
        };
        let fut = answer(query, wire);
        let sock = sock.clone();
        tokio::spawn(async move {
            if let Some(out) = fut.await {
                let _ = sock.send_to(&out, from).await;
            }
        });
    }
}

/// Relays a query to the public resolver and returns its reply verbatim.
async fn forward(wire: &[u8]) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok()?;
    let upstream = SocketAddr::from((addr::PUBLIC_RESOLVER, 53));
    sock.send_to(wire, upstream).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A response to `query` with `rcode` and, for an A question, `a`.
pub fn reply(query: &Message, rcode: ResponseCode, a: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.add_queries(query.queries.clone());
    if let (Some(ip), Some(q)) = (a, query.queries.first()) {
        if q.query_type() == RecordType::A {
            m.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(ip))));
        }
    }
    m.to_vec().expect("encode a DNS reply")
}

fn is_aaaa(query: &Message) -> bool {
    query
        .queries
        .first()
        .is_some_and(|q| q.query_type() == RecordType::AAAA)
}

/// A NOERROR response to an AAAA `query` answering `ip`.
pub fn reply_aaaa(query: &Message, ip: Ipv6Addr) -> Vec<u8> {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.clone());
    if let Some(q) = query.queries.first() {
        m.add_answer(Record::from_rdata(
            q.name().clone(),
            60,
            RData::AAAA(AAAA(ip)),
        ));
    }
    m.to_vec().expect("encode a DNS reply")
}

/// The question's host, lower case, without the trailing dot.
pub fn host_of(m: &Message) -> Option<String> {
    let q = m.queries.first()?;
    Some(
        q.name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase(),
    )
}
