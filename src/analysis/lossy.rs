//! Lossy links: a lost packet is not a block.
//!
//! # Retry policy and its cost
//!
//! Each retry lives inside the step's existing timeout, so a URL that is
//! really blocked takes no longer than before; only a URL whose first try
//! was lost finishes later (by the resend delay).
//!
//! | step | what is repeated | when | cost |
//! |---|---|---|---|
//! | DNS over UDP | the same query (same id and socket) | 1 s, then 2 s, 4 s … of silence; at most 3 sends (`probes::dns::udp`) | one datagram per resend; none when the first is answered |
//! | system resolver | a new, independent getaddrinfo | every 1 s of silence, at most 3 tries, none starting within 0.5 s of the end (`web::resend`) | one more lookup thread per try for the rest of the DNS timeout |
//! | TCP connect | SYN retransmissions by the kernel (1 s, 3 s, 7 s …) | always | none of ours: a 10 s connect timeout already spans 3–4 SYNs |
//! | TLS handshake | a second handshake, the ClientHello split inside the name (`web::sni_split`) | after a reset, EOF or timeout | one more connect + handshake, up to the TLS timeout, on such failures only |
//!
//! The DNS timeouts and resends are recorded (`x_attempts` on a query). A
//! step that succeeded on a resend is an answer, not evidence; the count
//! feeds the line's loss estimate ([`retried_steps`]).
//!
//! # Confidence
//!
//! - A failure that loss can produce ([`loss_can_cause`]: a silence) counts
//!   as persistent only when every try failed ([`PERSISTENT_TRIES`] or
//!   more); persistent gives at most `likely`, and only `possible` when
//!   more than [`LOSSY_LINE_SHARE`] of the run's steps so far needed a
//!   retry (`AnalysisContext::line_loss`).
//! - A single silent try gives at most `possible`.
//! - A single silent try of the system resolver contradicted by another
//!   resolver that answered consistently with the control in the same
//!   measurement is no DNS verdict at all: the evidence says so and the
//!   verdict comes from the rest of the measurement (the page fetched over
//!   the other resolver's addresses).
//! - Answers (NXDOMAIN, a wrong address, an injected reply) are not what
//!   loss produces and keep their confidence.

use probes::failure::Failure;

use crate::model::Measurement;

/// Tries after which a silence is persistent.
pub const PERSISTENT_TRIES: u32 = 2;

/// On a line where more than this share of steps needed a retry, verdicts
/// are less certain and the summary says so.
pub const LOSSY_LINE_SHARE: f64 = 0.10;

/// Evidence for a single silent try that another resolver contradicts.
pub(crate) const CONTRADICTED: &str = "the failure is contradicted within this measurement and was not repeated: a lost reply, not evidence of a DNS block";

/// Evidence for a single silent try.
pub(crate) const SINGLE_TRY: &str =
    "it was tried once, and packet loss on the line could explain a single silence";

/// Whether packet loss alone can produce this failure (no answer at all).
pub fn loss_can_cause(f: &Failure) -> bool {
    matches!(
        f,
        Failure::GenericTimeout | Failure::TimedOut | Failure::DnsTemporaryFailure
    )
}

/// Evidence for a persistent silence on a line that lost many packets.
pub(crate) fn lossy_line_sentence(loss: f64) -> String {
    format!(
        "{:.0} % of this run's network steps so far needed a retry: on so lossy a line even repeated silences can be loss",
        loss * 100.0
    )
}

/// " (on each of its N tries)" when a step was tried more than once.
pub(crate) fn tries_text(attempts: u32) -> String {
    if attempts > 1 {
        format!(" on each of its {attempts} tries")
    } else {
        String::new()
    }
}

/// Sentences for the steps of `m` that succeeded only on a retry: they are
/// reported, and they are not evidence of blocking.
pub(crate) fn retry_notes(m: &Measurement) -> Vec<String> {
    let mut notes = Vec::new();
    let resent: Vec<String> = m
        .test_keys
        .queries
        .iter()
        .filter(|q| q.failure.is_none() && q.attempts() > 1)
        .map(|q| {
            let who = if q.engine == "getaddrinfo" {
                "the system resolver".to_string()
            } else {
                format!("{} {}", q.resolver_address, q.query_type)
            };
            format!("{who} ({} tries)", q.attempts())
        })
        .collect();
    if !resent.is_empty() {
        notes.push(format!(
            "some DNS lookups were answered only after a resend: {}; a lost datagram is not evidence of blocking",
            resent.join(", ")
        ));
    }
    for h in &m.test_keys.tls_handshakes {
        if h.failure.is_none() && h.tags.iter().any(|t| t == "retry") {
            notes.push(format!(
                "the TLS handshake with {} completed on a later try after the first failed; that failure is not evidence of blocking",
                h.address
            ));
        }
    }
    notes
}

/// The steps of one measurement that can be retried (DNS queries over UDP
/// and the system resolver), and how many of them needed more than one try.
pub fn retried_steps(m: &Measurement) -> (u32, u32) {
    let mut steps = 0;
    let mut retried = 0;
    for q in &m.test_keys.queries {
        if q.engine == "udp" || q.engine == "udp+tcp" || q.engine == "getaddrinfo" {
            steps += 1;
            if q.attempts() > 1 {
                retried += 1;
            }
        }
    }
    (steps, retried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::records::DnsQuery;

    #[test]
    fn silences_are_loss_answers_are_not() {
        assert!(loss_can_cause(&Failure::GenericTimeout));
        assert!(loss_can_cause(&Failure::DnsTemporaryFailure));
        assert!(!loss_can_cause(&Failure::DnsNxdomain));
        assert!(!loss_can_cause(&Failure::ConnectionReset));
    }

    #[test]
    fn retried_steps_counts_resent_queries() {
        let mut m = Measurement::default();
        let q = |engine: &str, n: u32| DnsQuery {
            engine: engine.into(),
            x_attempts: n,
            ..DnsQuery::default()
        };
        m.test_keys.queries = vec![q("udp", 1), q("udp", 2), q("getaddrinfo", 0), q("doh", 3)];
        assert_eq!(retried_steps(&m), (3, 1));
        assert_eq!(tries_text(1), "");
        assert_eq!(tries_text(3), " on each of its 3 tries");
    }
}
