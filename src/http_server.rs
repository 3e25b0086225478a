//! Serving HTTP/1.1 to clients we do not trust (`control serve`,
//! `collector serve`), so that one client cannot take a server down:
//!
//! - a request head must arrive within [`ConnLimits::header_timeout`] of
//!   connecting or of the previous response (slow headers and idle
//!   keep-alive connections are closed);
//! - a request must be answered within [`ConnLimits::request_timeout`]
//!   (a slow request body gets 408);
//! - a response the client stops reading is dropped after
//!   [`ConnLimits::stall_timeout`] without a byte written;
//! - at most [`ConnLimits::max_connections`] connections are kept (kept
//!   below the process's file-descriptor limit). At the cap, the connection
//!   idle for longest (no request being handled or answered) is closed to
//!   make room, so idle connections cannot lock out a health check; when
//!   every connection is busy, the new one gets a 503 and is closed.
//!
//! Handlers see the peer address as `ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Refused connections answered at once (more are closed without an answer).
const MAX_SHEDDING: usize = 64;
/// The refusal sent when every connection is busy.
const BUSY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 45\r\n\r\n\
overloaded: too many connections; retry later";

/// The limits of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections kept at once (lowered to half the file-descriptor limit).
    pub max_connections: usize,
    /// Time for a whole request head, from connecting or from the end of
    /// the previous response.
    pub header_timeout: Duration,
    /// Time to answer a request, its body included.
    pub request_timeout: Duration,
    /// Time a response may go without the client reading any of it.
    pub stall_timeout: Duration,
    /// After the shutdown signal, time left to requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The default connection cap of both servers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// What one connection is doing.
#[derive(Debug)]
struct ConnState {
    /// Requests inside a handler.
    handling: AtomicUsize,
    /// Responses being written.
    answering: AtomicUsize,
    /// Milliseconds since the server started: the last time a handler ended
    /// or a response made progress.
    last_progress: AtomicU64,
    /// Closes the connection (evicted, or its response stalled).
    close: CancellationToken,
}

impl ConnState {
    fn busy(&self) -> bool {
        self.handling.load(Ordering::SeqCst) > 0 || self.answering.load(Ordering::SeqCst) > 0
    }
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    started: Instant,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }

    fn remove(&self, id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(&id);
        }
    }

    /// Closes the connection idle for longest; `false` when all are busy.
    fn evict_one(&self) -> bool {
        let Ok(mut conns) = self.conns.lock() else {
            return false;
        };
        let victim = conns
            .iter()
            .filter(|(_, c)| !c.busy())
            .min_by_key(|(_, c)| c.last_progress.load(Ordering::SeqCst))
            .map(|(id, _)| *id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Counts a request or response as in progress while alive.
struct Busy {
    state: Arc<ConnState>,
    counter: fn(&ConnState) -> &AtomicUsize,
    registry: Arc<Registry>,
}

impl Busy {
    fn new(
        state: &Arc<ConnState>,
        registry: &Arc<Registry>,
        counter: fn(&ConnState) -> &AtomicUsize,
    ) -> Busy {
        counter(state).fetch_add(1, Ordering::SeqCst);
        Busy {
            state: Arc::clone(state),
            counter,
            registry: Arc::clone(registry),
        }
    }

    fn progress(&self) {
        self.state
            .last_progress
            .store(self.registry.now_ms(), Ordering::SeqCst);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.progress();
        (self.counter)(&self.state).fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection cap for `wanted`: at most half the file-descriptor
/// limit (raised to its hard maximum first), leaving the rest for the
/// server's own sockets and files.
pub fn connection_cap(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let cap = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if wanted > cap {
        tracing::warn!(
            wanted,
            cap,
            "connection cap lowered to half the file-descriptor limit"
        );
    }
    wanted.min(cap).max(1)
}

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish within
/// [`ConnLimits::shutdown_grace`] and returns.
pub async fn serve<L, F>(
    mut listener: L,
    router: Router,
    limits: ConnLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    let max = connection_cap(limits.max_connections);
    let registry = Arc::new(Registry {
        started: Instant::now(),
        conns: Mutex::new(HashMap::new()),
    });
    let stopping = CancellationToken::new();
    let shedding = Arc::new(Semaphore::new(MAX_SHEDDING));
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        if registry.len() >= max && !registry.evict_one() {
            // Every connection is busy: say so and close.
            if let Ok(permit) = Arc::clone(&shedding).try_acquire_owned() {
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut io = io;
                    let mut buf = [0u8; 4096];
                    // Read (and ignore) the request first: closing with
                    // unread data would reset the connection and lose the
                    // answer.
                    let _ = tokio::time::timeout(Duration::from_secs(1), io.read(&mut buf)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        io.write_all(BUSY_ANSWER).await?;
                        io.shutdown().await?;
                        while io.read(&mut buf).await? > 0 {}
                        Ok::<_, std::io::Error>(())
                    })
                    .await;
                });
            }
            continue;
        }
        next_id += 1;
        let id = next_id;
        let state = Arc::new(ConnState {
            handling: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            last_progress: AtomicU64::new(registry.now_ms()),
            close: CancellationToken::new(),
        });
        if let Ok(mut c) = registry.conns.lock() {
            c.insert(id, Arc::clone(&state));
        }
        tokio::spawn(connection(
            io,
            peer,
            id,
            state,
            Arc::clone(&registry),
            router.clone(),
            limits.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    stopping.cancel();
    let deadline = Instant::now() + limits.shutdown_grace;
    while registry.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Serves one connection until it ends, is closed, stalls, or the server
/// stops.
#[allow(clippy::too_many_arguments)]
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    router: Router,
    limits: ConnLimits,
    stopping: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tower = TowerToHyperService::new(router);
    let request_timeout = limits.request_timeout;
    let service = {
        let state = Arc::clone(&state);
        let registry = Arc::clone(&registry);
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let handling = Busy::new(&state, &registry, |s| &s.handling);
            let call = hyper::service::Service::call(&tower, req);
            let (state, registry) = (Arc::clone(&state), Arc::clone(&registry));
            async move {
                let resp = match tokio::time::timeout(request_timeout, call).await {
                    Ok(r) => r?,
                    Err(_) => too_slow(),
                };
                // The response counts as busy until written; each chunk the
                // client takes is progress.
                let answering = Busy::new(&state, &registry, |s| &s.answering);
                drop(handling);
                Ok::<_, std::convert::Infallible>(resp.map(move |body| {
                    Body::new(body.map_frame(move |frame| {
                        answering.progress();
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let io = Tracked {
        io,
        state: Arc::clone(&state),
        registry: Arc::clone(&registry),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let watch_every =
        (limits.stall_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let stall_ms = limits.stall_timeout.as_millis() as u64;
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = state.close.cancelled() => break,
            () = stopping.cancelled(), if !graceful => {
                conn.as_mut().graceful_shutdown();
                graceful = true;
            }
            () = tokio::time::sleep(watch_every) => {
                let answering = state.answering.load(Ordering::SeqCst) > 0;
                let handling = state.handling.load(Ordering::SeqCst) > 0;
                let since = registry
                    .now_ms()
                    .saturating_sub(state.last_progress.load(Ordering::SeqCst));
                if answering && !handling && since > stall_ms {
                    break; // the client stopped reading
                }
            }
        }
    }
    registry.remove(id);
}

/// The answer to a request that took longer than the request timeout.
fn too_slow() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        "request not completed in time\n",
    )
        .into_response()
}

/// A connection whose writes count as progress (a slow reader of a large
/// response is not a stalled one).
struct Tracked<I> {
    io: I,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.state
                .last_progress
                .store(self.registry.now_ms(), Ordering::SeqCst);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.state
                .last_progress
                .store(self.registry.now_ms(), Ordering::SeqCst);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
