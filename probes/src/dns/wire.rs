//! DNS wire messages shared by the UDP, TCP and DoH engines: building a
//! query and reading a reply into record fields, with hickory-proto.

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use super::QueryType;
use crate::failure::Failure;
use crate::records::{DnsAnswer, DnsQuery, DnsReply};

/// The EDNS UDP payload size we advertise (the DNS Flag Day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// A query ready to send.
#[derive(Clone, Debug)]
pub struct WireQuery {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Its id.
    pub id: u16,
    /// The name asked for (fully qualified).
    pub name: Name,
    /// The record type asked for.
    pub qtype: RecordType,
}

/// Encodes a recursive query for `host`/`qtype` with EDNS. `id` fixes the
/// message id (DoH uses 0); `None` picks a random one. Internationalised
/// names (e.g. under `.ខ្មែរ`) are sent in their punycode form.
pub fn build_query(host: &str, qtype: QueryType, id: Option<u16>) -> Result<WireQuery, Failure> {
    let mut name = Name::from_utf8(host)
        .map_err(|e| Failure::Unknown(format!("invalid DNS name {host:?}: {e}")))?;
    name.set_fqdn(true);
    let rtype = record_type(qtype);
    let mut msg = Message::query();
    if let Some(id) = id {
        msg.metadata.id = id;
    }
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| Failure::Unknown(format!("cannot encode DNS query: {e}")))?;
    Ok(WireQuery {
        bytes,
        id: msg.metadata.id,
        name,
        qtype: rtype,
    })
}

/// hickory's record type for ours.
pub fn record_type(qtype: QueryType) -> RecordType {
    match qtype {
        QueryType::A => RecordType::A,
        QueryType::Aaaa => RecordType::AAAA,
    }
}

/// A reply read against the query it should answer.
#[derive(Clone, Debug)]
pub struct ReadReply {
    /// The per-datagram record (`t` and `source` left for the caller).
    pub reply: DnsReply,
    /// True when the reply answers our query (right id and question).
    pub valid: bool,
    /// The decoded rcode; `None` when the bytes are not a DNS message
    /// (`reply.rcode` is then a meaningless 0).
    pub rcode: Option<u16>,
    /// The TC bit.
    pub truncated: bool,
    /// What the reply means for the lookup: the rcode failure, or
    /// `dns_no_answer` for NOERROR without records of the asked type.
    pub outcome: Option<Failure>,
}

/// Decodes `bytes` as a reply to `query`. A reply that does not decode, is
/// not a response, has another id, or answers another question is kept
/// with `valid` false and its `reply.failure` saying why.
pub fn read_reply(bytes: &[u8], query: &WireQuery) -> ReadReply {
    let mut reply = DnsReply {
        raw: crate::records::BinaryData::new(bytes).data,
        ..DnsReply::default()
    };
    let msg = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => {
            reply.failure = Some(Failure::Unknown(format!("undecodable DNS reply: {e}")));
            return ReadReply {
                reply,
                valid: false,
                rcode: None,
                truncated: false,
                outcome: None,
            };
        }
    };
    reply.id = msg.metadata.id;
    reply.rcode = u16::from(msg.metadata.response_code);
    let chain = answers_of(&msg, &query.name);
    reply.answers = chain.answers;
    reply.x_unasked = chain.unasked;
    let question_ok = msg.queries.len() == 1
        && msg.queries[0].query_type() == query.qtype
        && msg.queries[0].name().to_lowercase() == query.name.to_lowercase();
    reply.failure = if msg.metadata.message_type != MessageType::Response {
        Some(Failure::DnsServerMisbehaving)
    } else if msg.metadata.id != query.id {
        Some(Failure::DnsWrongQueryId)
    } else if !question_ok {
        Some(Failure::Unknown(
            "DNS reply for another question".to_string(),
        ))
    } else {
        None
    };
    let has_type = reply
        .answers
        .iter()
        .any(|a| a.answer_type == query.qtype.to_string());
    let outcome = match Failure::from_rcode(reply.rcode) {
        Some(f) => Some(f),
        None if !has_type => Some(Failure::DnsNoAnswer),
        None => None,
    };
    ReadReply {
        valid: reply.failure.is_none(),
        rcode: Some(reply.rcode),
        reply,
        truncated: msg.metadata.truncation,
        outcome,
    }
}

/// Fills the reply-derived fields of `q` from `read`, the reply the lookup
/// ends on. The one rule UDP, TCP and DoH share:
///
/// - `raw_response` is the reply's bytes, whatever they are.
/// - A **valid** reply (right id and question) is used: its `answers`, its
///   `rcode`, and `failure` from its rcode (or `dns_no_answer`).
/// - An **unusable** reply (undecodable, not a response, wrong id, another
///   question) gives no `answers` and no `rcode`; `failure` says why it
///   could not be used.
///
/// UDP already keeps every datagram in `x_replies`; single-reply engines
/// add the unusable reply with [`keep_unused`].
pub fn record_reply(q: &mut DnsQuery, read: &ReadReply) {
    q.raw_response = Some(read.reply.raw.clone());
    if read.valid {
        q.answers = read.reply.answers.clone();
        q.rcode = read.rcode;
        q.failure = read.outcome.clone();
    } else {
        q.answers.clear();
        q.rcode = None;
        q.failure = read.reply.failure.clone();
    }
}

/// [`record_reply`] for an engine that gets exactly one reply (TCP, DoH):
/// a reply that decoded but could not be used (wrong id or question, not a
/// response) also goes to `x_replies`, so its id, rcode and answers stay on
/// the record as the context of the failure. An undecodable reply is only
/// in `raw_response`: it has no rcode.
pub fn record_single_reply(q: &mut DnsQuery, read: ReadReply) {
    record_reply(q, &read);
    if (!read.valid && read.rcode.is_some()) || !read.reply.x_unasked.is_empty() {
        q.x_replies.push(read.reply);
    }
}

/// The answer section read against the question.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chain {
    /// The A, AAAA and CNAME records of the question name and of the names
    /// its CNAME chain leads to, with TTLs.
    pub answers: Vec<DnsAnswer>,
    /// Every other record, as `name TYPE data`.
    pub unasked: Vec<String>,
}

/// The A, AAAA and CNAME records that answer `qname`: those owned by the
/// question name, or by a name a CNAME of the chain (starting at the
/// question) points to. Records for any other name are not answers: a
/// forged reply must not steer us to an address of its choosing. They are
/// returned in [`Chain::unasked`] as evidence.
pub fn answers_of(msg: &Message, qname: &Name) -> Chain {
    let mut chain = vec![qname.to_lowercase()];
    // Each pass adds at most one name; a chain cannot be longer than the
    // answer section, so this ends even on CNAME loops.
    for _ in 0..msg.answers.len() {
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if chain.contains(&r.name.to_lowercase()) => {
                let t = target.0.to_lowercase();
                (!chain.contains(&t)).then_some(t)
            }
            _ => None,
        });
        match next {
            Some(t) => chain.push(t),
            None => break,
        }
    }
    let mut out = Chain::default();
    for r in &msg.answers {
        if !chain.contains(&r.name.to_lowercase()) {
            out.unasked
                .push(format!("{} {} {}", r.name, r.record_type(), r.data));
            continue;
        }
        let mut a = DnsAnswer {
            ttl: Some(r.ttl),
            ..DnsAnswer::default()
        };
        match &r.data {
            RData::A(ip) => {
                a.answer_type = "A".to_string();
                a.ipv4 = Some(ip.0.to_string());
            }
            RData::AAAA(ip) => {
                a.answer_type = "AAAA".to_string();
                a.ipv6 = Some(ip.0.to_string());
            }
            RData::CNAME(target) => {
                a.answer_type = "CNAME".to_string();
                a.hostname = Some(target.0.to_ascii());
            }
            _ => continue,
        }
        out.answers.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::{rdata, Record};

    #[test]
    fn reads_a_matching_reply() {
        let q = build_query("example.org", QueryType::A, None).unwrap();
        let mut m = Message::response(q.id, OpCode::Query);
        m.add_query(Query::query(q.name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            q.name.clone(),
            60,
            RData::A(rdata::A("192.0.2.1".parse().unwrap())),
        ));
        let r = read_reply(&m.to_vec().unwrap(), &q);
        assert!(r.valid);
        assert_eq!(r.outcome, None);
        assert_eq!(r.reply.answers[0].ipv4.as_deref(), Some("192.0.2.1"));
        assert_eq!(r.reply.answers[0].ttl, Some(60));

        let mut wrong = Message::response(q.id.wrapping_add(1), OpCode::Query);
        wrong.add_query(Query::query(q.name.clone(), RecordType::A));
        let r = read_reply(&wrong.to_vec().unwrap(), &q);
        assert!(!r.valid);
        assert_eq!(r.reply.failure, Some(Failure::DnsWrongQueryId));
        assert_eq!(r.outcome, Some(Failure::DnsNoAnswer));
    }

    #[test]
    fn idn_names_go_out_as_punycode() {
        let q = build_query("តេស្ត.ខ្មែរ", QueryType::A, Some(0)).unwrap();
        assert!(
            q.name.to_ascii().starts_with("xn--"),
            "{}",
            q.name.to_ascii()
        );
        assert_eq!(q.id, 0);
    }
}
