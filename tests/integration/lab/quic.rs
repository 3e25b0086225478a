//! HTTP/3 in the lab: `gatewatch run --quic` in the probe namespace, the
//! real control server, quinn QUIC servers beside the sites' TLS servers,
//! and the censor dropping UDP/443 to one site with nft.
//!
//! Rows: a site whose QUIC answers (reachable), the same kind of site with
//! UDP/443 dropped at the censor (`quic.timeout`; the headline verdict over
//! TCP stays `accessible`), a site whose QUIC is filtered by SNI
//! (`quic.sni_block`), and the twin, a site without HTTP/3 (`down` for QUIC:
//! the control cannot handshake either; not censorship).
//!
//! The SNI filter: a QUIC Initial is encrypted with keys derived from its
//! destination connection id, so a per-packet string match never sees the
//! name. The censor's box ([`sni_filter`]) gets the site's UDP/443 by an nft
//! redirect, derives the client's Initial keys (quinn's crypto), removes
//! header protection, decrypts the Initials, reassembles the CRYPTO frames
//! into the ClientHello, and drops the flow when the name is in it; other
//! flows are relayed to the site.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use quinn::crypto::ServerConfig as _;
use quinn::ConnectionId;
use tokio::net::UdpSocket;

use super::e2e::{probe_command, read_results, start_control, write_list};
use super::scenarios::{Censor, Expect, Scenario, Site};
use super::topology::CENSOR_DOWN_IF;
use super::world::World;
use crate::quic_fake;

const OPEN: Expect = Expect {
    status: "accessible",
    layer: None,
    blocking: "false",
    mechanism: None,
};

/// What the censor does to a site's UDP/443.
#[derive(Clone, Copy, PartialEq)]
enum QuicCensor {
    None,
    /// nft drops it.
    Drop,
    /// nft redirects it to the SNI filter box.
    Sni,
}

/// Where the censor's QUIC SNI filter listens.
const SNI_FILTER_PORT: u16 = 8444;

/// (name, QUIC server at the site, censor, expected `x_quic_verdict`
/// status and mechanism).
const ROWS: [(&str, bool, QuicCensor, &str, Option<&str>); 4] = [
    ("h3-open", true, QuicCensor::None, "accessible", None),
    (
        "h3-udp-drop",
        true,
        QuicCensor::Drop,
        "blocked",
        Some("quic.timeout"),
    ),
    (
        "h3-sni",
        true,
        QuicCensor::Sni,
        "blocked",
        Some("quic.sni_block"),
    ),
    ("no-h3", false, QuicCensor::None, "down", None),
];

#[test]
fn udp_drop_and_sni_filtering_are_told_apart_and_a_site_without_h3_is_not_censorship() {
    let scenarios: Vec<Scenario> = ROWS
        .iter()
        .map(|r| Scenario {
            name: r.0,
            scheme: "https",
            site: Site::Static,
            censor: Censor::None,
            expect: OPEN,
        })
        .collect();
    let Some(world) = World::start_or_skip(&scenarios) else {
        return;
    };
    // QUIC servers beside the TLS servers, with the same certificate.
    let mut tls = (*world.site_tls).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    let crypto = Arc::new(crypto);
    let config = quinn::ServerConfig::with_crypto(crypto.clone());
    let mut binds: Vec<SocketAddr> = Vec::new();
    let mut drops = String::new();
    let mut redirects = String::new();
    let mut filtered = None;
    for r in &ROWS {
        let (sc, ip) = world.find(r.0);
        if r.1 {
            binds.push(SocketAddr::from((ip, 443)));
        }
        match r.2 {
            QuicCensor::None => {}
            QuicCensor::Drop => drops.push_str(&format!(
                "    iifname \"{CENSOR_DOWN_IF}\" ip daddr {ip} udp dport 443 drop\n"
            )),
            QuicCensor::Sni => {
                redirects.push_str(&format!(
                    "    iifname \"{CENSOR_DOWN_IF}\" ip daddr {ip} udp dport 443 redirect to :{SNI_FILTER_PORT}\n"
                ));
                filtered = Some((sc.host(), SocketAddr::from((ip, 443))));
            }
        }
    }
    let (host, upstream) = filtered.expect("an SNI row");
    let filter = world
        .topo
        .censor
        .serve(
            || std::net::UdpSocket::bind(("0.0.0.0", SNI_FILTER_PORT)),
            move |sock, stop| async move {
                tokio::select! {
                    () = sni_filter(sock, upstream, host, crypto) => {}
                    () = stop.cancelled() => {}
                }
            },
        )
        .expect("SNI filter box");
    world.lab.keep(filter);
    let service = world
        .topo
        .internet
        .serve(
            move || {
                binds
                    .iter()
                    .map(|a| quic_fake::try_spawn(config.clone(), *a, true))
                    .collect::<std::io::Result<Vec<_>>>()
            },
            |servers, stop| async move {
                stop.cancelled().await;
                drop(servers);
            },
        )
        .expect("QUIC servers");
    world.lab.keep(service);
    world
        .topo
        .censor
        .nft(&format!(
            "table inet gwlab_quic {{\n  chain drop_udp443 {{\n    type filter hook prerouting priority -140; policy accept;\n{drops}  }}\n  chain sni_box {{\n    type nat hook prerouting priority -100; policy accept;\n{redirects}  }}\n}}\n"
        ))
        .expect("nft");

    let control = start_control(&world);
    let list = write_list(&world, "quic.txt", &world.scenarios);
    let out = world.dir.path().join("quic.jsonl");
    let run = probe_command(&world, &list, &out, &control)
        .arg("--quic")
        .output()
        .unwrap();
    let results = read_results(&out);
    let mut bad = Vec::new();
    for (name, _, _, status, mechanism) in ROWS {
        let (sc, ip) = world.find(name);
        let Some(m) = results.get(&sc.url()) else {
            bad.push(format!("{name}: no result"));
            continue;
        };
        let tk = &m["test_keys"];
        let headline = tk["x_verdict"]["status"].as_str();
        let q = &tk["x_quic_verdict"];
        let got = (headline, q["status"].as_str(), q["mechanism"].as_str());
        let want = (Some("accessible"), Some(status), mechanism);
        let key = format!("{ip}:443");
        let control_quic = tk["control"]["quic_handshake"][&key]["status"].as_bool();
        let probe_quic: Vec<(String, String)> = tk["quic_handshakes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        (
                            h["server_name"].as_str().unwrap_or("").to_string(),
                            h["failure"].as_str().unwrap_or("ok").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{name:<12} want {want:?} got {got:?} control QUIC {control_quic:?} probe QUIC {probe_quic:?}"
        );
        if got != want {
            bad.push(format!("{name}: want {want:?}, got {got:?}: {}", q));
        }
        // Where QUIC gets through, one GET over HTTP/3 at each end.
        if name == "h3-open" {
            let probe_h3 = tk["x_http3_requests"][0]["response"]["code"].as_i64();
            let control_h3 = tk["control"]["http3_request"]["status_code"].as_i64();
            if (probe_h3, control_h3) != (Some(200), Some(200)) {
                bad.push(format!(
                    "{name}: HTTP/3 GET {probe_h3:?} / control {control_h3:?}"
                ));
            }
        }
        // The control is not behind the censor: its QUIC handshake works
        // wherever a QUIC server runs.
        let has_h3 = name != "no-h3";
        if control_quic != Some(has_h3) {
            bad.push(format!("{name}: control QUIC {control_quic:?}"));
        }
    }
    assert!(
        bad.is_empty() && run.status.success(),
        "{bad:#?}\ngatewatch run: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The censor's QUIC SNI filter: every datagram a client sends to the
/// filtered site arrives here (nft redirect). A client's Initials are held
/// until their ClientHello is complete; a ClientHello naming `host` drops
/// the flow, any other is relayed to `upstream` (and the replies back).
async fn sni_filter(
    sock: std::net::UdpSocket,
    upstream: SocketAddr,
    host: String,
    keys: Arc<quinn::crypto::rustls::QuicServerConfig>,
) {
    /// What is decided for one client.
    enum State {
        Undecided(Vec<Vec<u8>>, Vec<(u64, Vec<u8>)>),
        Pass,
        Block,
    }
    struct Flow {
        up: Arc<UdpSocket>,
        state: State,
    }
    let _ = sock.set_nonblocking(true);
    let Ok(sock) = UdpSocket::from_std(sock).map(Arc::new) else {
        return;
    };
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let dgram = buf[..n].to_vec();
        if let std::collections::hash_map::Entry::Vacant(slot) = flows.entry(client) {
            let Ok(up) = UdpSocket::bind("0.0.0.0:0").await else {
                continue;
            };
            if up.connect(upstream).await.is_err() {
                continue;
            }
            let up = Arc::new(up);
            let (up2, down) = (Arc::clone(&up), Arc::clone(&sock));
            tokio::spawn(async move {
                let mut b = vec![0u8; 65536];
                while let Ok(n) = up2.recv(&mut b).await {
                    let _ = down.send_to(&b[..n], client).await;
                }
            });
            let state = State::Undecided(Vec::new(), Vec::new());
            slot.insert(Flow { up, state });
        }
        let Some(flow) = flows.get_mut(&client) else {
            continue;
        };
        match &mut flow.state {
            State::Block => {}
            State::Pass => {
                let _ = flow.up.send(&dgram).await;
            }
            State::Undecided(held, crypto) => {
                initial_crypto(&dgram, &keys, crypto);
                held.push(dgram);
                let hello = contiguous(crypto);
                if hello.windows(host.len()).any(|w| w == host.as_bytes()) {
                    flow.state = State::Block;
                } else if hello_complete(&hello) || held.len() > 8 {
                    for d in held.iter() {
                        let _ = flow.up.send(d).await;
                    }
                    flow.state = State::Pass;
                }
            }
        }
    }
}

/// Decrypts the first packet of a datagram when it is a client Initial and
/// adds its CRYPTO frames (offset, data) to `out`.
fn initial_crypto(
    dgram: &[u8],
    keys: &quinn::crypto::rustls::QuicServerConfig,
    out: &mut Vec<(u64, Vec<u8>)>,
) -> Option<()> {
    let mut pkt = dgram.to_vec();
    // Long header, fixed bit, type Initial (00).
    if pkt.len() < 7 || pkt[0] & 0xc0 != 0xc0 || (pkt[0] >> 4) & 0x03 != 0 {
        return None;
    }
    let version = u32::from_be_bytes(pkt[1..5].try_into().ok()?);
    let mut i = 5;
    let dcid_len = *pkt.get(i)? as usize;
    let dcid = pkt.get(i + 1..i + 1 + dcid_len)?.to_vec();
    i += 1 + dcid_len;
    i += 1 + *pkt.get(i)? as usize;
    let (token_len, l) = varint(pkt.get(i..)?)?;
    i += l + token_len as usize;
    let (length, l) = varint(pkt.get(i..)?)?;
    i += l;
    let pn_offset = i;
    let end = pn_offset + length as usize;
    if end > pkt.len() {
        return None;
    }
    let k = keys.initial_keys(version, &ConnectionId::new(&dcid)).ok()?;
    k.header.remote.decrypt(pn_offset, &mut pkt[..end]);
    let pn_len = (pkt[0] & 0x03) as usize + 1;
    let pn = pkt[pn_offset..pn_offset + pn_len]
        .iter()
        .fold(0u64, |a, b| a << 8 | u64::from(*b));
    let header = pkt[..pn_offset + pn_len].to_vec();
    let mut payload = BytesMut::from(&pkt[pn_offset + pn_len..end]);
    k.packet.remote.decrypt(pn, &header, &mut payload).ok()?;
    let p = &payload[..];
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            0x00 | 0x01 => i += 1,
            0x06 => {
                let (off, l) = varint(p.get(i + 1..)?)?;
                i += 1 + l;
                let (len, l) = varint(p.get(i..)?)?;
                i += l;
                out.push((off, p.get(i..i + len as usize)?.to_vec()));
                i += len as usize;
            }
            _ => break,
        }
    }
    Some(())
}

/// A QUIC variable-length integer and its size.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let v = bytes[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |a, x| a << 8 | u64::from(*x));
    Some((v, len))
}

/// The CRYPTO stream from offset 0 as far as it is contiguous.
fn contiguous(parts: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut sorted: Vec<&(u64, Vec<u8>)> = parts.iter().collect();
    sorted.sort_by_key(|p| p.0);
    let mut out: Vec<u8> = Vec::new();
    for (off, data) in sorted {
        let off = *off as usize;
        if off > out.len() {
            break;
        }
        if off + data.len() > out.len() {
            out.extend_from_slice(&data[out.len() - off..]);
        }
    }
    out
}

/// Whether the bytes hold a whole TLS handshake message (the ClientHello).
fn hello_complete(hello: &[u8]) -> bool {
    hello.len() >= 4
        && hello.len()
            >= 4 + ((hello[1] as usize) << 16 | (hello[2] as usize) << 8 | hello[3] as usize)
}
