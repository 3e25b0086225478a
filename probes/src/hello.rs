//! Where the server name sits in our ClientHello, on purpose.
//!
//! # The primary handshake: one segment
//!
//! rustls's default key shares include the post-quantum hybrid
//! X25519MLKEM768 (1216 bytes of key share), which makes a ClientHello of
//! about 1.5 KB: on a 1500-byte MTU it takes two TCP segments, and since
//! rustls shuffles its extensions, the server name lands in the first, the
//! second, or across both by chance. A censor matching the name per packet
//! then blocks some tries and misses others: a coin toss for the verdict.
//!
//! Our handshakes therefore offer classical groups only ([`provider`]:
//! X25519, P-256, P-384, no hybrid share). The ClientHello is then a few
//! hundred bytes (a 253-byte name included), one segment on any real MTU,
//! so the name is always in the first and only segment a filter sees. A
//! server that insists on another group still gets it through a
//! HelloRetryRequest; TLS 1.2 servers are unaffected.
//!
//! # The second layout: the name split across segments
//!
//! When a handshake fails the way an SNI filter makes it fail, a second one
//! over [`SplitSni`] sends the same kind of ClientHello in two segments cut
//! in the middle of the name (as a browser's large post-quantum ClientHello
//! may arrive). A filter that matches packets one by one no longer sees the
//! name; one that reassembles the stream still does. The caller records and
//! interprets the result.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::CryptoProvider;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The pause between the two parts of a split ClientHello, so the kernel
/// cannot merge them into one segment.
pub const SPLIT_PAUSE: Duration = Duration::from_millis(50);

/// The aws-lc-rs provider with classical key-exchange groups only (see the
/// module doc): a ClientHello that fits in one segment.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..aws_lc_rs::default_provider()
    }
}

/// A stream that cuts the first write containing `name` in the middle of
/// the name: the first half goes out, then after [`SPLIT_PAUSE`] the rest.
/// Everything else passes through unchanged.
pub struct SplitSni<S> {
    inner: S,
    name: Vec<u8>,
    state: SplitState,
}

enum SplitState {
    Looking,
    Pausing(Pin<Box<Sleep>>),
    Done,
}

impl<S> SplitSni<S> {
    /// Wraps `inner`; the name to split is `name` (as it appears in the SNI
    /// extension, ASCII). An empty name is never split.
    pub fn new(inner: S, name: &str) -> SplitSni<S> {
        SplitSni {
            inner,
            name: name.as_bytes().to_vec(),
            state: if name.len() < 2 {
                SplitState::Done
            } else {
                SplitState::Looking
            },
        }
    }

    /// Whether the name was found and split.
    pub fn did_split(&self) -> bool {
        !matches!(self.state, SplitState::Looking)
    }
}

/// Where to cut `buf` so that `name` is split in two, if it is in `buf`.
pub fn split_point(buf: &[u8], name: &[u8]) -> Option<usize> {
    if name.len() < 2 {
        return None;
    }
    let at = buf.windows(name.len()).position(|w| w == name)?;
    Some(at + name.len() / 2)
}

impl<S: AsyncRead + Unpin> AsyncRead for SplitSni<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SplitSni<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                SplitState::Done => return Pin::new(&mut this.inner).poll_write(cx, buf),
                SplitState::Pausing(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.state = SplitState::Done;
                }
                SplitState::Looking => {
                    let Some(cut) = split_point(buf, &this.name) else {
                        return Pin::new(&mut this.inner).poll_write(cx, buf);
                    };
                    let n = match Pin::new(&mut this.inner).poll_write(cx, &buf[..cut]) {
                        Poll::Ready(Ok(n)) => n,
                        other => return other,
                    };
                    if n == cut {
                        this.state = SplitState::Pausing(Box::pin(tokio::time::sleep(SPLIT_PAUSE)));
                    }
                    return Poll::Ready(Ok(n));
                }
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn hello(name: &str, provider: CryptoProvider) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let sn = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), sn).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn the_primary_client_hello_fits_one_segment_even_with_a_long_name() {
        // 1460 bytes of TCP payload at MTU 1500 (IPv4, no options); 1440
        // for IPv6. A 253-byte name is the longest DNS allows.
        let long = format!("{}.example", vec!["a".repeat(60); 4].join("."));
        for name in ["news.example", long.as_str()] {
            let ours = hello(name, provider());
            assert!(ours.len() <= 1400, "{} bytes for {name}", ours.len());
        }
        // The default (post-quantum) one does not: that is the issue.
        assert!(hello("news.example", aws_lc_rs::default_provider()).len() > 1460);
    }

    #[test]
    fn the_split_point_is_inside_the_name() {
        let buf = hello("tls-sni-drop.example", provider());
        let cut = split_point(&buf, b"tls-sni-drop.example").unwrap();
        assert!(!buf[..cut].windows(20).any(|w| w == b"tls-sni-drop.example"));
        assert!(!buf[cut..].windows(20).any(|w| w == b"tls-sni-drop.example"));
        assert_eq!(split_point(&buf, b"other.example"), None);
    }
}
