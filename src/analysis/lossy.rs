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
//! # Silences: loss or a censor's drop?
//!
//! A censor that drops a name's queries drops every one of them; random
//! loss drops some. The system resolver is therefore tried many times
//! within the DNS step (`web::resend`: a new, independent getaddrinfo every
//! eighth of the timeout, at least 250 ms apart, at most 8 tries; 7 with a
//! 2 s timeout, 8 with the default 4 s). A try needs about four datagrams
//! (A and AAAA, query and reply), so with 10 % loss each way one try is
//! silent about a third of the time, and [`PERSISTENT_TRIES`] silent tries
//! in a row happen by loss about once in 500 lookups (0.34^6); a name the
//! resolver never answers is silent on every try. A DNS timeout under
//! 1.75 s leaves room for fewer than [`PERSISTENT_TRIES`] tries: there a
//! silence the other resolver contradicts is never a DNS verdict (the
//! evidence still reports it).
//!
//! The rule ([`judge_silence`], used for the input's name and for every
//! redirect hop's):
//!
//! - An answer (NXDOMAIN, a wrong address, an injected reply) is not what
//!   loss produces and keeps its confidence. Only silences
//!   ([`loss_can_cause`]) are judged here.
//! - A silence on fewer than [`PERSISTENT_TRIES`] tries (a short DNS
//!   timeout, or a measurement from before the resends) proves nothing
//!   about persistence:
//!   - when another resolver in the same measurement answered
//!     consistently with the control, it is no DNS verdict at all; the
//!     evidence says so and the verdict comes from the rest of the
//!     measurement (the page fetched over the other resolver's addresses);
//!   - when nothing contradicts it, it is at most `possible`.
//! - A silence on every one of [`PERSISTENT_TRIES`] or more tries is
//!   persistent: `blocked`, `likely` (never `confirmed`), and only
//!   `possible` when more than [`LOSSY_LINE_SHARE`] of the run's steps so
//!   far needed a retry (`AnalysisContext::line_loss`), since on so lossy a
//!   line even many silences can be loss.
//!
//! We do not also require "the UDP resolver needed no resend for this
//! name": a resend there says the line lost a packet, which the count of
//! silent tries already accounts for, and it would hide the `dns-silent`
//! block on any line that loses packets (the lab's
//! `a_lossy_line_blocks_nothing_and_hides_no_block` drops the first query
//! to every resolver).
//!
//! Each getaddrinfo try is not its own `queries[]` entry: the lookup is one
//! entry whose `x_attempts` counts the tries started (OONI readers ignore
//! the extra key; one entry per lookup keeps the analysis's "one lookup per
//! resolver" view). The UDP resends are the same query (same id and
//! socket), so they are one entry as well.

use probes::failure::Failure;

use crate::model::Measurement;

/// Silent tries after which a silence of the system resolver is persistent
/// (see the module doc).
pub const PERSISTENT_TRIES: u32 = 6;

/// On a line where more than this share of steps needed a retry, verdicts
/// are less certain and the summary says so.
pub const LOSSY_LINE_SHARE: f64 = 0.10;

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

/// What a silence of a resolver means (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SilenceCall {
    /// No DNS verdict: too few tries, and another resolver answered
    /// consistently with the control. The sentence says so.
    Contradicted(String),
    /// A DNS block with this confidence; the sentences qualify it.
    Block {
        /// `likely` or `possible`.
        confidence: &'static str,
        /// Why not more certain, if so.
        notes: Vec<String>,
    },
}

/// Judges a silence on every one of `tries` tries; `contradicted` when
/// another resolver answered the name consistently with the control.
pub(crate) fn judge_silence(tries: u32, contradicted: bool, line_loss: Option<f64>) -> SilenceCall {
    if tries < PERSISTENT_TRIES {
        let few = if tries > 1 {
            format!("it was silent on {tries} tries, too few to tell a persistent drop from lost packets")
        } else {
            "it was tried once, and packet loss on the line could explain a single silence"
                .to_string()
        };
        if contradicted {
            return SilenceCall::Contradicted(format!(
                "{few}, and it is contradicted by another resolver that answered consistently with the control: not evidence of a DNS block"
            ));
        }
        return SilenceCall::Block {
            confidence: "possible",
            notes: vec![few],
        };
    }
    match line_loss.filter(|l| *l > LOSSY_LINE_SHARE) {
        Some(loss) => SilenceCall::Block {
            confidence: "possible",
            notes: vec![lossy_line_sentence(loss)],
        },
        None => SilenceCall::Block {
            confidence: "likely",
            notes: Vec::new(),
        },
    }
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

    #[test]
    fn only_a_persistent_silence_blocks() {
        let few = PERSISTENT_TRIES - 1;
        assert!(matches!(
            judge_silence(few, true, None),
            SilenceCall::Contradicted(s) if s.contains("too few")
        ));
        assert!(matches!(
            judge_silence(1, false, None),
            SilenceCall::Block {
                confidence: "possible",
                ..
            }
        ));
        for contradicted in [false, true] {
            assert_eq!(
                judge_silence(PERSISTENT_TRIES, contradicted, Some(0.05)),
                SilenceCall::Block {
                    confidence: "likely",
                    notes: vec![]
                }
            );
            assert!(matches!(
                judge_silence(PERSISTENT_TRIES + 1, contradicted, Some(0.3)),
                SilenceCall::Block { confidence: "possible", notes } if notes[0].contains("30 %")
            ));
        }
    }
}
