//! Address classification: bogons and other special-purpose ranges, and a
//! lenient IP parser that reads the legacy `inet_aton` spellings.
//!
//! The ranges follow IANA's IPv4 and IPv6 Special-Purpose Address
//! Registries (RFC 6890 and successors). Addresses that embed an IPv4
//! address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`, the deprecated IPv4-compatible `::/96`) are judged by the
//! embedded IPv4 address, so `::ffff:127.0.0.1` is as special as
//! `127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for addresses that are not globally routable unicast: loopback,
/// private, link-local, CGNAT, multicast, documentation, benchmarking,
/// reserved, unspecified, and the IPv6 equivalents (IPv4-mapped and other
/// embeddings are unwrapped first).
pub fn is_special_purpose(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

/// Parses an IP address the way `inet_aton` and URL parsers do, so an SSRF
/// guard sees through disguised spellings of an address: dotted quads with
/// 1–4 parts (`127.1`, `10.1.2`), each part decimal, hexadecimal (`0x7f`) or
/// octal (leading `0`, `0177`), a bare 32-bit number (`2130706433`,
/// `0x7f000001`), an optional single trailing dot, and IPv6 literals
/// (optionally in brackets, with any `%zone` suffix dropped).
///
/// Returns `None` for anything that is not an address (e.g. a host name).
pub fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if unbracketed.contains(':') {
        let no_zone = unbracketed.split('%').next().unwrap_or(unbracketed);
        return no_zone.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    parse_inet_aton(s).map(IpAddr::V4)
}

fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let nums = parts
        .iter()
        .map(|p| parse_part(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 0xff) {
        return None;
    }
    // The last part fills the remaining bytes.
    let last_bits = 8 * (4 - head.len() as u32);
    if last_bits < 64 && *last >= (1u64 << last_bits) {
        return None;
    }
    let mut value: u64 = 0;
    for (i, &n) in head.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    value |= last;
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// One `inet_aton` component: `0x..` hex, `0..` octal, else decimal.
fn parse_part(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is zero for inet_aton.
        return if radix == 16 { Some(0) } else { None };
    }
    if !digits.chars().all(|c| c.is_digit(radix)) || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// IPv4 special-purpose blocks as (network, prefix length).
const V4_SPECIAL: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, includes 255.255.255.255
];

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let a = u32::from(ip);
    V4_SPECIAL.iter().any(|&(net, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        a & mask == u32::from(Ipv4Addr::from(net)) & mask
    })
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    // Embeddings of IPv4: judge the embedded address.
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return is_special_v4(low32);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return is_special_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    if bits >> 32 == 0 {
        // ::, ::1 and the deprecated IPv4-compatible ::/96.
        return true;
    }
    // Only 2000::/3 is global unicast; everything else (ULA fc00::/7,
    // link-local fe80::/10, multicast ff00::/8, discard 100::/64,
    // NAT64 local-use 64:ff9b:1::/48, SRv6 5f00::/16, ...) is special.
    if !in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return true;
    }
    // Special blocks inside 2000::/3.
    in_v6(ip, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23) // IETF protocol assignments
        || in_v6(ip, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32) // documentation
        || in_v6(ip, Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20) // documentation (RFC 9637)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(s: &str) -> bool {
        is_special_purpose(s.parse().unwrap())
    }

    #[test]
    fn ipv4_registry() {
        for s in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(special(s), "{s} should be special");
        }
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.215.14",
        ] {
            assert!(!special(s), "{s} should be global");
        }
    }

    #[test]
    fn ipv6_registry() {
        for s in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "2001::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "3fff::1",
        ] {
            assert!(special(s), "{s} should be special");
        }
        for s in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!special(s), "{s} should be global");
        }
    }

    #[test]
    fn every_ipv6_encoding_of_a_special_address_is_special() {
        for s in [
            // Loopback and unspecified, in every spelling.
            "::1",
            "0:0:0:0:0:0:0:1",
            "::",
            "::0.0.0.1",
            // Link-local fe80::/10 (fe80.. to febf..), site-local fec0::/10.
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            // ULA fc00::/7.
            "fc00::1",
            "fdff:ffff::1",
            // IPv4-mapped ::ffff:0:0/96 carrying special IPv4.
            "::ffff:127.0.0.1",
            "0:0:0:0:0:ffff:7f00:1",
            "::ffff:10.1.2.3",
            "::ffff:192.168.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            // IPv4-translated ::ffff:0:0:0/96 and IPv4-compatible ::/96.
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "::127.0.0.1",
            "::8.8.8.8",
            // NAT64 64:ff9b::/96 with special IPv4; local-use 64:ff9b:1::/48.
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::808:808",
            // 6to4 2002::/16 embedding special IPv4.
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
            // Documentation, Teredo and other IETF blocks, discard.
            "2001:db8::1",
            "2001:db8:ffff:ffff::1",
            "3fff:fff::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:10::1",
            "2001:20::1",
            "100::1",
            // Multicast ff00::/8.
            "ff02::1",
            "ff05::1:3",
            "ff0e::1",
        ] {
            assert!(special(s), "{s} should be special");
            // The same through the lenient parser, bracketed, with a zone.
            let parsed = parse_ip_lenient(&format!("[{s}%eth0]")).unwrap();
            assert!(is_special_purpose(parsed), "[{s}%eth0] should be special");
        }
        for s in [
            "2001:4860:4860::8888",
            "2400:cb00::1",
            "::ffff:93.184.215.14",
            "64:ff9b::93.184.215.14",
            "2002:5db8:d70e::1",
        ] {
            assert!(!special(s), "{s} should be global");
        }
    }

    #[test]
    fn lenient_parser_reads_inet_aton_forms() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "127.0.1",
            "0177.1",
            "127.0.0.1.",
            " 127.0.0.1 ",
            "017700000001",
        ] {
            assert_eq!(parse_ip_lenient(s), Some(lo), "{s}");
        }
        assert_eq!(parse_ip_lenient("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(
            parse_ip_lenient("fe80::1%eth0"),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            parse_ip_lenient("::ffff:7f00:1"),
            Some("::ffff:127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_ip_lenient("0"), Some("0.0.0.0".parse().unwrap()));
        assert_eq!(
            parse_ip_lenient("10.258"),
            Some("10.0.1.2".parse().unwrap())
        );
        for s in [
            "",
            "example.com",
            "256.0.0.1",
            "1.2.3.4.5",
            "4294967296",
            "1..2",
            "08.0.0.1",
            "0x1g",
            "127.0.0.1..",
            "1.2.65536",
        ] {
            assert_eq!(parse_ip_lenient(s), None, "{s}");
        }
    }
}
