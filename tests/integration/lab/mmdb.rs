//! A tiny MaxMind DB writer (IPv4 tree, 24-bit records, ASN records only),
//! so the lab can hand the probe an ASN database for its documentation
//! addresses (`--asn-db`): enough to tell "another node of the site's
//! network" from "a middlebox in another network".
//!
//! Format (MaxMind DB 2.0): a binary search tree over the address bits
//! (each node two 24-bit records: a node number, `node_count` for "no
//! data", or `node_count + 16 + offset` into the data section), 16 zero
//! bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and the metadata
//! map.

use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// Writes an ASN database mapping each `(network, prefix length)` to
/// `(asn, organisation)`.
pub fn write_asn_db(path: &Path, nets: &[(Ipv4Addr, u8, u32, &str)]) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut tree: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    for &(net, len, asn, org) in nets {
        let offset = u32::try_from(data.len()).expect("small database");
        map_header(&mut data, 2);
        string(&mut data, "autonomous_system_number");
        uint(&mut data, 6, u64::from(asn));
        string(&mut data, "autonomous_system_organization");
        string(&mut data, org);
        let bits = u32::from(net);
        let mut node = 0usize;
        for depth in 0..len {
            let bit = usize::from((bits >> (31 - depth)) & 1 == 1);
            if depth + 1 == len {
                tree[node][bit] = Rec::Data(offset);
                break;
            }
            node = match tree[node][bit] {
                Rec::Node(n) => n as usize,
                _ => {
                    tree.push([Rec::Empty, Rec::Empty]);
                    let n = tree.len() - 1;
                    tree[node][bit] = Rec::Node(u32::try_from(n).expect("small tree"));
                    n
                }
            };
        }
    }
    let node_count = u32::try_from(tree.len()).expect("small tree");
    let mut out = Vec::new();
    for node in &tree {
        for r in node {
            let v = match *r {
                Rec::Empty => node_count,
                Rec::Node(n) => n,
                Rec::Data(o) => node_count + 16 + o,
            };
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let m = &mut out;
    map_header(m, 9);
    string(m, "binary_format_major_version");
    uint(m, 5, 2);
    string(m, "binary_format_minor_version");
    uint(m, 5, 0);
    string(m, "build_epoch");
    uint(m, 9, 1_700_000_000);
    string(m, "database_type");
    string(m, "GeoLite2-ASN");
    string(m, "description");
    map_header(m, 1);
    string(m, "en");
    string(m, "gatewatch lab");
    string(m, "ip_version");
    uint(m, 5, 4);
    string(m, "languages");
    m.extend_from_slice(&[1, 11 - 7]);
    string(m, "en");
    string(m, "node_count");
    uint(m, 6, u64::from(node_count));
    string(m, "record_size");
    uint(m, 5, 24);
    std::fs::write(path, out)
}

fn map_header(out: &mut Vec<u8>, n: u8) {
    out.push((7 << 5) | n);
}

fn string(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 29 {
        out.push((2 << 5) | u8::try_from(len).expect("short"));
    } else {
        out.push((2 << 5) | 29);
        out.push(u8::try_from(len - 29).expect("short string"));
    }
    out.extend_from_slice(s.as_bytes());
}

/// An unsigned integer of MaxMind type `t` (5 uint16, 6 uint32, 9 uint64),
/// in as few bytes as it needs.
fn uint(out: &mut Vec<u8>, t: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let n = u8::try_from(8 - skip).expect("at most 8 bytes");
    if t <= 7 {
        out.push((t << 5) | n);
    } else {
        out.push(n);
        out.push(t - 7);
    }
    out.extend_from_slice(&bytes[skip..]);
}

#[test]
fn the_probe_reads_the_lab_asn_database() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("asn.mmdb");
    write_asn_db(
        &p,
        &[
            (Ipv4Addr::new(203, 0, 113, 0), 25, 64500, "Lab Sites"),
            (Ipv4Addr::new(203, 0, 113, 248), 29, 64999, "Lab ISP boxes"),
        ],
    )
    .unwrap();
    let db = gatewatch::geo::GeoDb::open(Some(&p), None).unwrap();
    assert_eq!(db.asn("203.0.113.10".parse().unwrap()), Some(64500));
    assert_eq!(db.asn("203.0.113.249".parse().unwrap()), Some(64999));
    assert_eq!(db.asn("203.0.113.200".parse().unwrap()), None);
    assert_eq!(db.asn("198.51.100.1".parse().unwrap()), None);
    assert_eq!(
        db.lookup("203.0.113.250".parse().unwrap())
            .network_name
            .as_deref(),
        Some("Lab ISP boxes")
    );
}
