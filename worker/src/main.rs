//! `worker`: the Temporal worker process. Configuration from the environment (and `.env`); exit
//! status 2 on a configuration error, 1 when the worker fails; SIGTERM / Ctrl-C stop it gracefully.
//! Besides the worker it runs the run reconciler every `RECONCILE_INTERVAL` and, with
//! `METRICS_ADDR`, serves `/metrics` (its own metrics and the Temporal SDK's).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use drishtiksha_common::config::{WorkerConfig, load_dotenv};
use drishtiksha_common::events::EventPublisher;
use drishtiksha_common::patience::until_ready;
use drishtiksha_common::reconcile::Reconciler;
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::{db, telemetry};
use drishtiksha_worker::{SDK_METRICS_ADDR, connect_temporal, spawn_worker};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    load_dotenv();
    let config = match WorkerConfig::from_env() {
        Ok(c) => c,
        Err(e) => telemetry::exit_on_config_error(&e),
    };
    telemetry::init(config.common.log_format);
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let metrics = match config.common.metrics_addr {
        Some(addr) => Some(serve_metrics(addr).await?),
        None => None,
    };
    let reconciler = spawn_reconciler(config.clone()).await?;
    let backlog = spawn_backlog_gauge(config.clone());
    let mut guard = tokio::task::spawn_blocking(move || spawn_worker(config)).await??;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped_by_itself = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt received; shutting down"); false }
        _ = terminate.recv() => { tracing::info!("SIGTERM received; shutting down"); false }
        () = guard.finished() => true,
    };
    reconciler.abort();
    backlog.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    tokio::task::spawn_blocking(move || guard.shutdown()).await??;
    if stopped_by_itself {
        anyhow::bail!("worker stopped unexpectedly");
    }
    Ok(())
}

/// The reconciler of `docs/contract.md` §6.5, one pass every `RECONCILE_INTERVAL`, the first once the
/// database is migrated. Several workers may run it: a pass takes an advisory lock, and
/// finalization only moves non-terminal runs. Dependencies that are away are waited for.
async fn spawn_reconciler(config: WorkerConfig) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async move {
        let common = &config.common;
        let pool = until_ready("Postgres", || async {
            let pool = db::connect(common.database_url.expose(), 2).await?;
            db::migrate(&pool).await?;
            Ok::<_, anyhow::Error>(pool)
        })
        .await;
        let redis = match RedisHandle::new(common.redis_url.expose()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reconciler not started");
                return;
            }
        };
        let events = EventPublisher::new(redis, common.progress_channel.clone());
        let client = connect_temporal(&config).await;
        let mut reconciler = Reconciler::new(pool, client, events);
        reconciler.stale_after = config.reconcile_stale_after;
        reconciler.start_on = Some(common.temporal.task_queue.clone());
        let mut tick = tokio::time::interval(config.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reconciler.run_pass().await {
                tracing::warn!(error = format!("{e:#}"), "reconciler pass failed");
            }
        }
    }))
}

/// Refreshes `drishtiksha_inference_backlog` (the model calls waiting for inference capacity)
/// every few seconds from Temporal's task-queue statistics.
fn spawn_backlog_gauge(config: WorkerConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let temporal = &config.common.temporal;
        let client = connect_temporal(&config).await;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            match drishtiksha_common::temporal::activity_backlog(
                &client,
                &temporal.namespace,
                &temporal.inference_task_queue,
            )
            .await
            {
                Ok(n) => drishtiksha_common::metrics::INFERENCE_BACKLOG
                    .with_label_values(&[temporal.inference_task_queue.as_str()])
                    .set(n),
                Err(e) => tracing::debug!(error = %e, "inference backlog not read"),
            }
        }
    })
}

async fn metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut text = drishtiksha_common::metrics::render();
    if let Some(addr) = SDK_METRICS_ADDR.get() {
        match reqwest::get(format!("http://{addr}/metrics")).await {
            Ok(r) => text.push_str(&r.text().await.unwrap_or_default()),
            Err(e) => tracing::warn!(error = %e, "SDK metrics not readable"),
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

async fn serve_metrics(addr: SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    let app = Router::new().route("/metrics", get(metrics));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}
