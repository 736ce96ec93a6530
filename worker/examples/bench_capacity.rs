//! Inference capacity, measured against the stand-in as a GPU of 4 concurrent inferences at 500 ms
//! per inference: 100 runs × 3 image models from user A, then one run from user B while A's
//! backlog runs. Prints the GPU's utilisation during the backlog (its busy time), runs per second
//! against the ideal `capacity / latency / models`, the peak concurrency the GPU saw, and B's time
//! to result against its time on an idle system. Then the same batch without capacity control
//! (each worker sends every call at once, as before) against a GPU that fails calls beyond its
//! capacity (out of memory).
//!
//! `cargo run --release -p drishtiksha-worker --example bench_capacity [runs]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use drishtiksha_common::RunStatus;
use drishtiksha_standin::catalogue::{Catalogue, Format};
use serde_json::Value;
use support::{Kind, Pipeline, standin_json, standin_with};
use uuid::Uuid;

const CAPACITY: usize = 4;
const LATENCY_MS: u64 = 500;
const MODELS: usize = 3;
const CATALOGUE: &str = r#"[
  {"name": "IMG-A", "isImage": true, "profile": "image-generic", "latency_ms": 500},
  {"name": "IMG-B", "isImage": true, "profile": "image-generic", "latency_ms": 500},
  {"name": "IMG-C", "isImage": true, "profile": "image-generic", "latency_ms": 500}
]"#;

async fn pipeline(over_capacity: &str, ml_capacity: usize) -> anyhow::Result<Pipeline> {
    let mut standin = standin_with(&["--capacity", &CAPACITY.to_string(), "--over-capacity", over_capacity]);
    standin.catalogue = Catalogue::parse(CATALOGUE, Format::Json)?;
    let mut p = Pipeline::new(Some(standin)).await;
    p.set("ML_CAPACITY", &ml_capacity.to_string());
    p.set("ML_RETRY_INITIAL_INTERVAL_S", "1s");
    p.start_worker().await;
    Ok(p)
}

async fn gpu(p: &Pipeline) -> Value {
    standin_json(&p.standin.as_ref().expect("stand-in").url, "/__standin/capacity").await
}

async fn reset_gpu(p: &Pipeline) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{}/__standin/reset", p.standin.as_ref().expect("stand-in").url))
        .header("X-API-Key", support::ML_KEY)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn new_user(p: &mut Pipeline) -> anyhow::Result<()> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, $2, 'U', 'U', 'x')")
        .bind(id)
        .bind(format!("{}@bench.local", id.simple()))
        .execute(&p.pool)
        .await?;
    p.user_id = id;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let ideal = CAPACITY as f64 / (LATENCY_MS as f64 / 1000.0) / MODELS as f64;

    // With capacity control: one inference worker whose slots are the GPU's capacity.
    let mut p = pipeline("queue", CAPACITY).await?;
    new_user(&mut p).await?;
    let b_idle_run = p.create_media(Kind::Image, "user-b-idle").await;
    let t0 = Instant::now();
    p.start(&b_idle_run).await;
    p.finished_run(b_idle_run.run_id).await;
    let b_idle = t0.elapsed();

    new_user(&mut p).await?;
    let mut a_runs = Vec::with_capacity(runs);
    for i in 0..runs {
        a_runs.push(p.create_media(Kind::Image, &format!("user-a-{i}")).await);
    }
    reset_gpu(&p).await?;
    let started = Instant::now();
    for run in &a_runs {
        p.start(run).await;
    }
    // B uploads once A's backlog has formed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    new_user(&mut p).await?;
    let b_run = p.create_media(Kind::Image, "user-b-busy").await;
    let tb = Instant::now();
    p.start(&b_run).await;
    p.finished_run(b_run.run_id).await;
    let b_busy = tb.elapsed();
    let mut analyzed = 0;
    for run in &a_runs {
        if p.finished_run(run.run_id).await.status == RunStatus::Analyzed {
            analyzed += 1;
        }
    }
    let batch = started.elapsed();
    let stats = gpu(&p).await;
    let busy = stats["busySeconds"].as_f64().unwrap_or(0.0);
    let since = stats["sinceSeconds"].as_f64().unwrap_or(1.0);
    let rate = runs as f64 / batch.as_secs_f64();
    println!("| name | value | target |");
    println!("|---|---|---|");
    println!(
        "| GPU utilisation during a backlog (stand-in capacity {CAPACITY}, {LATENCY_MS} ms/inference, {runs} runs × {MODELS} models) | {:.1} % busy ({busy:.1} s of {since:.1} s) | ≥ 95 % |",
        100.0 * busy / since
    );
    println!(
        "| runs/s with capacity control vs ideal capacity/latency/models | {rate:.2} vs {ideal:.2} runs/s ({:.0} %), {analyzed}/{runs} ANALYZED | — |",
        100.0 * rate / ideal
    );
    println!(
        "| peak concurrent inferences seen by the GPU (capacity {CAPACITY}) | {} (refused for capacity: {}) | = {CAPACITY} |",
        stats["peakInFlight"], stats["refusedForCapacity"]
    );
    println!(
        "| user B's time to result during A's backlog vs on an idle system | {:.2} s vs {:.2} s ({:.1}×) | ≤ 2× |",
        b_busy.as_secs_f64(),
        b_idle.as_secs_f64(),
        b_busy.as_secs_f64() / b_idle.as_secs_f64()
    );
    drop(p);

    // Without capacity control: every call sent at once to a GPU that fails beyond its capacity.
    let mut p = pipeline("fail", 100).await?;
    new_user(&mut p).await?;
    let mut runs_off = Vec::with_capacity(runs);
    for i in 0..runs {
        runs_off.push(p.create_media(Kind::Image, &format!("uncontrolled-{i}")).await);
    }
    reset_gpu(&p).await?;
    let started = Instant::now();
    for run in &runs_off {
        p.start(run).await;
    }
    let mut analyzed = 0;
    for run in &runs_off {
        if p.finished_run(run.run_id).await.status == RunStatus::Analyzed {
            analyzed += 1;
        }
    }
    let batch_off = started.elapsed();
    let failed_models: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deepfake_analyses WHERE status = 'FAILED'").fetch_one(&p.pool).await?;
    let stats = gpu(&p).await;
    println!(
        "| without capacity control (GPU fails calls beyond {CAPACITY}, as out of memory) | {} calls refused, {failed_models} of {} model results FAILED, {analyzed}/{runs} runs ANALYZED, batch {:.1} s (with control: {:.1} s) | — |",
        stats["refusedForCapacity"],
        runs * MODELS,
        batch_off.as_secs_f64(),
        batch.as_secs_f64()
    );
    Ok(())
}
