//! A stream wrapper that records `read` and `write` network events.
//!
//! Wrap any connected stream (TCP or TLS) in [`MeteredStream`] and every
//! completed read or write becomes a df-008 network event on the
//! [`Trace`], with its byte count or failure, up to a cap per stream so a
//! long body cannot fill memory. It also notes when the first byte was
//! read, which gives HTTP's time to first byte.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::failure::Failure;
use crate::records::Trace;

/// The default number of read/write events recorded per stream.
pub const DEFAULT_EVENT_CAP: usize = 64;

/// A stream that records its reads and writes on a trace.
#[derive(Debug)]
pub struct MeteredStream<S> {
    inner: S,
    trace: Trace,
    address: String,
    events_left: usize,
    read_started: Option<f64>,
    write_started: Option<f64>,
    first_read: Arc<OnceLock<f64>>,
}

impl<S> MeteredStream<S> {
    /// Wraps `inner` (connected to `address`), recording at most `event_cap`
    /// read/write events on `trace`.
    pub fn new(inner: S, trace: Trace, address: String, event_cap: usize) -> MeteredStream<S> {
        MeteredStream {
            inner,
            trace,
            address,
            events_left: event_cap,
            read_started: None,
            write_started: None,
            first_read: Arc::new(OnceLock::new()),
        }
    }

    /// A handle that yields the clock time of the first successful read
    /// (at least one byte), once it has happened.
    pub fn first_read_handle(&self) -> Arc<OnceLock<f64>> {
        Arc::clone(&self.first_read)
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn record(&mut self, op: &str, t0: f64, result: Result<usize, &io::Error>) {
        if self.events_left == 0 {
            return;
        }
        self.events_left -= 1;
        let (n, failure) = match result {
            Ok(n) => (Some(n as u64), None),
            Err(e) => (None, Some(Failure::from_tls_io(e))),
        };
        self.trace
            .event(op, Some(self.address.clone()), n, failure, t0);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let t0 = *this
            .read_started
            .get_or_insert_with(|| this.trace.clock.now());
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &poll {
            Poll::Pending => return poll,
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    let _ = this.first_read.set(this.trace.clock.now());
                }
                this.record("read", t0, Ok(n));
            }
            Poll::Ready(Err(e)) => this.record("read", t0, Err(e)),
        }
        this.read_started = None;
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let t0 = *this
            .write_started
            .get_or_insert_with(|| this.trace.clock.now());
        let poll = Pin::new(&mut this.inner).poll_write(cx, data);
        match &poll {
            Poll::Pending => return poll,
            Poll::Ready(Ok(n)) => this.record("write", t0, Ok(*n)),
            Poll::Ready(Err(e)) => this.record("write", t0, Err(e)),
        }
        this.write_started = None;
        poll
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn records_reads_and_writes_up_to_the_cap() {
        let (a, mut b) = tokio::io::duplex(1024);
        let trace = Trace::new();
        let mut m = MeteredStream::new(a, trace.clone(), "127.0.0.1:1".to_string(), 5);
        let first = m.first_read_handle();
        m.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).await.unwrap();
        assert!(first.get().is_none());
        b.write_all(b"world").await.unwrap();
        m.read_exact(&mut buf).await.unwrap();
        assert!(first.get().is_some());
        for _ in 0..10 {
            m.write_all(b"x").await.unwrap();
        }
        let events = trace.take_events();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0].operation, "write");
        assert_eq!(events[0].num_bytes, Some(5));
        assert_eq!(events[1].operation, "read");
        assert_eq!(events[1].num_bytes, Some(5));
        assert_eq!(events[1].address.as_deref(), Some("127.0.0.1:1"));
    }
}
