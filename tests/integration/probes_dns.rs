//! Tests: probes::dns (UDP, TCP, DoH, system) against scripted DNS servers
//! on loopback.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use probes::dns::doh::{self, DohServer};
use probes::dns::{system, tcp, udp, DnsOptions, QueryType};
use probes::records::{BinaryData, DnsQuery};
use probes::{Failure, Trace};

use crate::fakes::{
    self,
    ca::TestCa,
    dns::{Reply, Script},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn opts() -> DnsOptions {
    DnsOptions {
        timeout: Duration::from_millis(1500),
        listen_after_first: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn forged_then_genuine_reply_both_recorded_first_used() {
    let fake = fakes::dns::spawn(Script {
        udp: vec![
            (
                Duration::ZERO,
                Reply::AnswerTtl(vec![ip("198.51.100.7")], 5),
            ),
            (
                Duration::from_millis(50),
                Reply::AnswerTtl(vec![ip("192.0.2.10")], 3600),
            ),
        ],
        tcp: None,
    })
    .await;
    let trace = Trace::new().child(3, vec!["dns".to_string()]);
    let q = udp::query(&trace, fake.addr, "www.example.org", QueryType::A, &opts()).await;
    assert_eq!(q.engine, "udp");
    assert_eq!(q.failure, None);
    assert_eq!(q.hostname, "www.example.org");
    assert_eq!(q.query_type, "A");
    assert_eq!(q.resolver_address, fake.addr.to_string());
    assert_eq!(q.transaction_id, 3);
    assert_eq!(q.rcode, Some(0));
    assert_eq!(q.addrs(), vec![ip("198.51.100.7")]);
    assert_eq!(q.answers[0].ttl, Some(5));
    assert_eq!(q.x_replies.len(), 2);
    let (first, second) = (&q.x_replies[0], &q.x_replies[1]);
    assert_eq!(first.answers[0].ipv4.as_deref(), Some("198.51.100.7"));
    assert_eq!(second.answers[0].ipv4.as_deref(), Some("192.0.2.10"));
    assert_eq!(second.answers[0].ttl, Some(3600));
    assert!(first.t <= second.t);
    assert_eq!(
        q.t, first.t,
        "the query ends when the reply it used arrived"
    );
    assert_eq!(first.source, fake.addr.to_string());
    assert_eq!(
        first.ip_ttl,
        Some(64),
        "loopback datagrams carry the default TTL"
    );
    assert_eq!(first.failure, None);
    assert_eq!(second.failure, None);
    assert_eq!(q.raw_response.as_deref(), Some(first.raw.as_str()));
}

#[tokio::test]
async fn wrong_id_reply_is_kept_but_not_used() {
    let fake = fakes::dns::spawn(Script {
        udp: vec![
            (Duration::ZERO, Reply::WrongId(vec![ip("198.51.100.66")])),
            (
                Duration::from_millis(30),
                Reply::Answer(vec![ip("192.0.2.1")]),
            ),
        ],
        tcp: None,
    })
    .await;
    let q = udp::query(&Trace::new(), fake.addr, "a.example", QueryType::A, &opts()).await;
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("192.0.2.1")]);
    assert_eq!(q.x_replies.len(), 2);
    assert_eq!(q.x_replies[0].failure, Some(Failure::DnsWrongQueryId));
}

#[tokio::test]
async fn nxdomain() {
    let fake = fakes::dns::spawn(Script::always(Reply::Rcode(3))).await;
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "nope.example",
        QueryType::A,
        &opts(),
    )
    .await;
    assert_eq!(q.failure, Some(Failure::DnsNxdomain));
    assert_eq!(q.rcode, Some(3));
    assert!(q.answers.is_empty());
    let json = serde_json::to_value(&q).unwrap();
    assert_eq!(json["failure"], "dns_nxdomain_error");
}

#[tokio::test]
async fn servfail_refused_and_no_answer() {
    for (reply, want) in [
        (Reply::Rcode(2), Failure::DnsServfail),
        (Reply::Rcode(5), Failure::DnsRefused),
        (Reply::Answer(vec![ip("192.0.2.1")]), Failure::DnsNoAnswer),
    ] {
        let fake = fakes::dns::spawn(Script::always(reply)).await;
        // An AAAA query: the A-only answer is "no answer".
        let q = udp::query(
            &Trace::new(),
            fake.addr,
            "x.example",
            QueryType::Aaaa,
            &opts(),
        )
        .await;
        assert_eq!(q.failure, Some(want));
    }
}

#[tokio::test]
async fn cname_chain_recorded() {
    let fake = fakes::dns::spawn(Script::always(Reply::Cname(
        "edge.cdn.example.".to_string(),
        vec![ip("2001:db8::5")],
    )))
    .await;
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "www.example.org",
        QueryType::Aaaa,
        &opts(),
    )
    .await;
    assert_eq!(q.failure, None);
    assert_eq!(q.answers[0].answer_type, "CNAME");
    assert_eq!(q.answers[0].hostname.as_deref(), Some("edge.cdn.example."));
    assert_eq!(q.answers[1].answer_type, "AAAA");
    assert_eq!(q.addrs(), vec![ip("2001:db8::5")]);
}

#[tokio::test]
async fn silence_is_generic_timeout() {
    let fake = fakes::dns::spawn(Script::default()).await;
    let o = DnsOptions {
        timeout: Duration::from_millis(300),
        listen_after_first: Duration::from_millis(100),
    };
    let q = udp::query(&Trace::new(), fake.addr, "quiet.example", QueryType::A, &o).await;
    assert_eq!(q.failure, Some(Failure::GenericTimeout));
    assert!(q.x_replies.is_empty());
    assert_eq!(
        fake.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_lost_first_query_is_resent_and_the_answer_recorded() {
    // The fake ignores the first datagram (lost on the way); the resend
    // after 1 s is answered: an answer, not a failure, and two attempts.
    let fake =
        fakes::dns::spawn_dropping(Script::always(Reply::Answer(vec![ip("192.0.2.44")])), 1).await;
    let o = DnsOptions {
        timeout: Duration::from_secs(4),
        listen_after_first: Duration::from_millis(100),
    };
    let q = udp::query(&Trace::new(), fake.addr, "lossy.example", QueryType::A, &o).await;
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("192.0.2.44")]);
    assert_eq!(q.x_attempts, 2);
    assert_eq!(q.attempts(), 2);
    assert_eq!(q.x_replies.len(), 1);
    assert_eq!(
        fake.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "no resend after the answer"
    );
    let json = serde_json::to_value(&q).unwrap();
    assert_eq!(json["x_attempts"], 2);
}

#[tokio::test]
async fn silence_is_resent_with_backoff_inside_the_timeout() {
    // Sends at 0, 1 and 3 s; a 3.5 s timeout leaves room for all three and
    // no fourth (MAX_SENDS).
    let fake = fakes::dns::spawn(Script::default()).await;
    let o = DnsOptions {
        timeout: Duration::from_millis(3500),
        listen_after_first: Duration::from_millis(100),
    };
    let q = udp::query(&Trace::new(), fake.addr, "quiet.example", QueryType::A, &o).await;
    assert_eq!(q.failure, Some(Failure::GenericTimeout));
    assert_eq!(q.x_attempts, udp::MAX_SENDS);
    assert_eq!(
        fake.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test]
async fn one_send_is_no_attempts_field() {
    let fake = fakes::dns::spawn(Script::always(Reply::Answer(vec![ip("192.0.2.45")]))).await;
    let q = udp::query(&Trace::new(), fake.addr, "a.example", QueryType::A, &opts()).await;
    assert_eq!(q.attempts(), 1);
    let json = serde_json::to_value(&q).unwrap();
    assert!(json.get("x_attempts").is_none());
}

#[tokio::test]
async fn truncated_udp_reply_falls_back_to_tcp() {
    let fake = fakes::dns::spawn(Script {
        udp: vec![(Duration::ZERO, Reply::Truncated)],
        tcp: Some(Reply::Answer(vec![ip("192.0.2.20"), ip("192.0.2.21")])),
    })
    .await;
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "big.example",
        QueryType::A,
        &opts(),
    )
    .await;
    assert_eq!(q.engine, "udp+tcp");
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("192.0.2.20"), ip("192.0.2.21")]);
    assert_eq!(q.x_replies.len(), 1, "the truncated UDP reply is kept");
    assert!(q.x_replies[0].answers.is_empty());
    assert_eq!(
        fake.tcp_queries.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn tcp_query() {
    let fake = fakes::dns::spawn(Script::always(Reply::Answer(vec![ip("203.0.113.5")]))).await;
    let q = tcp::query(&Trace::new(), fake.addr, "t.example", QueryType::A, &opts()).await;
    assert_eq!(q.engine, "tcp");
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("203.0.113.5")]);
    assert!(q.raw_response.is_some());
}

#[tokio::test]
async fn tcp_query_closed_is_eof_and_refused() {
    let fake = fakes::dns::spawn(Script::default()).await;
    let q = tcp::query(&Trace::new(), fake.addr, "t.example", QueryType::A, &opts()).await;
    assert_eq!(q.failure, Some(Failure::Eof));
    let closed = fakes::tcp::closed_port();
    let q = tcp::query(&Trace::new(), closed, "t.example", QueryType::A, &opts()).await;
    assert_eq!(q.failure, Some(Failure::ConnectionRefused));
}

#[tokio::test]
async fn doh_query() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["doh.example"]);
    let fake = fakes::doh::spawn(&cert, "doh.example", Reply::Answer(vec![ip("192.0.2.53")])).await;
    let server = DohServer {
        url: fake.url.clone(),
        addr: Some(fake.addr),
    };
    let roots = ca.roots();
    let trace = Trace::new();
    let q = doh::query(
        &trace,
        &server,
        "www.example.org",
        QueryType::A,
        &roots,
        &opts(),
    )
    .await;
    assert_eq!(q.engine, "doh");
    assert_eq!(q.failure, None);
    assert_eq!(q.resolver_address, fake.url);
    assert_eq!(q.addrs(), vec![ip("192.0.2.53")]);
    let ops: Vec<String> = trace
        .take_events()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        &ops[..3],
        ["connect", "tls_handshake_start", "tls_handshake_done"]
    );

    // The same server is refused without the test CA.
    let webpki = probes::tls::TrustRoots::webpki();
    let q = doh::query(
        &Trace::new(),
        &server,
        "www.example.org",
        QueryType::A,
        &webpki,
        &opts(),
    )
    .await;
    assert_eq!(q.failure, Some(Failure::SslUnknownAuthority));
}

#[tokio::test]
async fn doh_nxdomain() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["doh.example"]);
    let fake = fakes::doh::spawn(&cert, "doh.example", Reply::Rcode(3)).await;
    let server = DohServer {
        url: fake.url.clone(),
        addr: Some(fake.addr),
    };
    let q = doh::query(
        &Trace::new(),
        &server,
        "gone.example",
        QueryType::A,
        &ca.roots(),
        &opts(),
    )
    .await;
    assert_eq!(q.failure, Some(Failure::DnsNxdomain));
}

/// One rule for a reply that cannot be used, whatever the transport: it is
/// the `raw_response` and the failure says why; the lookup has no `rcode`
/// and no answers; a decoded reply keeps its rcode and answers in
/// `x_replies`, an undecodable one has no rcode anywhere.
fn assert_unused(q: &DnsQuery, failure: &Failure, bytes: Option<&[u8]>) {
    assert_eq!(q.failure.as_ref(), Some(failure));
    assert_eq!(q.rcode, None, "no rcode from a reply that was not used");
    assert!(q.answers.is_empty());
    assert!(q.raw_response.is_some());
    if let Some(b) = bytes {
        assert_eq!(q.raw_response, Some(BinaryData::new(b).data));
    }
}

/// A reply with message id `id` and `rcode` to `name`/A, with one answer
/// when `answer` is given.
fn reply_message(id: u16, name: &str, rcode: u16, answer: Option<&str>) -> Vec<u8> {
    let name = Name::from_ascii(name).unwrap();
    let mut m = Message::response(id, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.metadata.response_code = <ResponseCode as From<u16>>::from(rcode);
    if let Some(a) = answer {
        m.add_answer(Record::from_rdata(
            name,
            60,
            RData::A(rdata::A(a.parse().unwrap())),
        ));
    }
    m.to_vec().unwrap()
}

#[tokio::test]
async fn tcp_unusable_replies_have_no_rcode() {
    let wrong = fakes::dns::spawn(Script {
        udp: vec![],
        tcp: Some(Reply::WrongId(vec![ip("198.51.100.66")])),
    })
    .await;
    let q = tcp::query(
        &Trace::new(),
        wrong.addr,
        "t.example",
        QueryType::A,
        &opts(),
    )
    .await;
    assert_unused(&q, &Failure::DnsWrongQueryId, None);
    assert_eq!(q.x_replies.len(), 1, "the wrong-id reply is the context");
    assert_eq!(q.x_replies[0].failure, Some(Failure::DnsWrongQueryId));
    assert_eq!(q.x_replies[0].rcode, 0);
    assert_eq!(
        q.x_replies[0].answers[0].ipv4.as_deref(),
        Some("198.51.100.66")
    );

    let garbage = [0xde, 0xad, 0xbe];
    let raw = fakes::dns::spawn(Script {
        udp: vec![],
        tcp: Some(Reply::Raw(garbage.to_vec())),
    })
    .await;
    let q = tcp::query(&Trace::new(), raw.addr, "t.example", QueryType::A, &opts()).await;
    let Some(Failure::Unknown(why)) = &q.failure else {
        panic!("undecodable reply: {:?}", q.failure);
    };
    assert!(why.starts_with("undecodable DNS reply"), "{why}");
    assert_unused(&q, &q.failure.clone().unwrap(), Some(&garbage));
    assert!(q.x_replies.is_empty(), "an undecodable reply has no rcode");
}

#[tokio::test]
async fn truncated_udp_then_wrong_id_tcp_keeps_both_replies() {
    let fake = fakes::dns::spawn(Script {
        udp: vec![(Duration::ZERO, Reply::Truncated)],
        tcp: Some(Reply::WrongId(vec![ip("198.51.100.66")])),
    })
    .await;
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "big.example",
        QueryType::A,
        &opts(),
    )
    .await;
    assert_eq!(q.engine, "udp+tcp");
    assert_unused(&q, &Failure::DnsWrongQueryId, None);
    assert_eq!(q.x_replies.len(), 2);
    assert_eq!(q.x_replies[0].failure, None, "the truncated UDP reply");
    assert_eq!(q.x_replies[1].failure, Some(Failure::DnsWrongQueryId));
}

#[tokio::test]
async fn doh_unusable_replies_follow_the_tcp_rule() {
    let ca = TestCa::new("gatewatch test CA");
    let cert = ca.issue(&["doh.example"]);
    let lookup = |reply: Reply| {
        let (ca, cert) = (&ca, &cert);
        async move {
            let fake = fakes::doh::spawn(cert, "doh.example", reply).await;
            let server = DohServer {
                url: fake.url.clone(),
                addr: Some(fake.addr),
            };
            doh::query(
                &Trace::new(),
                &server,
                "gone.example",
                QueryType::A,
                &ca.roots(),
                &opts(),
            )
            .await
        }
    };

    // DoH asks with id 0: an NXDOMAIN with id 7 is not the answer, and its
    // rcode stays with the reply, not the lookup.
    let bytes = reply_message(7, "gone.example.", 3, None);
    let q = lookup(Reply::Raw(bytes.clone())).await;
    assert_unused(&q, &Failure::DnsWrongQueryId, Some(&bytes));
    assert_eq!(q.x_replies.len(), 1);
    assert_eq!(q.x_replies[0].id, 7);
    assert_eq!(q.x_replies[0].rcode, 3);

    // Right id, another question: its answer is not ours.
    let bytes = reply_message(0, "other.example.", 0, Some("198.51.100.9"));
    let q = lookup(Reply::Raw(bytes.clone())).await;
    let other = Failure::Unknown("DNS reply for another question".to_string());
    assert_unused(&q, &other, Some(&bytes));
    assert_eq!(q.x_replies.len(), 1);
    // Records for a name we did not ask about are no answers, only evidence.
    assert!(q.x_replies[0].answers.is_empty());
    assert_eq!(
        q.x_replies[0].x_unasked,
        vec!["other.example. A 198.51.100.9"]
    );

    // Not a DNS message at all: no rcode anywhere.
    let q = lookup(Reply::Raw(b"<html>".to_vec())).await;
    assert!(
        matches!(&q.failure, Some(Failure::Unknown(w)) if w.starts_with("undecodable DNS reply")),
        "{:?}",
        q.failure
    );
    assert_eq!(q.rcode, None);
    assert!(q.x_replies.is_empty());

    // The used reply sets the rcode.
    let q = lookup(Reply::Rcode(3)).await;
    assert_eq!(q.failure, Some(Failure::DnsNxdomain));
    assert_eq!(q.rcode, Some(3));
    assert!(q.x_replies.is_empty());
}

#[tokio::test]
async fn system_resolver_reads_literals_and_hosts() {
    let q = system::lookup(&Trace::new(), "127.0.0.1", Duration::from_secs(2)).await;
    assert_eq!(q.engine, "getaddrinfo");
    assert_eq!(q.query_type, "ANY");
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("127.0.0.1")]);
    assert_eq!(q.getaddrinfo_error, None);
}

// ---- issue 16: answers are for the name we asked; broken replies fail at once

/// Appends to a reply one A record whose owner name is a compression
/// pointer to itself (a pointer loop).
fn pointer_loop(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes[6..8].copy_from_slice(&1u16.to_be_bytes()); // ANCOUNT = 1
    bytes[8..12].fill(0); // no authority or additional records
    let off = bytes.len() as u16;
    bytes.extend_from_slice(&(0xC000 | off).to_be_bytes());
    bytes.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 203, 0, 113, 66]);
    bytes
}

/// A valid reply with its last 5 bytes cut off.
fn cut(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 5);
    bytes
}

#[tokio::test]
async fn records_for_names_not_asked_are_no_answer_but_kept() {
    for script in [
        Script::always(Reply::Unasked(
            "notasked.example".into(),
            vec![ip("203.0.113.66")],
        )),
        Script::always(Reply::Cname("cdn.example".into(), vec![ip("203.0.113.66")])),
    ] {
        let chained = matches!(script.tcp, Some(Reply::Cname(..)));
        let fake = fakes::dns::spawn(script).await;
        let trace = Trace::new();
        let by_udp = udp::query(&trace, fake.addr, "www.example.org", QueryType::A, &opts()).await;
        let by_tcp = tcp::query(&trace, fake.addr, "www.example.org", QueryType::A, &opts()).await;
        for q in [by_udp, by_tcp] {
            if chained {
                // A CNAME from the question name: the chain is followed.
                assert_eq!(q.failure, None, "{q:?}");
                assert_eq!(q.addrs(), vec![ip("203.0.113.66")]);
                continue;
            }
            assert_eq!(q.failure, Some(Failure::DnsNoAnswer), "{q:?}");
            assert!(q.addrs().is_empty(), "{q:?}");
            let unasked: Vec<&String> = q.x_replies.iter().flat_map(|r| &r.x_unasked).collect();
            assert_eq!(
                unasked,
                vec!["notasked.example. A 203.0.113.66"],
                "{} {:?}",
                q.engine,
                q.x_replies
            );
        }
    }
}

#[tokio::test]
async fn an_unasked_record_beside_the_answer_is_left_out() {
    // The question's answer, plus one record for another name appended.
    fn add_unasked(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = u16::from_be_bytes([bytes[6], bytes[7]]);
        bytes[6..8].copy_from_slice(&(n + 1).to_be_bytes());
        bytes[8..12].fill(0);
        bytes.extend_from_slice(b"\x08notasked\x07example\x00");
        bytes.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 203, 0, 113, 66]);
        bytes
    }
    let fake = fakes::dns::spawn(Script::always(Reply::Edited(
        Box::new(Reply::Answer(vec![ip("192.0.2.10")])),
        add_unasked,
    )))
    .await;
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "www.example.org",
        QueryType::A,
        &opts(),
    )
    .await;
    assert_eq!(q.failure, None);
    assert_eq!(q.addrs(), vec![ip("192.0.2.10")]);
    assert_eq!(
        q.x_replies[0].x_unasked,
        vec!["notasked.example. A 203.0.113.66"]
    );
}

#[tokio::test]
async fn malformed_replies_are_a_parse_failure_not_a_timeout() {
    for (what, edit) in [
        ("pointer loop", pointer_loop as fn(Vec<u8>) -> Vec<u8>),
        ("cut short", cut),
    ] {
        let fake = fakes::dns::spawn(Script::always(Reply::Edited(
            Box::new(Reply::Answer(Vec::new())),
            edit,
        )))
        .await;
        // A long timeout: the lookup must end on the reply, not on it.
        let o = DnsOptions {
            timeout: Duration::from_secs(600),
            listen_after_first: Duration::from_millis(100),
        };
        let trace = Trace::new();
        let q = udp::query(&trace, fake.addr, "www.example.org", QueryType::A, &o).await;
        let f = q.failure.clone().map(|f| f.to_string()).unwrap_or_default();
        assert!(
            f.starts_with("unknown_failure: undecodable DNS reply"),
            "{what}: {q:?}"
        );
        assert!(q.addrs().is_empty(), "{what}");
        let q = tcp::query(&trace, fake.addr, "www.example.org", QueryType::A, &o).await;
        let f = q.failure.clone().map(|f| f.to_string()).unwrap_or_default();
        assert!(
            f.starts_with("unknown_failure: undecodable DNS reply"),
            "{what}: {q:?}"
        );
    }
}

#[tokio::test]
async fn a_genuine_reply_after_a_malformed_one_still_wins() {
    let fake = fakes::dns::spawn(Script {
        udp: vec![
            (
                Duration::ZERO,
                Reply::Edited(Box::new(Reply::Answer(vec![ip("203.0.113.66")])), cut),
            ),
            (
                Duration::from_millis(20),
                Reply::Answer(vec![ip("192.0.2.10")]),
            ),
        ],
        tcp: None,
    })
    .await;
    let o = DnsOptions {
        timeout: Duration::from_secs(600),
        listen_after_first: Duration::from_secs(2),
    };
    let q = udp::query(
        &Trace::new(),
        fake.addr,
        "www.example.org",
        QueryType::A,
        &o,
    )
    .await;
    assert_eq!(q.failure, None, "{q:?}");
    assert_eq!(q.addrs(), vec![ip("192.0.2.10")]);
}
