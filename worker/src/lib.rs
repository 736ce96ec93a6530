//! The Temporal worker: hosts `MediaAnalysisWorkflow` and its activities on the configured task
//! queue.
//!
//! `Worker::run` is `!Send`, so the worker runs on a thread of its own with its own Tokio runtime;
//! [`WorkerGuard`] stops it gracefully (in-flight activities get a grace period, then fail with
//! `WorkerShutdown` and are retried by whichever worker polls next).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use drishtiksha_activities::AnalysisActivities;
use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::{db, temporal};
use drishtiksha_workflows::MediaAnalysisWorkflow;
use temporalio_client::Client;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::watch;

/// How long in-flight activities may finish after a shutdown request.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);
/// How much longer than the grace period a stop waits for the worker thread.
const STOP_MARGIN: Duration = Duration::from_secs(25);
/// How long start-up keeps retrying to reach a Temporal server that is still starting.
const TEMPORAL_CONNECT_PATIENCE: Duration = Duration::from_secs(120);

type ShutdownFn = Box<dyn Fn() + Send + Sync>;

/// A running worker; dropping it (or [`WorkerGuard::shutdown`]) stops it gracefully.
pub struct WorkerGuard {
    shutdown: Option<ShutdownFn>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    finished: watch::Receiver<bool>,
}

impl WorkerGuard {
    /// Stops the worker and waits for it to finish; the error of a worker that had failed.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    /// Resolves when the worker has stopped by itself (a fatal worker error) or was shut down.
    pub async fn finished(&mut self) {
        let _ = self.finished.wait_for(|done| *done).await;
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown();
        }
        let Some(thread) = self.thread.take() else { return Ok(()) };
        // A worker whose Temporal server is gone can wait forever for its pollers: give up after
        // the grace period plus a margin, leaving the thread to end with the process.
        let deadline = std::time::Instant::now() + GRACEFUL_SHUTDOWN + STOP_MARGIN;
        while !thread.is_finished() {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("worker did not stop within {:?}", GRACEFUL_SHUTDOWN + STOP_MARGIN);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().map_err(|_| anyhow::anyhow!("worker thread panicked"))?
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "worker stopped with an error");
        }
    }
}

/// Runs a worker (workflow + activities) on a dedicated thread with its own runtime (Worker::run is !Send);
/// dropping/`shutdown()`ing the guard stops it gracefully. For tests and for the binary.
///
/// Returns once the worker is polling, or with the start-up error (database, Temporal, storage).
pub fn spawn_worker(config: WorkerConfig) -> anyhow::Result<WorkerGuard> {
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<ShutdownFn>>();
    let (finished_tx, finished) = watch::channel(false);
    let thread = std::thread::Builder::new().name("temporal-worker".to_string()).spawn(move || {
        let result = run_worker_thread(config, ready_tx);
        let _ = finished_tx.send(true);
        result
    })?;
    match ready_rx.recv() {
        Ok(Ok(shutdown)) => Ok(WorkerGuard { shutdown: Some(shutdown), thread: Some(thread), finished }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("worker thread ended during start-up")),
        },
    }
}

fn run_worker_thread(config: WorkerConfig, ready: mpsc::Sender<anyhow::Result<ShutdownFn>>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("worker-rt").build()?;
    rt.block_on(async move {
        let mut worker = match build_worker(&config).await {
            Ok(w) => w,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(());
            }
        };
        let _ = ready.send(Ok(Box::new(worker.shutdown_handle())));
        tracing::info!(task_queue = %config.common.temporal.task_queue, "worker polling");
        worker.run().await.context("worker stopped with a fatal error")?;
        tracing::info!("worker stopped");
        Ok(())
    })
}

async fn build_worker(config: &WorkerConfig) -> anyhow::Result<Worker> {
    let common = &config.common;
    let pool_size = u32::try_from(config.max_concurrent_activities.clamp(5, 20)).unwrap_or(20);
    let pool = db::connect(common.database_url.expose(), pool_size).await?;
    db::migrate(&pool).await?;
    let activities = AnalysisActivities::from_config(config, pool).await?;
    let client = connect_temporal(config).await?;
    let runtime = Runtime::from_current_tokio(runtime_options(config)?)
        .map_err(|e| anyhow::anyhow!("cannot create the Temporal runtime: {e}"))?;
    let slots = config.max_concurrent_activities.max(1);
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(100))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(10))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    let options = WorkerOptions::new(common.temporal.task_queue.clone())
        .register_workflow::<MediaAnalysisWorkflow>()
        .map_err(|e| anyhow::anyhow!("cannot register the workflow: {e}"))?
        .register_activities(activities)
        .tuner(tuner)
        .graceful_shutdown_period(GRACEFUL_SHUTDOWN)
        // Cancellation reaches activities through heartbeat responses: send them promptly.
        .max_heartbeat_throttle_interval(Duration::from_secs(2))
        .default_heartbeat_throttle_interval(Duration::from_secs(2))
        // A workflow whose worker died moves to another worker after this long.
        .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
        .build();
    Worker::new(&runtime, client, options).map_err(|e| anyhow::anyhow!("cannot create the worker: {e}"))
}

/// Where the SDK's own worker metrics are exported (an internal loopback port), when `/metrics`
/// is enabled; the worker's `/metrics` appends them to its own.
pub static SDK_METRICS_ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();

fn runtime_options(config: &WorkerConfig) -> anyhow::Result<RuntimeOptions> {
    use temporalio_common::telemetry::{PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter};
    if config.common.metrics_addr.is_none() {
        return Ok(RuntimeOptions::default());
    }
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder().socket_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).build(),
    )?;
    let _ = SDK_METRICS_ADDR.set(exporter.bound_addr);
    let telemetry = TelemetryOptions::builder().metrics(exporter.meter as std::sync::Arc<_>).build();
    RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(|e| anyhow::anyhow!("invalid runtime options: {e}"))
}

/// Connects to Temporal, retrying with backoff while the server starts.
pub async fn connect_temporal(config: &WorkerConfig) -> anyhow::Result<Client> {
    let cfg = &config.common.temporal;
    let identity = temporal::identity("worker");
    let deadline = Instant::now() + TEMPORAL_CONNECT_PATIENCE;
    let mut delay = Duration::from_millis(200);
    loop {
        match temporal::connect(cfg, &identity).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Temporal not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
