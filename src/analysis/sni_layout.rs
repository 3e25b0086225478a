//! What the second (split) and third (repeated) TLS handshakes say about a
//! failed one (see `web::tls_retry` for how they are made).
//!
//! | split handshake | repeated one-segment handshake | reading | confidence |
//! |---|---|---|---|
//! | failed | — | persistent; the filter reads the reassembled stream (or blocks the endpoint otherwise) | unchanged |
//! | completed | failed again | the filter sees a name only inside one packet | `confirmed` |
//! | completed | completed | the first failure did not repeat; the page was fetched over the repeat | (no TLS verdict) |
//! | not made | — | a single failure: a silence gives at most `possible` | `possible` for a silence |

use std::net::SocketAddr;

use probes::records::TlsHandshake;

use crate::model::Measurement;

use super::lossy;

/// Tag of the repeated handshake (as written by the web measurement; the
/// split ones are in `x_sni_split`).
const TAG_RETRY: &str = "retry";

/// The evidence and, when it changes, the confidence for a TLS step that
/// failed with `failure` on `endpoints`.
pub(crate) fn judge(
    m: &Measurement,
    endpoints: &[SocketAddr],
    failure: &probes::Failure,
) -> (Vec<String>, Option<&'static str>) {
    let on = |h: &&TlsHandshake| endpoints.iter().any(|e| e.to_string() == h.address);
    let split: Vec<&TlsHandshake> = m.test_keys.x_sni_split.iter().filter(on).collect();
    let Some(s) = split.first() else {
        if lossy::loss_can_cause(failure) {
            return (vec![lossy::SINGLE_TRY.to_string()], Some("possible"));
        }
        return (Vec::new(), None);
    };
    if let Some(sf) = &s.failure {
        return (
            vec![format!(
                "a second handshake with {}, the name split across two TCP segments, failed too ({sf}): the failure is persistent, and whatever blocks it reads the whole stream, not single packets",
                s.address
            )],
            None,
        );
    }
    let retry = m
        .test_keys
        .tls_handshakes
        .iter()
        .filter(on)
        .find(|h| h.tags.iter().any(|t| t == TAG_RETRY));
    match retry.and_then(|r| r.failure.as_ref()) {
        Some(rf) => (
            vec![format!(
                "a second handshake with {}, the name split across two TCP segments, completed, and a third with the name in one segment failed again ({rf}): this filter only sees a name inside one packet",
                s.address
            )],
            Some("confirmed"),
        ),
        None => (
            vec![format!(
                "a second handshake with {}, the name split across two TCP segments, completed",
                s.address
            )],
            None,
        ),
    }
}
