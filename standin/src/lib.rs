//! The ML stand-in: a development and test server that speaks the ML server contract
//! (`docs/ml-server.md` §1–§9) with **simulated** results. It is not a detector: every
//! verdict is derived from a hash of the uploaded bytes.
//!
//! It owns the model catalogue, deterministic result generation, progress events on Redis,
//! failure injection and a simulated GPU of limited capacity; the backend talks to it exactly as
//! to the real ML server.
//!
//! Sections cited as `§x.y` in this crate are those of `docs/ml-server.md`.

pub mod analyze;
pub mod catalogue;
pub mod config;
pub mod conn;
pub mod error;
pub mod failure;
pub mod gpu;
pub mod heatmap;
pub mod image;
pub mod info;
pub mod inspect;
pub mod progress;
pub mod rng;
pub mod scan;
pub mod simulate;
pub mod state;
pub mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tracing::Instrument as _;

pub use crate::config::{Command, Config, ConfigError};
use crate::conn::{ConnKill, KillableListener};
use crate::error::ApiError;
pub use crate::state::AppState;

/// How long in-flight calls (a `hang` never ends) may run after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Paths the server answers; `<path>/` answers 307 to `<path>` (§1).
const ROUTES: [&str; 12] = [
    "/",
    "/ping",
    "/stats",
    "/models",
    "/device",
    "/system",
    "/config",
    "/analyze",
    "/__standin/requests",
    "/__standin/reset",
    "/__standin/catalogue",
    "/__standin/capacity",
];

const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id: the `X-Correlation-ID` header, or a generated UUID.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Naive UTC with microseconds and no `Z` (§1).
pub fn timestamp() -> String {
    chrono::Utc::now().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// The router. Serve it with [`serve`] (or with `ConnectInfo<ConnKill>`) for the `drop` mode to
/// close connections; elsewhere `drop` degrades to `hang`.
pub fn app(state: Arc<AppState>) -> Router {
    let keyed = Router::new()
        .route("/stats", get(info::get_stats))
        .route("/models", get(info::get_models))
        .route("/device", get(info::get_device))
        .route("/system", get(info::get_system))
        .route("/config", get(info::get_config))
        .route("/__standin/requests", get(inspect::list_requests))
        .route("/__standin/reset", post(inspect::reset))
        .route("/__standin/catalogue", put(inspect::replace_catalogue))
        .route("/__standin/capacity", get(inspect::get_capacity))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .route("/", get(info::get_root))
        .route("/ping", get(info::get_ping))
        // Authenticates itself so that rejected calls appear in the request log.
        .route("/analyze", post(analyze::analyze))
        .merge(keyed)
        .fallback(fallback)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Uploads of hundreds of MiB are streamed, never buffered: no body limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(correlation))
        .with_state(state)
}

async fn require_api_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.authorized(request.headers()) { next.run(request).await } else { ApiError::Unauthorized.into_response() }
}

async fn correlation(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        correlation_id = %id,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "response"));
    response
}

/// 404, except `<known path>/` which redirects (307) to the path without the slash, as the real
/// server's framework does.
async fn fallback(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let trimmed = path.trim_end_matches('/');
    if path.len() > 1 && path.ends_with('/') && ROUTES.contains(&trimmed) {
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let location = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("http://{host}{trimmed}{query}"),
            None => format!("{trimmed}{query}"),
        };
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response();
    }
    ApiError::NotFound.into_response()
}

/// Serves in this process, on a free loopback port, for as long as the process runs (tests,
/// benchmarks, embedding); the address it listens on.
pub async fn spawn_local(config: Config) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = serve_with_shutdown(config, listener, std::future::pending()).await {
            tracing::error!(error = %format!("{e:#}"), "ML stand-in stopped");
        }
    });
    Ok(addr)
}

/// Serves until SIGTERM or Ctrl-C, then finishes in-flight calls (at most a few seconds).
pub async fn serve(config: Config, listener: TcpListener) -> anyhow::Result<()> {
    serve_with_shutdown(config, listener, shutdown_signal()).await
}

/// Serves until `signal` completes, then finishes in-flight calls (at most a few seconds).
pub async fn serve_with_shutdown(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::warn!(
        "ML stand-in: every verdict is SIMULATED (derived from a hash of the upload); \
         this is a development and test tool, not a deepfake detector"
    );
    let addr = listener.local_addr().context("listener has no local address")?;
    tracing::info!(
        %addr,
        catalogue = %config.catalogue_source,
        models = config.catalogue.models().len(),
        latency_scale = config.latency_scale,
        fail_rate = config.fail_rate,
        capacity = ?config.capacity,
        over_capacity = %config.over_capacity,
        full_heatmaps = config.full_heatmaps,
        progress_events = config.redis_url.is_some(),
        "ML stand-in listening"
    );
    let state = AppState::new(config)?;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        axum::serve(KillableListener::new(listener), app(state).into_make_service_with_connect_info::<ConnKill>())
            .with_graceful_shutdown(async move {
                signal.await;
                tracing::info!("shutting down");
                let _ = stopping_tx.send(());
            });
    let grace = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result.context("server error")?,
        () = grace => tracing::warn!("calls still open after the shutdown grace period; closing them"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
