//! TLS interception needs interception's evidence.
//!
//! A certificate refused at the probe while the control verified the same
//! site is `tls.mitm` only when the probe was shown a chain the control did
//! not see: a different leaf than the control's, or (when the control sent
//! no leaf) an issuer that is not trusted or a certificate for another name
//! — judged with the time set aside. A validity-window failure alone
//! (`expired`, `not_yet_valid`) is what a wrong clock gives, so it is
//! `inconclusive` with the clock named; so is the same leaf as the
//! control's.

use std::net::SocketAddr;

use probes::failure::Failure;
use probes::records::TlsHandshake;
use probes::tls::UNTIMED_VALID;

use crate::model::{Measurement, Verdict, VerdictStatus};

use super::observe::Control;

/// Every sentence that sets a refusal aside because of the time contains
/// this phrase (the classic keys are then cleared too).
pub(crate) const CLOCK_MARK: &str = "the probe's clock";

/// What the refused chain shows, with the sentence saying so.
enum Evidence {
    /// A chain the control did not see.
    Chain(String),
    /// Nothing that points at an interceptor (the time, the same leaf).
    NotInterception(String),
    /// Another certificate problem: the verdict stands as it was.
    Unchanged,
}

/// Re-judges a `tls.mitm` verdict for a certificate refused at these
/// endpoints: kept (with the evidence sentence, `confirmed` for another
/// leaf) only on chain evidence, else `inconclusive`.
pub(crate) fn require_chain_evidence(
    m: &Measurement,
    control: Option<Control<'_>>,
    endpoints: &[SocketAddr],
    mut v: Verdict,
) -> Verdict {
    if v.status != VerdictStatus::Blocked || v.mechanism.as_deref() != Some("tls.mitm") {
        return v;
    }
    let Some(hs) = refused_handshake(m, endpoints) else {
        return v;
    };
    match evidence(m, control, hs) {
        Evidence::Chain(sentence) => {
            if sentence.contains("leaf certificate") {
                v.confidence = Some("confirmed".into());
            }
            v.evidence.push(sentence);
            v
        }
        Evidence::NotInterception(sentence) => {
            let mut e = v.evidence;
            e.push(sentence);
            Verdict {
                status: VerdictStatus::Inconclusive,
                evidence: e,
                ..Verdict::default()
            }
        }
        Evidence::Unchanged => v,
    }
}

/// The first handshake to these endpoints whose chain was refused.
fn refused_handshake<'m>(m: &'m Measurement, endpoints: &[SocketAddr]) -> Option<&'m TlsHandshake> {
    let eps: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    m.test_keys
        .tls_handshakes
        .iter()
        .filter(|h| eps.is_empty() || eps.contains(&h.address))
        .find(|h| h.x_certificate_failure.is_some())
}

fn evidence(m: &Measurement, control: Option<Control<'_>>, hs: &TlsHandshake) -> Evidence {
    let ours = hs.x_leaf.as_ref().map(|l| l.sha256.as_str());
    let theirs = control.and_then(|c| {
        c.r.x_tls_leaf_sha256
            .get(&hs.address)
            .map(String::as_str)
            .or_else(|| {
                // The control's leaf for the same name at another address
                // of the site is as good a reference.
                let mut leaves = c.r.x_tls_leaf_sha256.values();
                let first = leaves.next()?;
                leaves.all(|l| l == first).then_some(first.as_str())
            })
    });
    if let (Some(o), Some(t)) = (ours, theirs) {
        if !o.eq_ignore_ascii_case(t) {
            return Evidence::Chain(format!(
                "the probe received leaf certificate {} (issuer {}) where the control received {}: a chain the control did not see",
                short(o),
                hs.x_leaf.as_ref().map_or("unknown", |l| l.issuer.as_str()),
                short(t)
            ));
        }
    }
    let same_leaf = matches!((ours, theirs), (Some(o), Some(t)) if o.eq_ignore_ascii_case(t));
    let reason = hs.x_certificate_reason.as_deref();
    let time_only = matches!(
        reason,
        Some(Failure::REASON_EXPIRED | Failure::REASON_NOT_YET_VALID)
    );
    if time_only {
        let apart = hs.x_certificate_untimed.as_deref();
        if !same_leaf {
            if let Some(f) = apart.filter(|a| *a != UNTIMED_VALID) {
                let f = Failure::parse(f);
                if matches!(
                    f,
                    Failure::SslUnknownAuthority | Failure::SslInvalidHostname
                ) {
                    return Evidence::Chain(format!(
                        "apart from its validity window the chain fails with {f}: its issuer is not the site's"
                    ));
                }
            }
        }
        return Evidence::NotInterception(format!(
            "the certificate was refused as {} at the probe only{}; {}",
            reason.unwrap_or_default().replace('_', " "),
            if same_leaf {
                ", and it is the same certificate the control received"
            } else if apart == Some(UNTIMED_VALID) {
                ", and the chain is valid apart from the time"
            } else {
                ""
            },
            clock_sentence(m)
        ));
    }
    if same_leaf {
        return Evidence::NotInterception(format!(
            "the probe received the same leaf certificate as the control ({}); its refusal ({}) is not interception's evidence",
            short(ours.unwrap_or_default()),
            hs.x_certificate_failure
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ));
    }
    match hs.x_certificate_failure {
        Some(Failure::SslUnknownAuthority) => Evidence::Chain(format!(
            "the chain's issuer ({}) is not trusted: not the site's issuer",
            hs.x_leaf.as_ref().map_or("unknown", |l| l.issuer.as_str())
        )),
        Some(Failure::SslInvalidHostname) => Evidence::Chain(format!(
            "the certificate ({}) is for another name",
            hs.x_leaf.as_ref().map_or("unknown", |l| l.subject.as_str())
        )),
        _ => Evidence::Unchanged,
    }
}

/// Names the clock as the likely reason.
fn clock_sentence(m: &Measurement) -> String {
    match (m.x_clock_offset, m.x_clock.as_ref()) {
        (Some(o), Some(c)) if c.in_doubt => format!(
            "{CLOCK_MARK} was {} {} the reference time ({}), the likely reason",
            crate::model::describe_offset(o),
            if o > 0 { "behind" } else { "ahead of" },
            c.source
        ),
        (Some(_), _) => format!(
            "{CLOCK_MARK} agrees with the reference time, so the site's own certificate dates or a clock on the path are the likely reason"
        ),
        (None, _) => format!(
            "{CLOCK_MARK} could not be checked against a reference time and is the likely reason"
        ),
    }
}

pub(super) fn short(h: &str) -> String {
    h.chars().take(16).collect()
}
