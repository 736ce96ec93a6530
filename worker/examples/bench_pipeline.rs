//! Pipeline benchmark on this machine: a Temporal dev server (in memory), a fresh database, a
//! private Redis, the ML stand-in (latency 0, three image models) and one worker.
//!
//! Prints markdown rows `| name | value | target |`:
//! - latency from an accepted upload (media + run rows committed, workflow started) to ANALYZED,
//!   p50 / p95 over sequential runs;
//! - throughput of runs started all at once, next to the bare engine's throughput for a workflow
//!   that fans out three no-op activities.
//!
//! `cargo run -p drishtiksha-worker --example bench_pipeline [sequential_runs] [batch_runs]`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::workflow::{AnalysisInput, StartAnalysis, start_analysis};
use drishtiksha_common::{MediaType, RunStatus, temporal, workflow};
use drishtiksha_standin::catalogue::{Catalogue, Format};
use drishtiksha_testkit::{RedisServer, TemporalDevServer, fresh_database};
use sqlx::PgPool;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};
use uuid::Uuid;

const ML_KEY: &str = "bench-key";
const IMAGE_MODELS: &str = r#"[
  {"name": "IMG-A", "isImage": true, "profile": "image-generic", "latency_ms": 0},
  {"name": "IMG-B", "isImage": true, "profile": "image-generic", "latency_ms": 0},
  {"name": "IMG-C", "isImage": true, "profile": "image-heatmap", "latency_ms": 0}
]"#;

/// The engine's floor: three no-op activities fanned out and joined.
#[workflow]
#[derive(Default)]
pub struct BareWorkflow {}

#[workflow_methods]
impl BareWorkflow {
    #[run(name = "BareWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, n: u32) -> WorkflowResult<u32> {
        let opts = ActivityOptions::start_to_close_timeout(Duration::from_secs(30));
        let calls: Vec<_> = (0..3).map(|i| ctx.execute_activity(BareActivities::noop, n + i, opts.clone())).collect();
        let mut sum = 0;
        for r in join_all(calls).await {
            sum += r?;
        }
        Ok(sum)
    }
}

pub struct BareActivities;

#[activities]
impl BareActivities {
    #[activity]
    pub async fn noop(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        Ok(n)
    }
}

/// User + system CPU seconds of a process so far (Linux `/proc`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).into_iter().flatten().filter_map(|f| f.parse::<f64>().ok()).sum();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Bench {
    client: Client,
    pool: PgPool,
    storage_root: std::path::PathBuf,
    image: Vec<u8>,
    user_id: Uuid,
    task_queue: String,
}

impl Bench {
    /// Inserts media + run #1 and stores the file, as an accepted upload does.
    async fn accept_upload(&self) -> anyhow::Result<(Uuid, Uuid, String)> {
        let media_id = Uuid::new_v4();
        let run_id = Uuid::new_v4();
        let key = format!("images/{media_id}.png");
        tokio::fs::write(self.storage_root.join(&key), &self.image).await?;
        let workflow_id = workflow::workflow_id(media_id, 1);
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            r#"INSERT INTO media (id, user_id, filename, storage_key, mimetype, size, media_type, latest_analysis_run_id)
               VALUES ($1, $2, 'bench.png', $3, 'image/png', $4, 'IMAGE', $5)"#,
            media_id,
            self.user_id,
            key,
            self.image.len() as i64,
            run_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, 1, $3)",
            run_id,
            media_id,
            workflow_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((media_id, run_id, workflow_id))
    }

    async fn start(&self, media_id: Uuid, run_id: Uuid, workflow_id: &str) -> anyhow::Result<()> {
        start_analysis(
            &self.client,
            StartAnalysis {
                task_queue: &self.task_queue,
                workflow_id,
                input: AnalysisInput { run_id, media_id, user_id: self.user_id },
                media_type: MediaType::Image,
                run_number: 1,
                filename: "bench.png",
            },
        )
        .await
        .map_err(anyhow::Error::from)
    }

    /// Accepts `batch` uploads, starts them all at once and returns runs finished per second.
    async fn batch_rate(&self, batch: usize) -> anyhow::Result<f64> {
        let mut accepted = Vec::with_capacity(batch);
        for _ in 0..batch {
            accepted.push(self.accept_upload().await?);
        }
        let ids: Vec<Uuid> = accepted.iter().map(|(_, run, _)| *run).collect();
        let t0 = Instant::now();
        let starts = accepted.iter().map(|(media, run, wf)| self.start(*media, *run, wf));
        for r in futures::future::join_all(starts).await {
            r?;
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.analyzed_count(&ids).await? < batch as i64 {
            anyhow::ensure!(Instant::now() < deadline, "batch did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(batch as f64 / t0.elapsed().as_secs_f64())
    }

    /// [`Bench::batch_rate`] with `processes` worker processes polling the task queue (a small
    /// batch first, so they are polling), and the CPU the workers used, in % of one core.
    async fn rate_with_processes(
        &self,
        bin: &str,
        vars: &HashMap<String, String>,
        processes: usize,
        batch: usize,
    ) -> anyhow::Result<(f64, f64)> {
        let mut children = Vec::new();
        for _ in 0..processes {
            children.push(
                tokio::process::Command::new(bin)
                    .envs(vars)
                    .env("RUST_LOG", "warn")
                    .current_dir(std::env::temp_dir())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        self.batch_rate(4 * processes).await?;
        let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
        let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let t0 = Instant::now();
        let rate = self.batch_rate(batch).await;
        let cpu = (pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before) / t0.elapsed().as_secs_f64();
        for mut c in children {
            let _ = c.kill().await;
        }
        Ok((rate?, cpu * 100.0))
    }

    async fn analyzed_count(&self, ids: &[Uuid]) -> anyhow::Result<i64> {
        let n = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM analysis_runs WHERE id = ANY($1) AND status = 'ANALYZED'"#,
            ids
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn wait_terminal(&self, run_id: Uuid) -> anyhow::Result<RunStatus> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status =
                sqlx::query_scalar!(r#"SELECT status AS "s: RunStatus" FROM analysis_runs WHERE id = $1"#, run_id)
                    .fetch_one(&self.pool)
                    .await?;
            if status.is_terminal() {
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < deadline, "run {run_id} did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

type StopFn = Arc<dyn Fn() + Send + Sync>;

/// Runs the bare worker on a thread of its own (Worker::run is !Send) until `stop` fires.
fn spawn_bare_worker(address: String, task_queue: String) -> anyhow::Result<(StopFn, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let cfg = drishtiksha_common::config::TemporalConfig {
                address: temporalio_client::Url::parse(&format!("http://{address}")).expect("address"),
                namespace: "default".to_string(),
                task_queue: task_queue.clone(),
                inference_task_queue: format!("{task_queue}-inference"),
                api_key: None,
                tls: false,
            };
            let client = temporal::connect(&cfg, "bench-bare").await.expect("client");
            let runtime = Runtime::from_current_tokio(RuntimeOptions::default()).expect("runtime");
            let options = WorkerOptions::new(task_queue)
                .register_workflow::<BareWorkflow>()
                .expect("workflow")
                .register_activities(BareActivities)
                .build();
            let mut worker = Worker::new(&runtime, client, options).expect("worker");
            let handle = worker.shutdown_handle();
            let _ = tx.send(Arc::new(handle) as StopFn);
            if let Err(e) = worker.run().await {
                eprintln!("bare worker failed: {e}");
            }
        });
    });
    let stop = rx.recv()?;
    Ok((stop, thread))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sequential: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);

    let temporal = TemporalDevServer::start().await?;
    let address = temporal.address();
    let temporal_client = temporal.client().await?;
    let (db_url, pool) = fresh_database().await?;
    let redis = RedisServer::start().await?;

    let mut standin = drishtiksha_standin::Config::new(ML_KEY);
    standin.latency_scale = 0.0;
    standin.catalogue = Catalogue::parse(IMAGE_MODELS, Format::Json)?;
    let ml_url = format!("http://{}", drishtiksha_standin::spawn_local(standin).await?);

    let storage_root = std::env::temp_dir().join(format!("drishtiksha-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(storage_root.join("images"))?;
    let image_path = storage_root.join("source.png");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"])
        .arg(&image_path)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the image");
    let image = std::fs::read(&image_path)?;

    let task_queue = format!("bench-{}", Uuid::new_v4().simple());
    let mut vars: HashMap<String, String> = drishtiksha_testkit::base_env(&db_url, &redis.url());
    for (k, v) in [
        ("TEMPORAL_ADDRESS", address.clone()),
        ("TEMPORAL_TASK_QUEUE", task_queue.clone()),
        ("SERVER_URL", ml_url),
        ("SERVER_API_KEY", ML_KEY.to_string()),
        ("LOCAL_STORAGE_PATH", storage_root.to_string_lossy().into_owned()),
        // The engine's throughput: an ML server without a capacity limit and without latency.
        ("ML_CAPACITY", "100".to_string()),
    ] {
        vars.insert(k.to_string(), v);
    }
    let config = WorkerConfig::from_source(&vars)?;
    let worker = tokio::task::spawn_blocking(move || drishtiksha_worker::spawn_worker(config)).await??;

    let user_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, 'bench@example.com', 'B', 'B', 'x')",
        user_id
    )
    .execute(&pool)
    .await?;
    let bench =
        Bench { client: temporal_client.clone(), pool, storage_root: storage_root.clone(), image, user_id, task_queue };

    // (a) latency, sequential.
    let mut latencies = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let t0 = Instant::now();
        let (media_id, run_id, workflow_id) = bench.accept_upload().await?;
        bench.start(media_id, run_id, &workflow_id).await?;
        let status = bench.wait_terminal(run_id).await?;
        anyhow::ensure!(status == RunStatus::Analyzed, "run ended {status}");
        latencies.push(t0.elapsed());
    }
    latencies.sort();

    // (b) throughput: all runs accepted, then started at once.
    let pipeline_rate = bench.batch_rate(batch).await?;
    tokio::task::spawn_blocking(move || worker.shutdown()).await??;

    // (c) the same with one and with two `worker` processes (the release binary, when given).
    let mut scaled = Vec::new();
    if let Ok(bin) = std::env::var("WORKER_BIN") {
        for processes in [1, 2] {
            scaled.push((processes, bench.rate_with_processes(&bin, &vars, processes, batch).await?));
        }
    }

    // The bare engine on the same server.
    let bare_queue = format!("bare-{}", Uuid::new_v4().simple());
    let (stop_bare, bare_thread) = spawn_bare_worker(address, bare_queue.clone())?;
    let client = temporal_client.clone();
    let t0 = Instant::now();
    let starts = (0..batch).map(|i| {
        let client = client.clone();
        let queue = bare_queue.clone();
        async move {
            let opts = WorkflowStartOptions::new(queue, format!("bare-{i}")).build();
            let handle = client.start_workflow(BareWorkflow::run, i as u32, opts).await?;
            handle.get_result(WorkflowGetResultOptions::default()).await?;
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(starts).await {
        r?;
    }
    let bare_rate = batch as f64 / t0.elapsed().as_secs_f64();
    stop_bare();
    let _ = bare_thread.join();

    println!("| name | value | target |");
    println!("|---|---|---|");
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| upload accepted → ANALYZED, p50 ({sequential} sequential runs, 3 image models, latency 0) | {} | p50 ≤ 120 ms |",
        ms(percentile(&latencies, 0.50))
    );
    println!("| upload accepted → ANALYZED, p95 | {} | — |", ms(percentile(&latencies, 0.95)));
    println!(
        "| pipeline throughput ({batch} runs started at once) | {pipeline_rate:.1} runs/s | ≥ 70 % of the bare engine |"
    );
    for (processes, (rate, cpu)) in &scaled {
        let relative =
            if *processes == 1 { String::new() } else { format!(", {:.2}× one process", rate / scaled[0].1.0) };
        println!(
            "| pipeline throughput, {processes} `worker` process{} ({batch} runs at once; workers' CPU) | {rate:.1} runs/s ({cpu:.0} % of a core{relative}) | reference |",
            if *processes == 1 { "" } else { "es" },
        );
    }
    println!("| bare engine ({batch} workflows × 3 no-op activities) | {bare_rate:.1} workflows/s | reference |");
    println!("| pipeline / bare engine | {:.0}% | ≥ 70 % |", 100.0 * pipeline_rate / bare_rate);

    let _ = std::fs::remove_dir_all(&storage_root);
    drop(temporal);
    drop(redis);
    Ok(())
}
