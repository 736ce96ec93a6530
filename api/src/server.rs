//! The HTTP server loop: hyper with the timeouts and the connection bound `axum::serve` does not
//! offer (it sets no timer, so a connection that sends half a request line, or sits idle between
//! keep-alive requests, stays open for ever; and it accepts without bound).
//!
//! - HTTP/1 header read timeout: from the moment the server waits for a request head until the
//!   head is complete. It covers both a slow or partial request line and an idle keep-alive
//!   connection (hyper starts the same timer while waiting for the next request).
//! - Request bodies: at most [`Limits::body_timeout`] between two chunks (tower-http's
//!   `RequestBodyTimeoutLayer`, applied in [`crate::app`]): uploads may take as long as they keep
//!   moving, a body that stops is cut.
//! - At most [`Limits::max_connections`] open connections: past it, the server stops accepting
//!   (new connections wait in the kernel's backlog) until one closes.
//! - WebSocket messages from clients of at most [`crate::realtime::MAX_MESSAGE`] bytes
//!   ([`ws_guard`]).

mod ws_guard;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use drishtiksha_common::config::ApiConfig;

/// How long in-flight requests may take to finish after a shutdown was requested.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(config: &ApiConfig) -> Self {
        Self {
            header_timeout: config.http_header_timeout,
            body_timeout: config.http_body_timeout,
            max_connections: config.http_max_connections,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections finish (for
/// at most [`DRAIN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // CONNECT protocol for WebSockets over HTTP/2; pings find dead HTTP/2 peers.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(axum::body::Body::new)
        });
        let service = TowerToHyperService::new(service);
        let io = TokioIo::new(ws_guard::Guarded::new(stream, crate::realtime::MAX_MESSAGE));
        let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing");
    }
    Ok(())
}
