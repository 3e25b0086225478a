//! The HTTP/3 verdict (`x_quic_verdict`), beside the headline verdict and
//! never changing it: the HTTPS verdict over TCP stays what `x_verdict`
//! says.
//!
//! Each address the probe made a QUIC handshake to with the site's name is
//! judged on its own:
//! - completed → HTTP/3 reachable;
//! - failed for a reason of ours (no UDP route, no IPv6 route, permission,
//!   a local error) → not measured;
//! - failed while the control's QUIC handshake to the same `ip:port` also
//!   failed → the site offers no HTTP/3 there (`down`, not censorship);
//! - failed while the control's completed, and a handshake with a harmless
//!   name to the same address completed → `quic.sni_block` (the path filters
//!   QUIC by name; article 6 "disconnect", like a TLS handshake killed after
//!   the ClientHello);
//! - timed out while the control's completed, the harmless name timed out
//!   too (or was not tried), and TLS over TCP to the same address worked →
//!   `quic.timeout` (UDP/443 to the site's address dropped; article 6
//!   "block", like a dropped SYN).
//!
//! One address that completed makes HTTP/3 reachable. Without the control's
//! QUIC answer nothing is `blocked`; after a DNS block in the headline the
//! handshakes went to the censor's addresses and prove nothing.

use std::collections::BTreeMap;

use probes::records::TlsHandshake;
use probes::Failure;

use crate::control::protocol::ControlResponse;
use crate::model::{Measurement, Verdict, VerdictStatus};

/// The record tag of every QUIC handshake the probe made.
const TAG_QUIC: &str = "quic";
/// The record tag of a handshake with the harmless name.
const TAG_CONTROL_NAME: &str = "quic_control_name";

/// What one address showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finding {
    Reachable,
    OurLimit,
    NoHttp3,
    SniBlock,
    UdpDrop,
    Unclear,
}

/// The HTTP/3 verdict, or `None` when no QUIC handshake was made. When the
/// headline found the probe's DNS tampered with, the QUIC handshakes went
/// to the censor's addresses and say nothing about HTTP/3: `inconclusive`.
pub(crate) fn decide(m: &Measurement, headline: &Verdict) -> Option<Verdict> {
    let tk = &m.test_keys;
    let tagged = |h: &&TlsHandshake, tag: &str| h.tags.iter().any(|t| t == tag);
    let site: Vec<&TlsHandshake> = tk
        .quic_handshakes
        .iter()
        .filter(|h| tagged(h, TAG_QUIC) && !tagged(h, TAG_CONTROL_NAME))
        .collect();
    if site.is_empty() {
        return None;
    }
    let other: BTreeMap<&str, &TlsHandshake> = tk
        .quic_handshakes
        .iter()
        .filter(|h| tagged(h, TAG_CONTROL_NAME))
        .map(|h| (h.address.as_str(), h))
        .collect();
    let mut ev = Vec::new();
    if headline.status == VerdictStatus::Blocked && headline.layer.as_deref() == Some("dns") {
        ev.push("the probe's DNS answer was tampered with: its QUIC handshakes went to the censor's addresses".into());
        return Some(plain(VerdictStatus::Inconclusive, ev));
    }
    let mut findings = Vec::new();
    for h in site {
        let f = judge(h, other.get(h.address.as_str()).copied(), m, &mut ev);
        findings.push(f);
    }
    for tx in &tk.x_http3_requests {
        match &tx.failure {
            None => ev.push(format!(
                "an HTTP/3 GET over {} returned {}",
                tx.address, tx.response.code
            )),
            Some(f) => ev.push(format!("the HTTP/3 GET over {} failed ({f})", tx.address)),
        }
    }
    let has = |f: Finding| findings.contains(&f);
    let v = if has(Finding::Reachable) {
        plain(VerdictStatus::Accessible, ev)
    } else if has(Finding::SniBlock) {
        blocked("quic.sni_block", "disconnect", ev)
    } else if has(Finding::UdpDrop) {
        blocked("quic.timeout", "block", ev)
    } else if findings.iter().all(|f| *f == Finding::NoHttp3) {
        ev.push("the site does not complete QUIC handshakes from the control either: no HTTP/3 there, not censorship".into());
        plain(VerdictStatus::Down, ev)
    } else {
        plain(VerdictStatus::Inconclusive, ev)
    };
    Some(v)
}

/// Judges one address's handshake with the site's name.
fn judge(
    h: &TlsHandshake,
    other: Option<&TlsHandshake>,
    m: &Measurement,
    ev: &mut Vec<String>,
) -> Finding {
    let addr = &h.address;
    let Some(failure) = &h.failure else {
        ev.push(format!(
            "QUIC handshake with SNI {} to {addr} completed",
            h.server_name
        ));
        return Finding::Reachable;
    };
    if is_our_limit(failure) {
        ev.push(format!(
            "QUIC to {addr} not measured: {failure} is a limit of the probe's network, not evidence"
        ));
        return Finding::OurLimit;
    }
    let control = control_quic(m.test_keys.control.as_ref(), addr);
    match control {
        None => {
            ev.push(format!(
                "QUIC handshake to {addr} failed ({failure}) and the control has no QUIC result for it"
            ));
            return Finding::Unclear;
        }
        Some(false) => {
            ev.push(format!(
                "QUIC handshake to {addr} failed ({failure}) at the probe and at the control"
            ));
            return Finding::NoHttp3;
        }
        Some(true) => {}
    }
    if failure.is_certificate_error() {
        ev.push(format!(
            "QUIC handshake to {addr} presented a certificate refused for the name ({failure}) while the control's verified"
        ));
        return Finding::Unclear;
    }
    if let Some(o) = other {
        if o.failure.is_none() {
            ev.push(format!(
                "QUIC handshake with SNI {} to {addr} failed ({failure}) while the same handshake with SNI {} completed, and the control's completed",
                h.server_name, o.server_name
            ));
            return Finding::SniBlock;
        }
        if o.failure.as_ref().is_some_and(is_our_limit) {
            ev.push(format!(
                "QUIC to {addr} with a harmless name not measured ({})",
                o.failure
                    .as_ref()
                    .map(Failure::to_string)
                    .unwrap_or_default()
            ));
            return Finding::Unclear;
        }
    }
    let tcp_tls_ok = tls_over_tcp_ok(m, addr);
    if *failure == Failure::GenericTimeout && tcp_tls_ok {
        ev.push(format!(
            "QUIC handshake to {addr} got no answer{} while TLS over TCP to the same address worked and the control's QUIC handshake completed: UDP/443 is dropped",
            if other.is_some() {
                ", with the site's name and with a harmless one,"
            } else {
                ""
            }
        ));
        return Finding::UdpDrop;
    }
    ev.push(format!(
        "QUIC handshake to {addr} failed ({failure}) while the control's completed{}",
        if tcp_tls_ok {
            ""
        } else {
            "; TLS over TCP to the address did not work either"
        }
    ));
    Finding::Unclear
}

/// Failures that say the probe could not send at all (no route, e.g. no
/// IPv6 route; no permission; a local error): never the path's doing.
fn is_our_limit(f: &Failure) -> bool {
    matches!(
        f,
        Failure::NetworkUnreachable
            | Failure::HostUnreachable
            | Failure::NetworkDown
            | Failure::AddressNotAvailable
            | Failure::PermissionDenied
            | Failure::Interrupted
            | Failure::Unknown(_)
    )
}

/// The control's QUIC result for `ip:port`: `Some(true)` completed.
fn control_quic(control: Option<&ControlResponse>, addr: &str) -> Option<bool> {
    control?.quic_handshake.get(addr).map(|t| t.status)
}

/// Whether a TLS handshake over TCP to the same IP (any port) verified.
fn tls_over_tcp_ok(m: &Measurement, addr: &str) -> bool {
    let Ok(sa) = addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    m.test_keys.tls_handshakes.iter().any(|t| {
        t.failure.is_none()
            && t.address
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip() == sa.ip())
    })
}

fn plain(status: VerdictStatus, evidence: Vec<String>) -> Verdict {
    Verdict {
        status,
        layer: Some("quic".into()),
        evidence,
        ..Verdict::default()
    }
}

fn blocked(mech: &str, article6: &str, evidence: Vec<String>) -> Verdict {
    Verdict {
        status: VerdictStatus::Blocked,
        layer: Some("quic".into()),
        mechanism: Some(mech.into()),
        confidence: Some("likely".into()),
        nig_article6: Some(article6.into()),
        evidence,
        ..Verdict::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ControlTls;

    const ADDR: &str = "203.0.113.10:443";

    fn quic(sni: &str, failure: Option<Failure>, control_name: bool) -> TlsHandshake {
        let mut tags = vec!["depth=0".to_string(), TAG_QUIC.to_string()];
        if control_name {
            tags.push(TAG_CONTROL_NAME.to_string());
        }
        TlsHandshake {
            network: "udp".into(),
            address: ADDR.into(),
            server_name: sni.into(),
            failure,
            tags,
            ..TlsHandshake::default()
        }
    }

    fn tls_ok() -> TlsHandshake {
        TlsHandshake {
            network: "tcp".into(),
            address: ADDR.into(),
            ..TlsHandshake::default()
        }
    }

    fn measurement(
        quic: Vec<TlsHandshake>,
        tls: Vec<TlsHandshake>,
        control_quic: Option<bool>,
    ) -> Measurement {
        let mut m = Measurement::default();
        m.test_keys.quic_handshakes = quic;
        m.test_keys.tls_handshakes = tls;
        let mut c = ControlResponse::default();
        if let Some(status) = control_quic {
            c.quic_handshake.insert(
                ADDR.into(),
                ControlTls {
                    server_name: "site.example".into(),
                    status,
                    failure: (!status).then(|| "generic_timeout_error".into()),
                },
            );
        }
        m.test_keys.control = Some(c);
        m
    }

    fn decide_ok(m: &Measurement) -> Option<Verdict> {
        let headline = Verdict {
            status: VerdictStatus::Accessible,
            ..Verdict::default()
        };
        decide(m, &headline)
    }

    #[test]
    fn after_dns_tampering_quic_says_nothing() {
        let headline = Verdict {
            status: VerdictStatus::Blocked,
            layer: Some("dns".into()),
            ..Verdict::default()
        };
        let other = quic("example.org", None, true);
        let m = measurement(vec![site_timeout(), other], vec![tls_ok()], Some(true));
        assert_eq!(
            decide(&m, &headline).unwrap().status,
            VerdictStatus::Inconclusive
        );
    }

    fn site_timeout() -> TlsHandshake {
        quic("site.example", Some(Failure::GenericTimeout), false)
    }

    #[test]
    fn no_quic_measured_gives_no_verdict() {
        assert_eq!(
            decide_ok(&measurement(vec![], vec![tls_ok()], Some(true))),
            None
        );
    }

    #[test]
    fn a_completed_handshake_is_accessible() {
        let v = decide_ok(&measurement(
            vec![quic("site.example", None, false)],
            vec![tls_ok()],
            Some(true),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Accessible);
        assert_eq!(v.mechanism, None);
    }

    #[test]
    fn udp_drop_with_tcp_working_and_the_control_fine_is_quic_timeout() {
        let other = quic("example.org", Some(Failure::GenericTimeout), true);
        let v = decide_ok(&measurement(
            vec![site_timeout(), other],
            vec![tls_ok()],
            Some(true),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Blocked);
        assert_eq!(v.mechanism.as_deref(), Some("quic.timeout"));
        assert_eq!(v.layer.as_deref(), Some("quic"));
        assert_eq!(v.nig_article6.as_deref(), Some("block"));
        assert_eq!(v.confidence.as_deref(), Some("likely"));
    }

    #[test]
    fn name_filtering_is_quic_sni_block() {
        let other = quic("example.org", None, true);
        let v = decide_ok(&measurement(
            vec![site_timeout(), other],
            vec![tls_ok()],
            Some(true),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Blocked);
        assert_eq!(v.mechanism.as_deref(), Some("quic.sni_block"));
        assert_eq!(v.nig_article6.as_deref(), Some("disconnect"));
    }

    #[test]
    fn a_site_without_http3_is_down_not_blocked() {
        let v = decide_ok(&measurement(
            vec![site_timeout()],
            vec![tls_ok()],
            Some(false),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Down);
        assert!(v.evidence.iter().any(|e| e.contains("not censorship")));
    }

    #[test]
    fn our_own_limits_are_never_blocked() {
        for f in [
            Failure::NetworkUnreachable,
            Failure::HostUnreachable,
            Failure::Unknown("boom".into()),
        ] {
            let v = decide_ok(&measurement(
                vec![quic("site.example", Some(f.clone()), false)],
                vec![tls_ok()],
                Some(true),
            ))
            .unwrap();
            assert_eq!(v.status, VerdictStatus::Inconclusive, "{f}");
        }
        // The harmless name could not be sent either: no SNI conclusion.
        let other = quic("example.org", Some(Failure::NetworkUnreachable), true);
        let v = decide_ok(&measurement(
            vec![site_timeout(), other],
            vec![tls_ok()],
            Some(true),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Inconclusive);
    }

    #[test]
    fn without_the_control_quic_answer_nothing_is_blocked() {
        let other = quic("example.org", None, true);
        let v = decide_ok(&measurement(
            vec![site_timeout(), other],
            vec![tls_ok()],
            None,
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Inconclusive);
    }

    #[test]
    fn a_timeout_without_working_tcp_is_not_a_udp_drop() {
        let v = decide_ok(&measurement(vec![site_timeout()], vec![], Some(true))).unwrap();
        assert_eq!(v.status, VerdictStatus::Inconclusive);
    }

    #[test]
    fn one_reachable_address_makes_http3_reachable() {
        let mut ok = quic("site.example", None, false);
        ok.address = "203.0.113.11:443".into();
        let v = decide_ok(&measurement(
            vec![site_timeout(), ok],
            vec![tls_ok()],
            Some(true),
        ))
        .unwrap();
        assert_eq!(v.status, VerdictStatus::Accessible);
    }
}
