//! Faults an operator meets on a bad day, injected into real processes: Postgres stopped while
//! models answer, a worker killed or restarted mid-call, the ML server stopped for minutes, Redis
//! away. Where the fault is temporary, every run ends as it would have without it: nothing lost,
//! nothing duplicated, no inference paid for twice, and only the ML server's own answers count as
//! attempts.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drishtiksha_common::messages::WAITING_FOR_ML;
use drishtiksha_common::workflow::ModelProgress;
use drishtiksha_common::{AnalysisStatus, RunStatus};
use drishtiksha_standin::catalogue::{Catalogue, Format};
use drishtiksha_testkit::{PostgresServer, eventually};
use drishtiksha_workflows::MediaAnalysisWorkflow;
use serde_json::Value;
use support::{Kind, Pipeline, standin_config, standin_json, successful_calls};
use temporalio_client::WorkflowQueryOptions;

/// One image model whose inference takes `latency_ms`.
fn one_image_model(latency_ms: u64) -> Catalogue {
    Catalogue::parse(
        &format!(
            r#"[{{"name": "IMG-DETECTOR", "isImage": true, "profile": "image-generic", "latency_ms": {latency_ms}}}]"#
        ),
        Format::Json,
    )
    .expect("catalogue")
}

fn standin_with_model(latency_ms: u64) -> drishtiksha_standin::Config {
    let mut config = standin_config();
    config.latency_scale = 1.0;
    config.catalogue = one_image_model(latency_ms);
    config
}

/// A `worker` process with the pipeline's environment, logging to a file in the pipeline's
/// storage folder (shown when a test fails); killed on drop.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(p: &Pipeline) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(worker_log(p)).expect("worker log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .env_clear()
            .current_dir(std::env::temp_dir())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null());
        for (k, v) in p.worker_env() {
            command.env(k, v);
        }
        command.env("RECONCILE_INTERVAL", "1h").env("RUST_LOG", "info");
        Self(command.spawn().expect("worker starts"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.0.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        eventually(within, || {
            let polled = self.0.try_wait().expect("worker status");
            async move { polled }
        })
        .await
        .expect("the worker exits")
        .code()
    }
}

fn worker_log(p: &Pipeline) -> std::path::PathBuf {
    p.storage_root.with_extension("worker.log")
}

/// The last lines the worker processes of a pipeline logged.
fn log_tail(p: &Pipeline) -> String {
    let text = std::fs::read_to_string(worker_log(p)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Inferences the stand-in is running now.
async fn in_flight(p: &Pipeline) -> u64 {
    let url = &p.standin.as_ref().expect("stand-in").url;
    standin_json(url, "/__standin/capacity").await["inFlight"].as_u64().unwrap_or(0)
}

async fn all_finished(p: &Pipeline, runs: &[support::TestRun], within: Duration) -> Vec<support::RunRow> {
    let mut rows = Vec::new();
    for run in runs {
        let row = eventually(within, || async {
            let row = p.run_row(run.run_id).await;
            row.status.is_terminal().then_some(row)
        })
        .await
        .expect("run reaches a terminal status");
        rows.push(row);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_while_models_answer_costs_no_inference_and_every_run_is_analyzed() {
    const RUNS: usize = 10;
    const OUTAGE: Duration = Duration::from_secs(45);
    let postgres = PostgresServer::start().expect("a private Postgres starts");
    let url = postgres.database("faults").await.expect("database");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await.expect("pool");
    let mut p = Pipeline::with_database(Some(standin_with_model(3000)), (url, pool)).await;
    p.set("ML_CAPACITY", "16");
    p.start_worker().await;
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(p.analyse(Kind::Image, "").await);
    }
    // Every model call is under way (its row RUNNING) before the database goes.
    eventually(Duration::from_secs(60), || async {
        let running: i64 = sqlx::query_scalar("SELECT count(*) FROM deepfake_analyses WHERE status = 'RUNNING'")
            .fetch_one(&p.pool)
            .await
            .unwrap_or(0);
        (running == RUNS as i64).then_some(())
    })
    .await
    .expect("all model calls started");
    let stopped = Instant::now();
    postgres.halt().expect("Postgres stops");

    // The ML server answers all of them while the database is away.
    let standin = p.standin.as_ref().expect("stand-in").url.clone();
    eventually(Duration::from_secs(30), || async {
        let log = standin_json(&standin, "/__standin/requests").await;
        let ok = log.as_array().map_or(0, |l| l.iter().filter(|e| e["status"] == 200).count());
        (ok == RUNS).then_some(())
    })
    .await
    .expect("the ML server answered every call");
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    postgres.resume().expect("Postgres starts again");
    p.pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&p.db_url).await.expect("pool again");

    let rows = all_finished(&p, &runs, Duration::from_secs(120)).await;
    for (run, row) in runs.iter().zip(&rows) {
        assert_eq!(row.status, RunStatus::Analyzed, "run {} after the outage", run.run_id);
        let analyses = p.analyses(run.run_id).await;
        assert_eq!(analyses.len(), 1);
        let a = &analyses[0];
        assert_eq!(a.status, AnalysisStatus::Completed);
        assert_eq!(a.attempts, 1, "the outage is not an ML attempt");
        assert!(a.error_message.is_none());
        // The row holds the ML server's answer as it was given.
        let kept =
            std::fs::read(p.storage_root.join(drishtiksha_common::storage::result_key(run.run_id, "IMG-DETECTOR")))
                .expect("the answer is kept in storage");
        let kept: Value = serde_json::from_slice(&kept).expect("kept JSON");
        assert_eq!(a.result_payload.as_ref(), Some(&kept["data"]));
        // Exactly one call per (run, model): none was paid for twice.
        assert_eq!(successful_calls(&standin, run.media_id).await.len(), 1, "one inference for run {}", run.run_id);
    }
    let log = standin_json(&standin, "/__standin/requests").await;
    assert_eq!(log.as_array().map_or(0, Vec::len), RUNS, "no other call reached the ML server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_three_times_mid_call_costs_no_attempt() {
    let mut p = Pipeline::new(Some(standin_with_model(10_000))).await;
    p.set("ML_HEARTBEAT_TIMEOUT", "3s");
    let runs = vec![p.analyse(Kind::Image, "").await, p.analyse(Kind::Image, "").await];
    let mut worker = WorkerProcess::start(&p);
    for kill in 1..=3 {
        eventually(Duration::from_secs(90), || async { (in_flight(&p).await > 0).then_some(()) })
            .await
            .unwrap_or_else(|_| panic!("a model call is under way before kill {kill}; worker log:\n{}", log_tail(&p)));
        worker.signal("-KILL");
        let _ = worker.exit_code(Duration::from_secs(10)).await;
        worker = WorkerProcess::start(&p);
    }
    for run in &runs {
        eventually(Duration::from_secs(180), || async {
            p.run_row(run.run_id).await.status.is_terminal().then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("run {} ends; worker log:\n{}", run.run_id, log_tail(&p)));
    }
    let rows = all_finished(&p, &runs, Duration::from_secs(10)).await;
    for (run, row) in runs.iter().zip(&rows) {
        assert_eq!(row.status, RunStatus::Analyzed);
        let analyses = p.analyses(run.run_id).await;
        assert_eq!(analyses[0].status, AnalysisStatus::Completed);
        assert_eq!(analyses[0].attempts, 1, "a lost worker is not an ML attempt");
        assert!(analyses[0].error_message.is_none());
    }
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_call_in_flight_finish_on_the_same_worker() {
    let mut p = Pipeline::new(Some(standin_with_model(6_000))).await;
    p.set("WORKER_SHUTDOWN_GRACE", "30s");
    let run = p.analyse(Kind::Image, "").await;
    let mut worker = WorkerProcess::start(&p);
    eventually(Duration::from_secs(60), || async { (in_flight(&p).await > 0).then_some(()) })
        .await
        .unwrap_or_else(|_| panic!("the model call is under way; worker log:\n{}", log_tail(&p)));
    worker.signal("-TERM");
    assert_eq!(worker.exit_code(Duration::from_secs(45)).await, Some(0), "a clean exit after the call");
    let standin = p.standin.as_ref().expect("stand-in").url.clone();
    assert_eq!(successful_calls(&standin, run.media_id).await.len(), 1, "the call finished before the worker left");

    // Another worker picks the run up where the first left it: nothing is called again.
    p.start_worker().await;
    let row = p.finished_run(run.run_id).await;
    assert_eq!(row.status, RunStatus::Analyzed);
    let analyses = p.analyses(run.run_id).await;
    assert_eq!(analyses[0].attempts, 1);
    assert_eq!(successful_calls(&standin, run.media_id).await.len(), 1);
    let log = standin_json(&standin, "/__standin/requests").await;
    assert_eq!(log.as_array().map_or(0, Vec::len), 1, "one call in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ml_server_stopped_for_two_minutes_is_waited_for_and_every_run_is_analyzed() {
    const OUTAGE: Duration = Duration::from_secs(120);
    let config = standin_config();
    let mut p = Pipeline::new(Some(config.clone())).await;
    p.set("ML_UNAVAILABLE_WAIT", "10m");
    p.start_worker().await;
    // A first run fills the model cache, so later runs reach their model calls.
    let first = p.analyse(Kind::Image, "").await;
    assert_eq!(p.finished_run(first.run_id).await.status, RunStatus::Analyzed);
    let port: u16 = p.ml_url.rsplit(':').next().and_then(|s| s.parse().ok()).expect("stand-in port");
    p.standin = None;
    let stopped = Instant::now();

    // Model calls wait for the server…
    let mut runs = vec![p.analyse(Kind::Image, "").await, p.analyse(Kind::Audio, "").await];
    let waiting = |run: &support::TestRun| {
        let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(run.workflow_id.as_str());
        async move {
            let models: Vec<ModelProgress> =
                handle.query(MediaAnalysisWorkflow::progress, (), WorkflowQueryOptions::default()).await.ok()?;
            models.iter().any(|m| m.waiting.as_deref().is_some_and(|w| w.starts_with(WAITING_FOR_ML))).then_some(())
        }
    };
    for run in &runs {
        eventually(Duration::from_secs(30), || waiting(run)).await.expect("the run says it waits for the ML server");
    }
    // …and so does model discovery, once the cached model list is gone.
    let mut redis =
        redis::Client::open(p.redis.url()).expect("redis").get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg("ml_server_stats*").query_async(&mut redis).await.expect("keys");
    for key in keys {
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut redis).await.expect("del");
    }
    let discovering = p.analyse(Kind::Image, "").await;
    let details = || async {
        let out = Command::new(drishtiksha_testkit::temporal_cli())
            .args(["workflow", "metadata", "--workflow-id", &discovering.workflow_id])
            .args(["--address", &p.temporal_address, "--namespace", "default"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).contains(WAITING_FOR_ML).then_some(())
    };
    eventually(Duration::from_secs(30), details).await.expect("the Web UI's details say it waits for the ML server");
    runs.push(discovering);
    for run in &runs {
        assert!(!p.run_row(run.run_id).await.status.is_terminal(), "nothing fails while the server is away");
    }

    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    p.standin = Some(support::spawn_standin_on(config, port).await);
    let rows = all_finished(&p, &runs, Duration::from_secs(120)).await;
    for (run, row) in runs.iter().zip(&rows) {
        assert_eq!(row.status, RunStatus::Analyzed, "run {} after the outage", run.run_id);
        for a in p.analyses(run.run_id).await {
            assert_eq!(a.status, AnalysisStatus::Completed);
            assert_eq!(a.attempts, 1, "refused connections are not ML attempts");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_runs_are_analyzed_and_events_are_dropped_not_waited_for() {
    let mut p = Pipeline::new(Some(standin_config())).await;
    p.start_worker().await;
    p.redis.stop();
    let run = p.analyse(Kind::Image, "").await;
    let row = p.finished_run(run.run_id).await;
    assert_eq!(row.status, RunStatus::Analyzed);
    eventually(Duration::from_secs(30), || async {
        (drishtiksha_common::metrics::PROGRESS_EVENTS_DROPPED.get() > 0).then_some(())
    })
    .await
    .expect("events were dropped and counted");
}

/// The pending model call of a workflow, as `temporal workflow describe` shows it: its attempt
/// and whether an attempt has failed.
fn pending_infer_attempt(p: &Pipeline, workflow_id: &str) -> Option<u64> {
    let out = Command::new(drishtiksha_testkit::temporal_cli())
        .args(["workflow", "describe", "--workflow-id", workflow_id, "--output", "json"])
        .args(["--address", &p.temporal_address, "--namespace", "default"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["pendingActivities"].as_array()?.iter().find_map(|a| {
        let attempt = a["attempt"].as_u64().unwrap_or(1);
        (a["lastFailure"].is_object() && attempt >= 2).then_some(attempt)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_file_storage_cannot_read_for_a_while_is_retried_not_failed() {
    // One inference at a time: the second run's call waits for the first one's 3 s.
    let mut config = standin_with_model(3000);
    config.capacity = Some(1);
    let mut p = Pipeline::new(Some(config)).await;
    p.set("ML_CAPACITY", "1");
    p.start_worker().await;
    let base = p.standin.as_ref().expect("stand-in").url.clone();
    let first = p.analyse(Kind::Image, "").await;
    let busy = || async { (standin_json(&base, "/__standin/capacity").await["inFlight"] == 1).then_some(()) };
    eventually(Duration::from_secs(30), busy).await.expect("the GPU is busy with the first run");
    let second = p.analyse(Kind::Image, "").await;
    let started = || async { (p.run_row(second.run_id).await.status == RunStatus::Processing).then_some(()) };
    eventually(Duration::from_secs(30), started).await.expect("the second run waits for the GPU");

    // Its file cannot be read (a symbolic link to itself: ELOOP, not "not found") when its turn comes…
    let kept = second.path.with_extension("kept");
    std::fs::rename(&second.path, &kept).expect("move the file aside");
    std::os::unix::fs::symlink(&second.path, &second.path).expect("unreadable file");
    let attempt = || async { pending_infer_attempt(&p, &second.workflow_id) };
    eventually(Duration::from_secs(60), attempt).await.expect("the model call failed on storage and is retried");
    assert!(!p.run_row(second.run_id).await.status.is_terminal(), "a storage error fails nothing");

    // …and can again.
    std::fs::remove_file(&second.path).expect("remove the link");
    std::fs::rename(&kept, &second.path).expect("file back");
    for run in [&first, &second] {
        let row = p.finished_run(run.run_id).await;
        assert_eq!(row.status, RunStatus::Analyzed, "run {}", run.run_id);
        for a in p.analyses(run.run_id).await {
            assert_eq!((a.status, a.attempts), (AnalysisStatus::Completed, 1), "storage errors are not ML attempts");
        }
    }
    assert_eq!(successful_calls(&base, second.media_id).await.len(), 1, "the ML server was called once for it");
}
