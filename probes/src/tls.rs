//! TLS handshakes with a chosen SNI and a recording verifier.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::failure::Failure;
use crate::records::{BinaryData, CertSummary, TlsHandshake, Trace};

/// Why TLS could not be set up (a program error, not a measurement).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A CA file could not be read or parsed.
    #[error("cannot load CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The trust anchors certificates are judged against: webpki-roots (Mozilla's
/// set) plus optional extra anchors.
#[derive(Debug)]
pub struct TrustRoots {
    /// The root store.
    pub store: Arc<rustls::RootCertStore>,
}

impl TrustRoots {
    /// Mozilla's roots only.
    ///
    /// Built once per process and shared.
    pub fn webpki() -> Arc<TrustRoots> {
        static ROOTS: OnceLock<Arc<TrustRoots>> = OnceLock::new();
        Arc::clone(ROOTS.get_or_init(|| {
            Arc::new(TrustRoots {
                store: Arc::new(webpki_store()),
            })
        }))
    }

    /// Mozilla's roots plus every certificate in these PEM files.
    ///
    /// A file that cannot be read, holds no certificate, or holds a
    /// certificate that is not a usable trust anchor is an error naming it.
    pub fn with_pem_files(paths: &[PathBuf]) -> Result<Arc<TrustRoots>, TlsSetupError> {
        let mut store = webpki_store();
        for path in paths {
            let fail = |reason: String| TlsSetupError::CaFile {
                path: path.clone(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let certs = rustls_pemfile::certs(&mut bytes.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("bad PEM: {e}")))?;
            if certs.is_empty() {
                return Err(fail("no CERTIFICATE block found".to_string()));
            }
            for cert in certs {
                store.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(Arc::new(TrustRoots {
            store: Arc::new(store),
        }))
    }
}

fn webpki_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// How to run one handshake.
#[derive(Clone, Debug)]
pub struct TlsParams {
    /// The SNI to send; `None` sends no SNI.
    pub sni: Option<String>,
    /// The name to verify the chain against (may differ from the SNI).
    pub verify_as: String,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
    /// Trust anchors.
    pub roots: Arc<TrustRoots>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Abort the handshake when the chain does not verify (as a browser
    /// would). When false the handshake completes anyway and the verifier's
    /// opinion is in `x_certificate_failure`.
    pub fail_on_invalid: bool,
    /// Seconds added to this machine's clock before the chain's validity
    /// window is checked: the measured offset to a reference clock, so a
    /// probe whose clock is wrong judges certificates at the right time.
    pub clock_offset_secs: i64,
}

impl TlsParams {
    /// A browser-like handshake for `host`: SNI and verification against
    /// `host`, ALPN `http/1.1`, a 10 s timeout, invalid chains refused.
    pub fn for_host(host: &str, roots: Arc<TrustRoots>) -> TlsParams {
        TlsParams {
            sni: Some(host.to_string()),
            verify_as: host.to_string(),
            alpn: vec![b"http/1.1".to_vec()],
            roots,
            timeout: Duration::from_secs(10),
            fail_on_invalid: true,
            clock_offset_secs: 0,
        }
    }
}

/// Runs a TLS handshake over `stream` (already connected to `address`).
///
/// The chain the server sent is recorded (`peer_certificates`, `x_leaf`)
/// and judged against `params.verify_as` even when the handshake then
/// fails or is refused; the verdict is in `x_certificate_failure`. When
/// `params.fail_on_invalid` is true an invalid chain aborts the handshake
/// and is also the record's `failure`; otherwise the handshake completes
/// and `no_tls_verify` is true. Network events `tls_handshake_start` and
/// `tls_handshake_done` are recorded on the trace.
///
/// Failures: `ssl_unknown_authority`, `ssl_invalid_hostname`,
/// `ssl_invalid_certificate`, `ssl_failed_handshake`, `connection_reset`,
/// `eof_error`, `generic_timeout_error`.
pub async fn handshake<S>(
    trace: &Trace,
    stream: S,
    address: SocketAddr,
    params: &TlsParams,
) -> (TlsHandshake, Option<TlsStream<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let t0 = trace.clock.now();
    let addr_s = address.to_string();
    trace.event("tls_handshake_start", Some(addr_s.clone()), None, None, t0);
    let mut record = TlsHandshake {
        network: "tcp".to_string(),
        address: addr_s.clone(),
        no_tls_verify: !params.fail_on_invalid,
        server_name: sent_sni(params.sni.as_deref()),
        x_verify_as: params.verify_as.clone(),
        t0,
        tags: trace.tags.clone(),
        transaction_id: trace.transaction_id,
        ..TlsHandshake::default()
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let outcome = match client_setup(params, Arc::clone(&seen)) {
        Err(f) => Err(f),
        Ok((config, name)) => {
            let connector = TlsConnector::from(Arc::new(config));
            match tokio::time::timeout(params.timeout, connector.connect(name, stream)).await {
                Err(_) => Err(Failure::GenericTimeout),
                Ok(Err(e)) => Err(Failure::from_tls_io(&e)),
                Ok(Ok(tls)) => Ok(tls),
            }
        }
    };
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    record.peer_certificates = seen.chain.iter().map(|c| BinaryData::new(c)).collect();
    record.x_leaf = seen.chain.first().map(|c| summarize(c));
    record.x_certificate_failure = seen.verdict.clone();
    record.x_certificate_reason = seen.reason.map(str::to_string);
    record.x_certificate_untimed = seen.untimed.as_ref().map(|u| match u {
        None => UNTIMED_VALID.to_string(),
        Some(f) => f.to_string(),
    });
    let stream = match outcome {
        Ok(tls) => {
            let conn = tls.get_ref().1;
            record.tls_version = conn
                .protocol_version()
                .map(version_name)
                .unwrap_or_default();
            record.cipher_suite = conn
                .negotiated_cipher_suite()
                .map(|cs| suite_name(cs.suite()))
                .unwrap_or_default();
            record.negotiated_protocol = conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            if record.peer_certificates.is_empty() {
                if let Some(chain) = conn.peer_certificates() {
                    record.peer_certificates = chain.iter().map(|c| BinaryData::new(c)).collect();
                    record.x_leaf = chain.first().map(|c| summarize(c));
                }
            }
            Some(tls)
        }
        Err(f) => {
            record.failure = Some(f);
            None
        }
    };
    trace.event(
        "tls_handshake_done",
        Some(addr_s),
        None,
        record.failure.clone(),
        t0,
    );
    record.t = trace.clock.now();
    (record, stream)
}

/// The SNI that actually goes out: rustls sends none for an IP address.
fn sent_sni(sni: Option<&str>) -> String {
    match sni.map(|s| (s, ServerName::try_from(s))) {
        Some((s, Ok(ServerName::DnsName(_)))) => s.to_string(),
        _ => String::new(),
    }
}

/// Parses a DER certificate into its readable summary; undecodable DER
/// still gets its hash.
pub fn summarize(der: &[u8]) -> CertSummary {
    let sha256 = hex::encode(Sha256::digest(der));
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sha256,
        },
        Err(_) => CertSummary {
            sha256,
            ..CertSummary::default()
        },
    }
}

/// `x_certificate_untimed` when the chain is valid apart from the time.
pub const UNTIMED_VALID: &str = "valid";

/// What the recording verifier saw during one handshake.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The chain as received, leaf first.
    chain: Vec<Vec<u8>>,
    /// The verifier's verdict (None: valid for `verify_as`).
    verdict: Option<Failure>,
    /// The finer reason (`expired`, `not_yet_valid`, ...).
    reason: Option<&'static str>,
    /// For a validity-window failure: the verdict at a time inside the
    /// leaf's window (`Some(None)`: the chain is otherwise valid).
    untimed: Option<Option<Failure>>,
}

/// Builds the client config and the name passed to rustls for one
/// handshake. Errors here are recorded failures (a bad name in the params).
fn client_setup(
    params: &TlsParams,
    seen: Arc<Mutex<Seen>>,
) -> Result<(rustls::ClientConfig, ServerName<'static>), Failure> {
    let bad_name = |n: &str| Failure::Unknown(format!("invalid TLS server name {n:?}"));
    let verify_as =
        ServerName::try_from(params.verify_as.clone()).map_err(|_| bad_name(&params.verify_as))?;
    let name = match &params.sni {
        Some(sni) => ServerName::try_from(sni.clone()).map_err(|_| bad_name(sni))?,
        None => verify_as.clone(),
    };
    // Classical key shares only: the ClientHello fits one segment (see
    // `crate::hello`).
    let provider = Arc::new(crate::hello::provider());
    let inner = WebPkiServerVerifier::builder_with_provider(
        Arc::clone(&params.roots.store),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| Failure::Unknown(format!("TLS verifier: {e}")))?;
    let verifier = RecordingVerifier {
        inner,
        verify_as,
        seen,
        fail_on_invalid: params.fail_on_invalid,
        clock_offset_secs: params.clock_offset_secs,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Unknown(format!("TLS config: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = params.alpn.clone();
    config.enable_sni = params.sni.is_some();
    Ok((config, name))
}

/// A verifier that records the chain and what webpki thinks of it, judged
/// against `verify_as` rather than the SNI, and refuses only when asked to.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verify_as: ServerName<'static>,
    seen: Arc<Mutex<Seen>>,
    fail_on_invalid: bool,
    clock_offset_secs: i64,
}

/// `now` moved by `offset` seconds (saturating at the epoch).
fn shifted(now: UnixTime, offset: i64) -> UnixTime {
    let secs = now.as_secs().saturating_add_signed(offset);
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

/// A moment inside the leaf's validity window (its middle), when the DER
/// can be read.
fn inside_window(der: &[u8]) -> Option<UnixTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    let from = v.not_before.timestamp();
    let to = v.not_after.timestamp();
    let mid = from.checked_add(to.checked_sub(from)? / 2)?;
    Some(UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(mid).ok()?,
    )))
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = shifted(now, self.clock_offset_secs);
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.verify_as,
            ocsp_response,
            now,
        );
        let reason = verdict.as_ref().err().and_then(Failure::certificate_reason);
        // A validity-window failure says nothing about who issued the
        // chain: judge it again at a time the leaf is valid.
        let untimed = match reason {
            Some(Failure::REASON_EXPIRED | Failure::REASON_NOT_YET_VALID) => {
                inside_window(end_entity.as_ref()).map(|t| {
                    self.inner
                        .verify_server_cert(
                            end_entity,
                            intermediates,
                            &self.verify_as,
                            ocsp_response,
                            t,
                        )
                        .err()
                        .map(|e| Failure::from_rustls(&e))
                })
            }
            _ => None,
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.as_ref().to_vec())
                .collect();
            seen.verdict = verdict.as_ref().err().map(Failure::from_rustls);
            seen.reason = reason;
            seen.untimed = untimed;
        }
        match verdict {
            Err(e) if self.fail_on_invalid => Err(e),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `TLSv1.3`, `TLSv1.2`, ... as OONI writes them.
fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        rustls::ProtocolVersion::TLSv1_1 => "TLSv1.1".to_string(),
        rustls::ProtocolVersion::TLSv1_0 => "TLSv1.0".to_string(),
        other => format!("{other:?}"),
    }
}

/// The IANA-style suite name OONI (Go) writes: rustls's `TLS13_` prefix
/// becomes `TLS_`.
fn suite_name(cs: rustls::CipherSuite) -> String {
    let name = format!("{cs:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The recording verifier for transports other than TLS over TCP (QUIC):
/// a client config whose verifier records the chain, the name to pass to
/// the transport, and the handle that fills a record afterwards.
pub(crate) fn recording_config(
    params: &TlsParams,
) -> Result<(rustls::ClientConfig, ServerName<'static>, Recording), Failure> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (config, name) = client_setup(params, Arc::clone(&seen))?;
    Ok((config, name, Recording { seen }))
}

/// What a [`recording_config`] verifier saw, read after the handshake.
#[derive(Debug)]
pub(crate) struct Recording {
    seen: Arc<Mutex<Seen>>,
}

impl Recording {
    /// Writes the chain (`peer_certificates`, `x_leaf`) and the verifier's
    /// verdict (`x_certificate_failure`) into `record`; returns the verdict.
    pub(crate) fn fill(&self, record: &mut TlsHandshake) -> Option<Failure> {
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        record.peer_certificates = seen.chain.iter().map(|c| BinaryData::new(c)).collect();
        record.x_leaf = seen.chain.first().map(|c| summarize(c));
        record.x_certificate_failure = seen.verdict.clone();
        seen.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_sni_is_not_sent() {
        assert_eq!(sent_sni(Some("example.org")), "example.org");
        assert_eq!(sent_sni(Some("192.0.2.1")), "");
        assert_eq!(sent_sni(None), "");
    }

    #[test]
    fn names_as_ooni_writes_them() {
        assert_eq!(
            suite_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            suite_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(version_name(rustls::ProtocolVersion::TLSv1_2), "TLSv1.2");
    }
}
