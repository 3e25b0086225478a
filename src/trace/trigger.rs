//! The bytes each trigger sends: a DNS query, a TLS ClientHello with the
//! SNI (produced by rustls itself, so it looks like our real handshakes),
//! an HTTP GET with the Host header; and the parsing of DNS replies.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use rustls::pki_types::ServerName;

/// Why a trigger could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The name is not a valid DNS name.
    #[error("invalid DNS name {0:?}")]
    BadName(String),
    /// rustls refused to build the ClientHello.
    #[error("cannot build ClientHello: {0}")]
    Tls(String),
}

/// A DNS query (A, recursion desired) with a random id: (id, wire bytes).
pub fn dns_query(name: &str) -> Result<(u16, Vec<u8>), TriggerError> {
    let bad = || TriggerError::BadName(name.to_string());
    let fqdn = Name::from_ascii(name).map_err(|_| bad())?;
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(fqdn, RecordType::A));
    let wire = q.to_vec().map_err(|_| bad())?;
    Ok((q.metadata.id, wire))
}

/// A decoded DNS reply: its response code and A addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// `NoError`, `NXDomain`, ...
    pub rcode: String,
    /// The A records.
    pub addresses: Vec<Ipv4Addr>,
}

/// Decodes `wire` as a reply to query `id`; `None` for anything else.
pub fn parse_dns_reply(wire: &[u8], id: u16) -> Option<DnsReply> {
    let m = Message::from_vec(wire).ok()?;
    if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
        return None;
    }
    Some(DnsReply {
        rcode: format!("{:?}", m.metadata.response_code),
        addresses: a_records(&m),
    })
}

/// The A addresses of `m`'s answer section, in order.
pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The first flight of a TLS handshake for `sni` (no SNI when it is an IP
/// address), as bytes, with browser-like ALPN.
pub fn client_hello(sni: &str) -> Result<Vec<u8>, TriggerError> {
    // The same one-segment ClientHello as our handshakes (probes::hello).
    let provider = Arc::new(probes::hello::provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TriggerError::Tls(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server_name =
        ServerName::try_from(sni.to_string()).map_err(|_| TriggerError::BadName(sni.into()))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| TriggerError::Tls(e.to_string()))?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)
            .map_err(|e| TriggerError::Tls(e.to_string()))?;
    }
    Ok(out)
}

/// An HTTP/1.1 GET for `path` with `Host: host`.
pub fn http_get(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,*/*;q=0.8\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A short description of data that came back on a connection: the TLS
/// record type, or the HTTP status line and title.
pub fn describe_response(data: &[u8]) -> String {
    match data.first() {
        Some(0x16) => format!("tls handshake ({} bytes)", data.len()),
        Some(0x15) => format!("tls alert ({} bytes)", data.len()),
        _ if data.starts_with(b"HTTP/") => {
            let text = String::from_utf8_lossy(data);
            let status = text.lines().next().unwrap_or_default().to_string();
            match probes::http::extract_title(data) {
                Some(t) => {
                    let t: String = mask_addresses(&t).chars().take(120).collect();
                    format!("{status}; title {t:?}")
                }
                None => status,
            }
        }
        _ => format!("data ({} bytes)", data.len()),
    }
}

/// Replaces anything that reads as an IP address with `[scrubbed]`: a
/// blockpage may echo the visitor's address, and a standalone trace does not
/// know the probe's public address to scrub it precisely.
fn mask_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        let has_digit = token.chars().any(|c| c.is_ascii_digit());
        if has_digit && token.parse::<std::net::IpAddr>().is_ok() {
            out.push_str("[scrubbed]");
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() || c == '.' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_do_not_carry_addresses() {
        let page =
            b"HTTP/1.1 200 OK\r\n\r\n<title>Blocked :: for 198.51.100.7 (2001:db8::1)</title>";
        assert_eq!(
            describe_response(page),
            "HTTP/1.1 200 OK; title \"Blocked :: for [scrubbed] ([scrubbed])\""
        );
    }

    #[test]
    fn the_client_hello_carries_the_sni() {
        let hello = client_hello("blocked.example").unwrap();
        assert_eq!(hello[0], 0x16, "a handshake record");
        let has = hello.windows(15).any(|w| w == b"blocked.example");
        assert!(has, "SNI bytes present");
        let ip = client_hello("203.0.113.40").unwrap();
        assert!(!ip.windows(12).any(|w| w == b"203.0.113.40"));
    }

    #[test]
    fn a_dns_reply_is_matched_by_id() {
        let (id, wire) = dns_query("blocked.example").unwrap();
        let mut m = Message::from_vec(&wire).unwrap();
        m.metadata.message_type = MessageType::Response;
        let name = Name::from_ascii("blocked.example.").unwrap();
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            name,
            60,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 66))),
        ));
        let reply = m.to_vec().unwrap();
        let got = parse_dns_reply(&reply, id).unwrap();
        assert_eq!(got.addresses, vec![Ipv4Addr::new(192, 0, 2, 66)]);
        assert_eq!(got.rcode, "NoError");
        assert!(parse_dns_reply(&reply, id.wrapping_add(1)).is_none());
        assert!(
            parse_dns_reply(&wire, id).is_none(),
            "a query is not a reply"
        );
    }

    #[test]
    fn responses_are_described() {
        let page = b"HTTP/1.1 403 Forbidden\r\n\r\n<html><TITLE> Blocked </title>";
        assert_eq!(
            describe_response(page),
            "HTTP/1.1 403 Forbidden; title \"Blocked\""
        );
        assert_eq!(describe_response(&[0x15, 3, 3]), "tls alert (3 bytes)");
        assert!(
            String::from_utf8_lossy(&http_get("a.example", "/x")).contains("Host: a.example\r\n")
        );
    }
}
