//! Learning the probe's own addresses so they can be scrubbed, even when the
//! control does not report them.
//!
//! `gatewatch control serve` tells the probe its public address
//! (`x_client_addr`), but OONI's test helpers do not, and `--control none`
//! has no control at all. So before measuring, the run also asks a STUN
//! server (`--stun HOST:PORT`, a binding request as every WebRTC client
//! sends; `none` to skip) and reads the machine's own globally routable
//! interface addresses. Every address learnt is scrubbed from the results;
//! only the STUN and control answers are used for the ASN lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The STUN server asked by default.
pub const DEFAULT_STUN: &str = "stun.l.google.com:19302";

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Asks `server` (`host:port`) for our public address with one STUN binding
/// request; `None` when it cannot be reached or answers nonsense.
pub async fn stun_lookup(server: &str, timeout: Duration) -> Option<IpAddr> {
    tokio::time::timeout(timeout, stun_once(server))
        .await
        .ok()
        .flatten()
}

async fn stun_once(server: &str) -> Option<IpAddr> {
    let addr: SocketAddr = tokio::net::lookup_host(server).await.ok()?.next()?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    let txid: [u8; 12] = rand::random();
    let req = binding_request(&txid);
    let mut buf = [0u8; 1500];
    // UDP may lose a datagram: try three times.
    for _ in 0..3 {
        sock.send_to(&req, addr).await.ok()?;
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await
        {
            if from == addr {
                if let Some(ip) = parse_binding_response(&buf[..n], &txid) {
                    return Some(ip);
                }
            }
        }
    }
    None
}

/// A STUN binding request (RFC 5389) with this transaction id.
pub fn binding_request(txid: &[u8; 12]) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    v.extend_from_slice(txid);
    v
}

/// The mapped address of a binding success response for `txid`.
pub fn parse_binding_response(msg: &[u8], txid: &[u8; 12]) -> Option<IpAddr> {
    if msg.len() < 20
        || u16::from_be_bytes([msg[0], msg[1]]) != BINDING_SUCCESS
        || u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]) != MAGIC_COOKIE
        || &msg[8..20] != txid
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    let attrs = msg.get(20..20 + len)?;
    let mut plain = None;
    let mut i = 0;
    while i + 4 <= attrs.len() {
        let ty = u16::from_be_bytes([attrs[i], attrs[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[i + 2], attrs[i + 3]]));
        let val = attrs.get(i + 4..i + 4 + alen)?;
        match ty {
            ATTR_XOR_MAPPED_ADDRESS => return decode_address(val, Some(txid)),
            ATTR_MAPPED_ADDRESS => plain = decode_address(val, None),
            _ => {}
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    plain
}

fn decode_address(val: &[u8], xor_txid: Option<&[u8; 12]>) -> Option<IpAddr> {
    let family = *val.get(1)?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match family {
        0x01 => {
            let mut b: [u8; 4] = val.get(4..8)?.try_into().ok()?;
            if xor_txid.is_some() {
                for (x, k) in b.iter_mut().zip(cookie) {
                    *x ^= k;
                }
            }
            Some(IpAddr::from(b))
        }
        0x02 => {
            let mut b: [u8; 16] = val.get(4..20)?.try_into().ok()?;
            if let Some(txid) = xor_txid {
                let key: Vec<u8> = cookie.iter().chain(txid.iter()).copied().collect();
                for (x, k) in b.iter_mut().zip(key) {
                    *x ^= k;
                }
            }
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// The machine's own globally routable interface addresses (a public
/// address directly on an interface, as on a VPS or some mobile links).
pub fn global_interface_addrs() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !probes::ipclass::is_special_purpose(ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(txid: &[u8; 12], attr: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
        v.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        v.extend_from_slice(txid);
        v.extend_from_slice(&attr.to_be_bytes());
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn reads_xor_mapped_and_mapped_addresses() {
        let txid = [7u8; 12];
        let ip = [203u8, 0, 113, 77];
        let c = MAGIC_COOKIE.to_be_bytes();
        let xored: Vec<u8> = ip.iter().zip(c).map(|(a, b)| a ^ b).collect();
        let mut val = vec![0, 1, 0x12, 0x34];
        val.extend_from_slice(&xored);
        let got = parse_binding_response(&response(&txid, ATTR_XOR_MAPPED_ADDRESS, &val), &txid);
        assert_eq!(got, Some("203.0.113.77".parse().unwrap()));
        let mut val = vec![0, 1, 0x12, 0x34];
        val.extend_from_slice(&ip);
        let got = parse_binding_response(&response(&txid, ATTR_MAPPED_ADDRESS, &val), &txid);
        assert_eq!(got, Some("203.0.113.77".parse().unwrap()));
        // Another transaction's answer, or garbage, is nothing.
        assert_eq!(
            parse_binding_response(&response(&[8; 12], ATTR_MAPPED_ADDRESS, &val), &txid),
            None
        );
        assert_eq!(parse_binding_response(b"short", &txid), None);
    }

    #[test]
    fn reads_an_ipv6_xor_mapped_address() {
        let txid = [3u8; 12];
        let ip: Ipv6Addr = "2001:db8::42".parse().unwrap();
        let key: Vec<u8> = MAGIC_COOKIE.to_be_bytes().into_iter().chain(txid).collect();
        let mut val = vec![0, 2, 0, 0];
        val.extend(ip.octets().iter().zip(key).map(|(a, b)| a ^ b));
        let got = parse_binding_response(&response(&txid, ATTR_XOR_MAPPED_ADDRESS, &val), &txid);
        assert_eq!(got, Some(IpAddr::V6(ip)));
    }
}
