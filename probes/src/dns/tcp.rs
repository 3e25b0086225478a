//! DNS over TCP to a chosen resolver, built with hickory-proto.
//!
//! One query per connection: the message with its 2-byte length prefix,
//! then one length-prefixed reply (RFC 1035 §4.2.2, RFC 7766).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, WireQuery};
use super::{start_query, DnsOptions, QueryType};
use crate::failure::Failure;
use crate::records::{DnsQuery, Trace};

/// Sends one query for `host`/`qtype` to `resolver` over TCP and records
/// the reply (engine `tcp`).
///
/// `opts.timeout` bounds connect, send and reply together
/// (`generic_timeout_error`). A reply with the wrong id is
/// `dns_reply_with_wrong_query_id`; a connection closed before a whole
/// reply is `eof_error`; rcodes map as for UDP.
pub async fn query(
    trace: &Trace,
    resolver: SocketAddr,
    host: &str,
    qtype: QueryType,
    opts: &DnsOptions,
) -> DnsQuery {
    let (mut q, wq) = start_query(trace, "tcp", resolver.to_string(), host, qtype, None);
    let Some(wq) = wq else {
        return q;
    };
    match tokio::time::timeout(opts.timeout, exchange(resolver, &wq)).await {
        Err(_) => q.failure = Some(Failure::GenericTimeout),
        Ok(Err(e)) => q.failure = Some(Failure::from_io(&e)),
        Ok(Ok(bytes)) => wire::record_single_reply(&mut q, wire::read_reply(&bytes, &wq)),
    }
    q.t = trace.clock.now();
    q
}

/// Connects, sends the length-prefixed query, reads one length-prefixed
/// reply.
async fn exchange(resolver: SocketAddr, wq: &WireQuery) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(resolver).await?;
    let len = u16::try_from(wq.bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS query too long"))?;
    let mut framed = Vec::with_capacity(wq.bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&wq.bytes);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}
