//! QUIC handshakes (the first step of HTTP/3) with a chosen SNI, recorded
//! the way OONI records `quic_handshakes`: a TLS handshake record with
//! `network: "udp"`.
//!
//! The TLS side is the same as [`crate::tls`]: rustls with the aws-lc-rs
//! provider and the recording verifier, so the chain the server sent and
//! webpki's opinion of it are kept even when the handshake is refused.
//! The transport is quinn.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::failure::Failure;
use crate::http::{extract_title, rate_lower_bound, HttpParams};
use crate::records::{
    HttpRequestRecord, HttpResponseRecord, HttpTransaction, MaybeBinary, TlsHandshake, Trace,
    TransferStats,
};
use crate::tls::{self, TlsParams, TrustRoots};

/// The ALPN token of HTTP/3.
pub const H3_ALPN: &[u8] = b"h3";

/// The UDP port HTTP/3 uses unless `Alt-Svc` says otherwise.
pub const QUIC_PORT: u16 = 443;

/// A browser-like HTTP/3 handshake for `host`: SNI and verification
/// against `host`, ALPN `h3`, a 10 s timeout, invalid chains refused.
pub fn h3_params(host: &str, roots: Arc<TrustRoots>) -> TlsParams {
    let mut params = TlsParams::for_host(host, roots);
    params.alpn = vec![H3_ALPN.to_vec()];
    params
}

/// An established QUIC connection and the endpoint (UDP socket) it runs on.
#[derive(Debug)]
pub struct QuicConnection {
    /// The connection.
    pub connection: quinn::Connection,
    /// The endpoint that owns the socket; keep it with the connection.
    pub endpoint: quinn::Endpoint,
}

impl QuicConnection {
    /// Closes the connection politely (CONNECTION_CLOSE, code 0) and gives
    /// the endpoint a moment to send it.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}

/// Runs a QUIC handshake with `address` (UDP) using `params` (offer `h3`
/// with [`h3_params`]).
///
/// The record is OONI's `quic_handshakes` entry: `network: "udp"`, the
/// chain and the verifier's verdict as in [`crate::tls::handshake`],
/// `tls_version` always `TLSv1.3`. `cipher_suite` stays empty: quinn does
/// not expose the suite it negotiated.
///
/// Failures: `generic_timeout_error` (no answer within `params.timeout`:
/// UDP is silent, so a dropped packet and a closed port look the same),
/// `network_unreachable`/`host_unreachable` (no route from here, found
/// before sending), the certificate failures of the TLS probe when the
/// chain is refused, `ssl_invalid_hostname` (the server's
/// `unrecognized_name` alert), `ssl_failed_handshake` (any other TLS alert,
/// e.g. no common ALPN), `connection_reset` (stateless reset).
pub async fn handshake(
    trace: &Trace,
    address: SocketAddr,
    params: &TlsParams,
) -> (TlsHandshake, Option<QuicConnection>) {
    let t0 = trace.clock.now();
    let mut record = TlsHandshake {
        network: "udp".to_string(),
        address: address.to_string(),
        no_tls_verify: !params.fail_on_invalid,
        x_verify_as: params.verify_as.clone(),
        t0,
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        ..TlsHandshake::default()
    };
    let outcome = match tls::recording_config(params) {
        Err(f) => Err((f, None)),
        Ok((config, name, recording)) => {
            if config.enable_sni {
                if let ServerName::DnsName(dns) = &name {
                    record.server_name = dns.as_ref().to_string();
                }
            }
            let result = connect(address, config, &name, params.timeout).await;
            let verdict = recording.fill(&mut record);
            result.map_err(|f| (f, verdict))
        }
    };
    let conn = match outcome {
        Ok(conn) => {
            record.tls_version = "TLSv1.3".to_string();
            record.negotiated_protocol = conn
                .connection
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default();
            if record.peer_certificates.is_empty() {
                if let Some(chain) = conn
                    .connection
                    .peer_identity()
                    .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
                {
                    record.peer_certificates = chain
                        .iter()
                        .map(|c| crate::records::BinaryData::new(c))
                        .collect();
                    record.x_leaf = chain.first().map(|c| tls::summarize(c));
                }
            }
            Some(conn)
        }
        Err((failure, verdict)) => {
            // A chain we refused is the reason, whatever alert quinn reports.
            record.failure = Some(match verdict {
                Some(v) if params.fail_on_invalid => v,
                _ => failure,
            });
            None
        }
    };
    record.t = trace.clock.now();
    (record, conn)
}

/// One HTTP/3 GET of `params.url` over an established QUIC connection
/// (ALPN `h3`), recorded as a request with `network: "udp"` and
/// `alpn: "h3"`. The body is read up to `params.body_cap`; `params.timeout`
/// bounds the whole round trip (then `generic_timeout_error`, keeping what
/// arrived). The authority comes from the URL (`params.host_header` is not
/// used: HTTP/3 has no Host header). A connection the peer closed is mapped
/// like a handshake failure; any other HTTP/3 error is
/// `http_request_failed`.
pub async fn get(trace: &Trace, conn: &QuicConnection, params: &HttpParams) -> HttpTransaction {
    let t0 = trace.clock.now();
    let address = conn.connection.remote_address();
    let headers_list: Vec<(String, String)> = params
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .cloned()
        .collect();
    let request = HttpRequestRecord {
        body: MaybeBinary::default(),
        body_is_truncated: false,
        headers: headers_list.iter().rev().cloned().collect(),
        headers_list: headers_list.clone(),
        method: "GET".to_string(),
        url: params.url.to_string(),
    };
    let mut head: Option<(i64, Vec<(String, String)>)> = None;
    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    let (mut t_request, mut t_first, mut t_last) = (t0, None, None);
    let mut driver: Option<tokio::task::JoinHandle<()>> = None;
    let round_trip = async {
        let h3c = h3_quinn::Connection::new(conn.connection.clone());
        let (mut drive, mut send) = h3::client::new(h3c).await.map_err(|_| ())?;
        driver = Some(tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| drive.poll_close(cx)).await;
        }));
        let mut req = http::Request::get(params.url.as_str());
        for (k, v) in &headers_list {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(()).map_err(|_| ())?;
        t_request = trace.clock.now();
        let mut stream = send.send_request(req).await.map_err(|_| ())?;
        stream.finish().await.map_err(|_| ())?;
        let resp = stream.recv_response().await.map_err(|_| ())?;
        let list = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        head = Some((i64::from(resp.status().as_u16()), list));
        while let Some(mut chunk) = stream.recv_data().await.map_err(|_| ())? {
            let data: Bytes = chunk.copy_to_bytes(chunk.remaining());
            if data.is_empty() {
                continue;
            }
            let now = trace.clock.now();
            t_first.get_or_insert(now);
            t_last = Some(now);
            let room = params.body_cap.saturating_sub(body.len());
            if data.len() > room {
                body.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&data);
        }
        Ok::<(), ()>(())
    };
    let result = tokio::time::timeout(params.timeout, round_trip).await;
    if let Some(task) = driver {
        task.abort();
    }
    let failure = match result {
        Err(_) => Some(Failure::GenericTimeout),
        Ok(Ok(())) => None,
        Ok(Err(())) => Some(match conn.connection.close_reason() {
            Some(reason) => from_connection_error(&reason),
            None => Failure::HttpRequestFailed,
        }),
    };
    let body_seconds = match (t_first, t_last) {
        (Some(a), Some(b)) => f64::max(b - a, 0.0),
        _ => 0.0,
    };
    let response = match head {
        Some((code, headers_list)) => {
            let mut headers = std::collections::BTreeMap::new();
            for (k, v) in &headers_list {
                headers.entry(k.clone()).or_insert_with(|| v.clone());
            }
            HttpResponseRecord {
                body: MaybeBinary::from_bytes(&body),
                body_is_truncated: truncated,
                code,
                headers,
                headers_list,
                x_body_length: body.len() as u64,
                x_body_sha256: hex::encode(Sha256::digest(&body)),
                x_title: extract_title(&body),
            }
        }
        None => HttpResponseRecord::default(),
    };
    HttpTransaction {
        network: "udp".to_string(),
        address: address.to_string(),
        alpn: "h3".to_string(),
        failure,
        request,
        response,
        t0,
        t: trace.clock.now(),
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        x_transfer: TransferStats {
            ttfb: t_first.map(|t| (t - t_request).max(0.0)).unwrap_or(0.0),
            body_seconds,
            bytes: body.len() as u64,
            rate_bps: rate_lower_bound(body.len() as u64, body_seconds),
        },
    }
}

/// Checks for a route, opens an endpoint and runs the handshake under
/// `timeout`.
async fn connect(
    address: SocketAddr,
    config: rustls::ClientConfig,
    name: &ServerName<'static>,
    timeout: Duration,
) -> Result<QuicConnection, Failure> {
    let local = unspecified(address);
    // A connected UDP socket asks the kernel for a route without sending
    // anything: no route is ours to report, not a silent peer.
    std::net::UdpSocket::bind(local)
        .and_then(|s| s.connect(address))
        .map_err(|e| Failure::from_io(&e))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(config))
        .map_err(|e| Failure::Unknown(format!("QUIC TLS config: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(timeout).ok());
    client.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::client(local).map_err(|e| Failure::from_io(&e))?;
    let server_name = name.to_str();
    let connecting = endpoint
        .connect_with(client, address, &server_name)
        .map_err(|e| Failure::Unknown(format!("QUIC connect: {e}")))?;
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(Failure::GenericTimeout),
        Ok(Err(e)) => Err(from_connection_error(&e)),
        Ok(Ok(connection)) => Ok(QuicConnection {
            connection,
            endpoint,
        }),
    }
}

/// `0.0.0.0:0` or `[::]:0`, the family of `address`.
fn unspecified(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Maps why a QUIC connection ended during the handshake.
pub fn from_connection_error(e: &quinn::ConnectionError) -> Failure {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => Failure::GenericTimeout,
        E::Reset => Failure::ConnectionReset,
        E::LocallyClosed => Failure::Interrupted,
        E::ApplicationClosed(_) => Failure::Eof,
        E::TransportError(t) => from_code(u64::from(t.code)),
        E::ConnectionClosed(c) => from_code(u64::from(c.error_code)),
        E::VersionMismatch => Failure::Unknown("quic_incompatible_version".to_string()),
        E::CidsExhausted => Failure::Unknown(e.to_string()),
    }
}

/// A QUIC transport error code: `0x100 + alert` carries a TLS alert.
fn from_code(code: u64) -> Failure {
    const UNRECOGNISED_NAME: u64 = 112;
    match code {
        0 => Failure::Eof,
        c if c == 0x100 + UNRECOGNISED_NAME => Failure::SslInvalidHostname,
        0x100..=0x1ff => Failure::SslFailedHandshake,
        other => Failure::Unknown(format!("quic transport error {other:#x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_codes_become_ooni_failures() {
        assert_eq!(from_code(0), Failure::Eof);
        assert_eq!(from_code(0x100 + 112), Failure::SslInvalidHostname);
        assert_eq!(from_code(0x100 + 120), Failure::SslFailedHandshake);
        assert_eq!(
            from_code(0x0a),
            Failure::Unknown("quic transport error 0xa".to_string())
        );
        assert_eq!(
            from_connection_error(&quinn::ConnectionError::TimedOut),
            Failure::GenericTimeout
        );
        assert_eq!(
            from_connection_error(&quinn::ConnectionError::Reset),
            Failure::ConnectionReset
        );
    }

    #[test]
    fn h3_params_offer_h3_only() {
        let p = h3_params("example.org", TrustRoots::webpki());
        assert_eq!(p.alpn, vec![b"h3".to_vec()]);
        assert_eq!(p.sni.as_deref(), Some("example.org"));
    }
}
