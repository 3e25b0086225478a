//! What `gatewatch run` calls: injected-RST forensics for every URL, and
//! the censor localisation of `--trace-blocked`.
//!
//! A run-wide raw sniffer (started once, only when CAP_NET_RAW allows)
//! keeps the IP header of every SYN-ACK and RST the host receives. After a
//! URL is measured, the RSTs from each endpoint it connected to are compared
//! with that endpoint's SYN-ACKs: a different IP TTL means the RST came
//! from somewhere else on the path (`tcp.rst_ttl_mismatch`). DNS reply TTLs
//! are already compared by the web measurement (`dns.ttl_mismatch`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use probes::raw::packet::TcpSegment;
use probes::raw::sniff::Sniffer;
use probes::raw::Capabilities;
use probes::Failure;

use super::{trace_url, TraceSettings};
use crate::model::{InjectionEvidence, VerdictStatus, WebTestKeys};

/// `x_injection` kind: an RST whose IP TTL differs from the SYN-ACK's.
pub const RST_TTL_MISMATCH: &str = "tcp.rst_ttl_mismatch";

/// The run-wide sniffer, or why there is none.
#[derive(Debug)]
pub struct RstWatch {
    sniffer: Option<Sniffer>,
    reason: Option<String>,
}

/// Starts the run-wide sniffer on first use (call it before measuring, so
/// the URL's packets are seen).
pub fn rst_watch() -> &'static RstWatch {
    static WATCH: OnceLock<RstWatch> = OnceLock::new();
    WATCH.get_or_init(|| {
        let caps = Capabilities::detect();
        if !caps.raw {
            let why = caps.skip_reason().unwrap_or("no_cap_net_raw").to_string();
            return RstWatch {
                sniffer: None,
                reason: Some(why),
            };
        }
        match Sniffer::start(false) {
            Ok(s) => RstWatch {
                sniffer: Some(s),
                reason: None,
            },
            Err(e) => RstWatch {
                sniffer: None,
                reason: Some(format!("raw_sniffer: {e}")),
            },
        }
    })
}

impl RstWatch {
    /// Adds `tcp.rst_ttl_mismatch` evidence to `keys` for RSTs received
    /// since `since`; without the sniffer, records in `x_skipped` that RSTs
    /// seen in this measurement could not be fingerprinted.
    pub async fn annotate(&self, keys: &mut WebTestKeys, since: Instant) {
        let endpoints = reset_endpoints(keys);
        if endpoints.is_empty() {
            return;
        }
        let Some(sn) = &self.sniffer else {
            let why = self.reason.as_deref().unwrap_or("no_cap_net_raw");
            let skip = format!("rst_ttl: {why}");
            if !keys.x_skipped.contains(&skip) {
                keys.x_skipped.push(skip);
            }
            return;
        };
        // The sniffer thread may lag the socket by a few milliseconds.
        tokio::time::sleep(Duration::from_millis(60)).await;
        for ep in endpoints {
            let segs: Vec<TcpSegment> = sn
                .segments_from_peer(*ep.ip(), ep.port(), since)
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            if let Some(ev) = rst_ttl_evidence(ep, &segs) {
                if !keys.x_injection.contains(&ev) {
                    keys.x_injection.push(ev);
                }
            }
        }
    }
}

/// Evidence when an RST from `ep` arrived with an IP TTL no SYN-ACK from
/// `ep` had. `None` without an RST, or without a SYN-ACK to compare with.
pub fn rst_ttl_evidence(ep: SocketAddrV4, segs: &[TcpSegment]) -> Option<InjectionEvidence> {
    let syn_ack_ttls: Vec<u8> = segs
        .iter()
        .filter(|s| s.is_syn_ack())
        .map(|s| s.ip.ttl)
        .collect();
    let odd = segs
        .iter()
        .filter(|s| s.is_rst())
        .find(|r| !syn_ack_ttls.is_empty() && !syn_ack_ttls.contains(&r.ip.ttl))?;
    let mut ttls = syn_ack_ttls;
    ttls.sort_unstable();
    ttls.dedup();
    let shown: Vec<String> = ttls.iter().map(u8::to_string).collect();
    Some(InjectionEvidence {
        kind: RST_TTL_MISMATCH.to_string(),
        target: ep.to_string(),
        detail: format!(
            "RST with IP TTL {} (IP-ID {}) while the server's SYN-ACKs arrived with TTL {}: \
             the RST was sent from another distance (injected)",
            odd.ip.ttl,
            odd.ip.ip_id,
            shown.join("/")
        ),
    })
}

/// IPv4 endpoints whose connection, handshake or request ended in a reset.
fn reset_endpoints(keys: &WebTestKeys) -> Vec<SocketAddrV4> {
    let is_reset = |f: &Option<Failure>| {
        matches!(
            f,
            Some(Failure::ConnectionReset | Failure::ConnectionRefused)
        )
    };
    let mut out: Vec<SocketAddrV4> = Vec::new();
    let mut add = |a: Option<SocketAddr>| {
        if let Some(SocketAddr::V4(v4)) = a {
            if !out.contains(&v4) {
                out.push(v4);
            }
        }
    };
    for c in &keys.tcp_connect {
        if is_reset(&c.status.failure) {
            add(c.endpoint());
        }
    }
    for t in &keys.tls_handshakes {
        if is_reset(&t.failure) {
            add(t.address.parse().ok());
        }
    }
    out
}

/// For `run --trace-blocked`: the trace report of `url` as JSON for
/// `test_keys.x_trace`, when the verdict says blocked. `resolver` is the
/// run's first UDP resolver (else the system's). Bounded to 90 s.
pub async fn trace_blocked(
    url: &str,
    keys: &WebTestKeys,
    resolver: Option<SocketAddr>,
) -> Option<serde_json::Value> {
    let blocked = keys
        .x_verdict
        .as_ref()
        .is_some_and(|v| v.status == VerdictStatus::Blocked);
    if !blocked {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let settings = TraceSettings {
        resolver,
        address: pick_address(keys).map(std::net::IpAddr::V4),
        max_time: Duration::from_secs(90),
        ..TraceSettings::default()
    };
    let report = trace_url(&parsed, &settings).await;
    serde_json::to_value(report).ok()
}

/// The site's genuine IPv4 address: one the control resolved (and we tried,
/// if any), else the first we connected to.
pub fn pick_address(keys: &WebTestKeys) -> Option<Ipv4Addr> {
    let v4 = |s: &str| match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let control: Vec<Ipv4Addr> = keys
        .control
        .as_ref()
        .map(|c| c.dns.addrs.iter().filter_map(|a| v4(a)).collect())
        .unwrap_or_default();
    let tried: Vec<Ipv4Addr> = keys.tcp_connect.iter().filter_map(|c| v4(&c.ip)).collect();
    control
        .iter()
        .find(|a| tried.contains(a))
        .or(control.first())
        .or(tried.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::raw::packet::IpHeader;

    fn seg(ttl: u8, flags: u8) -> TcpSegment {
        TcpSegment {
            ip: IpHeader {
                src: Ipv4Addr::new(203, 0, 113, 40),
                dst: Ipv4Addr::new(198, 51, 100, 10),
                ttl,
                ip_id: 0,
                protocol: 6,
            },
            src_port: 443,
            dst_port: 40000,
            flags,
            seq: 1,
            window: 0,
            payload_len: 0,
        }
    }

    const SYN_ACK: u8 = 0x12;
    const RST: u8 = 0x04;

    #[test]
    fn an_rst_from_a_closer_hop_is_flagged() {
        let ep: SocketAddrV4 = "203.0.113.40:443".parse().unwrap();
        let ev = rst_ttl_evidence(ep, &[seg(62, SYN_ACK), seg(63, RST)]).unwrap();
        assert_eq!(ev.kind, RST_TTL_MISMATCH);
        assert_eq!(ev.target, "203.0.113.40:443");
        assert!(ev.detail.contains("TTL 63"), "{}", ev.detail);
        assert!(ev.detail.contains("TTL 62"), "{}", ev.detail);
    }

    #[test]
    fn the_servers_own_rst_or_no_reference_is_not_flagged() {
        let ep: SocketAddrV4 = "203.0.113.40:443".parse().unwrap();
        assert!(rst_ttl_evidence(ep, &[seg(62, SYN_ACK), seg(62, RST)]).is_none());
        assert!(
            rst_ttl_evidence(ep, &[seg(63, RST)]).is_none(),
            "no SYN-ACK"
        );
        assert!(
            rst_ttl_evidence(ep, &[seg(62, SYN_ACK)]).is_none(),
            "no RST"
        );
    }

    #[tokio::test]
    async fn without_raw_sockets_a_reset_is_recorded_as_not_fingerprinted() {
        let watch = RstWatch {
            sniffer: None,
            reason: Some("no_cap_net_raw".into()),
        };
        let mut keys = WebTestKeys::default();
        watch.annotate(&mut keys, Instant::now()).await;
        assert!(keys.x_skipped.is_empty(), "no reset, nothing to say");
        let mut reset = probes::records::TcpConnect {
            ip: "203.0.113.40".into(),
            port: 443,
            ..Default::default()
        };
        reset.status.failure = Some(Failure::ConnectionRefused);
        keys.tcp_connect = vec![reset.clone(), reset];
        watch.annotate(&mut keys, Instant::now()).await;
        watch.annotate(&mut keys, Instant::now()).await;
        assert_eq!(keys.x_skipped, vec!["rst_ttl: no_cap_net_raw".to_string()]);
        assert!(keys.x_injection.is_empty());
    }

    #[test]
    fn the_address_prefers_what_the_control_resolved() {
        let mut keys = WebTestKeys::default();
        assert_eq!(pick_address(&keys), None);
        let tcp = |ip: &str| probes::records::TcpConnect {
            ip: ip.to_string(),
            port: 443,
            ..Default::default()
        };
        keys.tcp_connect = vec![tcp("192.0.2.66"), tcp("203.0.113.40")];
        assert_eq!(pick_address(&keys), Some(Ipv4Addr::new(192, 0, 2, 66)));
        let mut control = crate::control::protocol::ControlResponse::default();
        control.dns.addrs = vec!["2001:db8::1".into(), "203.0.113.40".into()];
        keys.control = Some(control);
        assert_eq!(pick_address(&keys), Some(Ipv4Addr::new(203, 0, 113, 40)));
    }
}
