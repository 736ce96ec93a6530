//! The `api` process: REST (accounts, media, results, monitoring) and the Socket.IO progress relay.
//! It starts, cancels and describes workflows; it never runs analysis work itself.
//!
//! Sections cited as `§x.y` in this crate are those of the contract reference, `docs/contract.md`.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod health;
pub mod http;
pub mod media;
pub mod monitoring;
pub mod openapi;
pub mod pdf;
pub mod ratelimit;
pub mod realtime;
pub mod server;
pub mod state;
pub mod views;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use drishtiksha_common::config::ApiConfig;
use drishtiksha_common::db;
use drishtiksha_common::patience::until_ready;
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::storage::Storage;

pub use state::AppState;

/// Every route of the api and, from the same declarations, its OpenAPI document. `v1_layer` wraps
/// the `/api/v1` routes (the API rate limiter; it needs the state, the document does not).
pub fn routes(
    v1_layer: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .nest("/auth", auth::router())
        .nest("/media", media::router())
        .nest("/monitoring", monitoring::router())
        .nest("/pdf", pdf::router());
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::root))
        .routes(routes!(health::alive))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::get_openapi))
        .routes(routes!(openapi::get_docs_redirect))
        .routes(routes!(openapi::get_docs))
        .routes(routes!(openapi::get_docs_asset))
        .nest("/api/v1", v1_layer(v1))
        .split_for_parts();
    let mut document = document;
    openapi::add_common_responses(&mut document);
    (router.merge(media::files_router()), document)
}

/// The OpenAPI document of [`routes`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes(|v1| v1).1
}

/// The whole HTTP application and its Socket.IO handle (for the progress listener).
pub fn app(state: AppState) -> (Router, socketioxide::SocketIo) {
    let (socket_layer, io) = realtime::layer(state.clone());
    let origins = http::Origins(Arc::new(state.config.frontend_origins.clone()));
    let body_timeout = state.config.http_body_timeout;
    let limiter = from_fn_with_state(state.clone(), ratelimit::api_limiter);
    let csrf = from_fn_with_state(http::TrustedOrigins::from_config(&state.config), http::require_trusted_origin);
    let (router, _) = routes(|v1| v1.layer(csrf).layer(limiter));
    let router = router
        .route_layer(from_fn(http::expose_matched_path))
        .fallback(http::route_not_found)
        .with_state(state)
        .layer(socket_layer)
        .layer(from_fn(http::method_not_allowed_envelope))
        .layer(from_fn_with_state(origins, http::cors))
        .layer(from_fn(http::security_headers))
        .layer(from_fn(http::request_id))
        .layer(from_fn(http::http_metrics))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout));
    (router, io)
}

/// Builds the state from configuration: database (migrated), Redis, storage.
///
/// Postgres and the object store are waited for while they are away (with capped backoff, logging
/// what is awaited); Redis and Temporal are connected on use. Interrupted uploads older than
/// `STALE_UPLOAD_AGE` are swept now and every few minutes.
pub async fn build_state(config: ApiConfig) -> anyhow::Result<AppState> {
    let common = &config.common;
    let pool = until_ready("Postgres", || async {
        let pool = db::connect(common.database_url.expose(), common.database_pool_size).await?;
        db::migrate(&pool).await?;
        Ok::<_, anyhow::Error>(pool)
    })
    .await;
    let redis = RedisHandle::new(common.redis_url.expose())?;
    let storage = until_ready("the object store", || async {
        Storage::from_config(&common.storage).await.context("storage is not usable")
    })
    .await;
    if let Some(local) = storage.local() {
        spawn_partial_sweeper(local.clone(), config.stale_upload_age);
    }
    AppState::new(config, pool, redis, storage)
}

/// Where `/metrics` is served when `METRICS_ADDR` is not set: the loopback interface only. It is
/// never served on the public port (it tells anyone the traffic of every route).
pub const DEFAULT_METRICS_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
/// Removes partial files of uploads interrupted by a crash: at start-up and every five minutes.
fn spawn_partial_sweeper(storage: drishtiksha_common::storage::LocalStorage, older_than: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            match storage.sweep_partials(older_than).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "partial files of interrupted uploads removed"),
                Err(e) => tracing::warn!(error = %e, "partial uploads not swept"),
            }
        }
    });
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let (app, io) = app(state.clone());
    let metrics_server = match state.config.common.metrics_addr {
        Some(addr) => Some(spawn_metrics_listener(addr).await?),
        // Another process on this host (a second api, a test) may hold the default port: the api
        // still serves, without /metrics. A configured address that cannot be bound is fatal.
        None => spawn_metrics_listener(DEFAULT_METRICS_ADDR)
            .await
            .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "metrics not served; set METRICS_ADDR"))
            .ok(),
    };
    let limits = server::Limits::from_config(&state.config);
    let progress = realtime::spawn_listener(io.clone(), state);
    tracing::info!(addr = %listener.local_addr()?, "api listening");
    let result = server::serve(listener, app, limits, async move {
        shutdown_signal().await;
        // Long-lived sockets would otherwise hold the graceful shutdown open.
        io.close().await;
    })
    .await
    .context("http server failed");
    progress.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    result
}

/// `/metrics` on its own address (`METRICS_ADDR`), e.g. one only the monitoring network reaches.
pub async fn spawn_metrics_listener(addr: SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let app = Router::new().route("/metrics", get(http::metrics));
    tracing::info!(%addr, "metrics listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}

pub async fn run(config: ApiConfig) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let state = build_state(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    serve(state, listener).await
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; draining");
}
