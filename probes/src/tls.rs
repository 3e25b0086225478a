//! TLS handshakes with a chosen SNI and a recording verifier.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

use crate::records::{TlsHandshake, Trace};

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
}

/// Runs a TLS handshake over `stream` (already connected to `address`).
pub async fn handshake<S>(
    trace: &Trace,
    stream: S,
    address: SocketAddr,
    params: &TlsParams,
) -> (TlsHandshake, Option<TlsStream<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = (trace, stream, address, params);
    todo!("probes: tls handshake")
}
