//! The Temporal worker: hosts `MediaAnalysisWorkflow` and its activities on the configured task
//! queue.
//!
//! `Worker::run` is `!Send`, so the worker runs on a thread of its own with its own Tokio runtime;
//! [`WorkerGuard`] stops it gracefully (in-flight activities get a grace period, then fail with
//! `WorkerShutdown` and are retried by whichever worker polls next).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use drishtiksha_activities::AnalysisActivities;
use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::patience::until_ready;
use drishtiksha_common::{db, temporal};
use drishtiksha_workflows::MediaAnalysisWorkflow;
use temporalio_client::Client;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::watch;

/// How much longer than the grace period a stop waits for the worker thread.
const STOP_MARGIN: Duration = Duration::from_secs(25);
/// Delay before a worker that stopped with an error (e.g. Temporal went away while it started) is
/// built again; doubles up to [`RESTART_MAX_DELAY`].
const RESTART_FIRST_DELAY: Duration = Duration::from_millis(500);
const RESTART_MAX_DELAY: Duration = Duration::from_secs(15);

type ShutdownFn = Box<dyn Fn() + Send + Sync>;

/// Stops whatever Temporal workers the thread currently runs, now and after a restart.
#[derive(Clone, Default)]
struct Stopper {
    requested: Arc<AtomicBool>,
    handles: Arc<Mutex<Vec<ShutdownFn>>>,
}

impl Stopper {
    fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        for handle in self.handles.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            handle();
        }
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn set(&self, handles: Vec<ShutdownFn>) {
        *self.handles.lock().unwrap_or_else(|p| p.into_inner()) = handles;
        if self.requested() {
            self.stop();
        }
    }
}

/// A running worker; dropping it (or [`WorkerGuard::shutdown`]) stops it gracefully.
pub struct WorkerGuard {
    stopper: Option<Stopper>,
    grace: Duration,
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
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        let Some(thread) = self.thread.take() else { return Ok(()) };
        // A worker whose Temporal server is gone can wait forever for its pollers: give up after
        // the grace period plus a margin, leaving the thread to end with the process.
        let deadline = std::time::Instant::now() + self.grace + STOP_MARGIN;
        while !thread.is_finished() {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("worker did not stop within {:?}", self.grace + STOP_MARGIN);
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

/// Runs the worker's Temporal workers (orchestration and/or inference, per `WORKER_ROLE`) on a
/// dedicated thread with its own runtime (`Worker::run` is `!Send`); dropping/`shutdown()`ing the
/// guard stops them gracefully: polling stops, in-flight model calls get `WORKER_SHUTDOWN_GRACE`.
///
/// Dependencies that are away at start-up (Postgres, Temporal, the object store) are waited for;
/// a worker that stops with an error (e.g. Temporal went away) is built again. Returns once the
/// workers are polling.
pub fn spawn_worker(config: WorkerConfig) -> anyhow::Result<WorkerGuard> {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (finished_tx, finished) = watch::channel(false);
    let stopper = Stopper::default();
    let grace = config.shutdown_grace;
    let thread_stopper = stopper.clone();
    let thread = std::thread::Builder::new().name("temporal-worker".to_string()).spawn(move || {
        let result = run_worker_thread(config, thread_stopper, ready_tx);
        let _ = finished_tx.send(true);
        result
    })?;
    match ready_rx.recv() {
        Ok(()) => Ok(WorkerGuard { stopper: Some(stopper), grace, thread: Some(thread), finished }),
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("worker thread ended during start-up")),
        },
    }
}

fn run_worker_thread(config: WorkerConfig, stopper: Stopper, ready: mpsc::Sender<()>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("worker-rt").build()?;
    rt.block_on(async move {
        let common = &config.common;
        let pool_size =
            u32::try_from(config.max_concurrent_activities.max(config.ml_capacity).clamp(5, 20)).unwrap_or(20);
        let pool = until_ready("Postgres", || async {
            let pool = db::connect(common.database_url.expose(), pool_size).await?;
            db::migrate(&pool).await?;
            Ok::<_, anyhow::Error>(pool)
        })
        .await;
        let activities =
            Arc::new(until_ready("the object store", || AnalysisActivities::from_config(&config, pool.clone())).await);
        let client = connect_temporal(&config).await;
        let runtime = Runtime::from_current_tokio(runtime_options(&config)?)
            .map_err(|e| anyhow::anyhow!("cannot create the Temporal runtime: {e}"))?;
        let mut ready = Some(ready);
        let mut delay = RESTART_FIRST_DELAY;
        loop {
            let mut workers = build_workers(&config, &runtime, &client, &activities)?;
            stopper.set(workers.iter().map(|w| Box::new(w.shutdown_handle()) as ShutdownFn).collect());
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            tracing::info!(role = ?config.role, task_queue = %common.temporal.task_queue,
                inference_task_queue = %common.temporal.inference_task_queue, ml_capacity = config.ml_capacity,
                "worker polling");
            let started = std::time::Instant::now();
            let runs = workers.iter_mut().map(|w| w.run());
            let results = futures::future::join_all(runs).await;
            let failure = results.into_iter().find_map(Result::err);
            if stopper.requested() {
                tracing::info!("worker stopped");
                return Ok(());
            }
            let error = failure.map_or_else(|| "stopped by itself".to_string(), |e| format!("{e:#}"));
            if started.elapsed() > RESTART_MAX_DELAY * 4 {
                delay = RESTART_FIRST_DELAY;
            }
            tracing::warn!(error, retry_in_ms = delay.as_millis() as u64, "worker stopped; starting it again");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RESTART_MAX_DELAY);
            if stopper.requested() {
                return Ok(());
            }
        }
    })
}

fn build_workers(
    config: &WorkerConfig,
    runtime: &Runtime,
    client: &Client,
    activities: &Arc<AnalysisActivities>,
) -> anyhow::Result<Vec<Worker>> {
    let common = &config.common;
    let mut workers = Vec::new();
    if config.role.orchestrates() {
        let tuner = TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(100))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(config.max_concurrent_activities.max(1)))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(10))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .build();
        let options = WorkerOptions::new(common.temporal.task_queue.clone())
            .register_workflow::<MediaAnalysisWorkflow>()
            .map_err(|e| anyhow::anyhow!("cannot register the workflow: {e}"))?
            .register_activities((**activities).clone())
            .tuner(tuner)
            .graceful_shutdown_period(config.shutdown_grace)
            .max_heartbeat_throttle_interval(Duration::from_secs(2))
            .default_heartbeat_throttle_interval(Duration::from_secs(2))
            // A workflow whose worker died moves to another worker after this long.
            .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
            .build();
        workers.push(
            Worker::new(runtime, client.clone(), options)
                .map_err(|e| anyhow::anyhow!("cannot create the worker: {e}"))?,
        );
    }
    if config.role.infers() {
        // The ML server's capacity is this worker's activity slots: with one inference worker
        // per ML server, no more calls than that ever reach it, whatever the backlog.
        let tuner = TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(config.ml_capacity))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .build();
        let options = WorkerOptions::new(common.temporal.inference_task_queue.clone())
            .register_activities((**activities).clone())
            .tuner(tuner)
            .graceful_shutdown_period(config.shutdown_grace)
            // Cancellation and lost workers are noticed through heartbeats: send them promptly.
            .max_heartbeat_throttle_interval(Duration::from_secs(2))
            .default_heartbeat_throttle_interval(Duration::from_secs(1))
            .build();
        let label = drishtiksha_activities::ml_server_label(&common.ml.server_url);
        drishtiksha_common::metrics::INFERENCE_CAPACITY
            .with_label_values(&[&label])
            .set(i64::try_from(config.ml_capacity).unwrap_or(i64::MAX));
        workers.push(
            Worker::new(runtime, client.clone(), options)
                .map_err(|e| anyhow::anyhow!("cannot create the inference worker: {e}"))?,
        );
    }
    if workers.is_empty() {
        anyhow::bail!("WORKER_ROLE serves nothing");
    }
    Ok(workers)
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

/// Connects to Temporal, waiting (with capped backoff) for as long as it is away.
pub async fn connect_temporal(config: &WorkerConfig) -> Client {
    let identity = temporal::identity("worker");
    until_ready("Temporal", || temporal::connect(&config.common.temporal, &identity)).await
}
