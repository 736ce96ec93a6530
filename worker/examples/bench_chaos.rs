//! Chaos rows: each fault injected into a pipeline (Temporal dev server, a database of its own, a
//! private Redis, the stand-in, a worker) while runs are mid-analysis; per fault, how many runs
//! were started, ended, ended ANALYZED, duplicate rows, and the ML calls made per (run, model).
//! The Temporal outage is measured with the real api and worker processes by
//! `api/tests/api/durability.rs`.
//!
//! `cargo run --release -p drishtiksha-worker --example bench_chaos [runs]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use drishtiksha_common::RunStatus;
use drishtiksha_standin::catalogue::{Catalogue, Format};
use drishtiksha_testkit::{PostgresServer, eventually};
use support::{Kind, Pipeline, TestRun, standin_config, standin_json};

const OUTAGE: Duration = Duration::from_secs(30);

fn standin(latency_ms: u64) -> drishtiksha_standin::Config {
    let mut config = standin_config();
    config.latency_scale = 1.0;
    config.catalogue = Catalogue::parse(
        &format!(
            r#"[{{"name": "IMG-DETECTOR", "isImage": true, "profile": "image-generic", "latency_ms": {latency_ms}}}]"#
        ),
        Format::Json,
    )
    .expect("catalogue");
    config
}

struct Outcome {
    started: usize,
    terminal: usize,
    analyzed: usize,
    duplicates: i64,
    max_calls: usize,
    mean_calls: f64,
}

async fn outcome(p: &Pipeline, runs: &[TestRun], standin_url: &str) -> anyhow::Result<Outcome> {
    let mut terminal = 0;
    let mut analyzed = 0;
    for run in runs {
        let row = eventually(Duration::from_secs(300), || async {
            let row = p.run_row(run.run_id).await;
            row.status.is_terminal().then_some(row)
        })
        .await;
        if let Ok(row) = row {
            terminal += 1;
            if row.status == RunStatus::Analyzed {
                analyzed += 1;
            }
        }
    }
    let duplicates: i64 =
        sqlx::query_scalar("SELECT count(*) - count(DISTINCT (analysis_run_id, model_name)) FROM deepfake_analyses")
            .fetch_one(&p.pool)
            .await?;
    let log = standin_json(standin_url, "/__standin/requests").await;
    let mut calls: HashMap<(String, String), usize> = HashMap::new();
    for e in log.as_array().into_iter().flatten() {
        let key = (
            e["mediaId"].as_str().unwrap_or_default().to_string(),
            e["model"].as_str().unwrap_or_default().to_string(),
        );
        *calls.entry(key).or_default() += 1;
    }
    let max_calls = calls.values().copied().max().unwrap_or(0);
    let mean_calls = if calls.is_empty() { 0.0 } else { calls.values().sum::<usize>() as f64 / calls.len() as f64 };
    Ok(Outcome { started: runs.len(), terminal, analyzed, duplicates, max_calls, mean_calls })
}

fn print(fault: &str, o: &Outcome) {
    println!(
        "| chaos: {fault} | started {} / terminal {} / ANALYZED {} / duplicate rows {} / ML calls per (run, model): max {}, mean {:.2} | ANALYZED = started, 0 duplicates |",
        o.started, o.terminal, o.analyzed, o.duplicates, o.max_calls, o.mean_calls
    );
}

async fn start_runs(p: &Pipeline, n: usize) -> Vec<TestRun> {
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        runs.push(p.analyse(Kind::Image, "").await);
    }
    runs
}

async fn wait_running(p: &Pipeline, n: i64) -> anyhow::Result<()> {
    eventually(Duration::from_secs(60), || async {
        let running: i64 = sqlx::query_scalar("SELECT count(*) FROM deepfake_analyses WHERE status = 'RUNNING'")
            .fetch_one(&p.pool)
            .await
            .unwrap_or(0);
        (running >= n).then_some(())
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(10);
    println!("| name | value | target |");
    println!("|---|---|---|");

    // Postgres stopped while the models answer.
    {
        let postgres = PostgresServer::start()?;
        let url = postgres.database("chaos").await?;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await?;
        let mut p = Pipeline::with_database(Some(standin(3000)), (url, pool)).await;
        p.set("ML_CAPACITY", "32");
        p.start_worker().await;
        let runs = start_runs(&p, n).await;
        wait_running(&p, n as i64).await?;
        postgres.halt()?;
        tokio::time::sleep(OUTAGE).await;
        postgres.resume()?;
        p.pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&p.db_url).await?;
        let url = p.standin.as_ref().expect("stand-in").url.clone();
        print(&format!("Postgres stopped {} s mid-analysis", OUTAGE.as_secs()), &outcome(&p, &runs, &url).await?);
    }

    // The ML server stopped (refusing connections) while runs wait for it.
    {
        let config = standin(500);
        let mut p = Pipeline::new(Some(config.clone())).await;
        p.set("ML_UNAVAILABLE_WAIT", "10m");
        p.set("ML_CAPACITY", "32");
        p.start_worker().await;
        let warm = p.analyse(Kind::Image, "warm").await;
        p.finished_run(warm.run_id).await;
        let port: u16 = p.ml_url.rsplit(':').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        p.standin = None;
        let runs = start_runs(&p, n).await;
        tokio::time::sleep(OUTAGE).await;
        p.standin = Some(support::spawn_standin_on(config, port).await);
        let url = p.standin.as_ref().expect("stand-in").url.clone();
        print(&format!("ML server stopped {} s", OUTAGE.as_secs()), &outcome(&p, &runs, &url).await?);
    }

    // A worker stopped mid-call past its grace period, and another started.
    {
        let mut p = Pipeline::new(Some(standin(8000))).await;
        p.set("WORKER_SHUTDOWN_GRACE", "1s");
        p.set("ML_HEARTBEAT_TIMEOUT", "3s");
        p.set("ML_CAPACITY", "32");
        p.start_worker().await;
        let runs = start_runs(&p, n).await;
        wait_running(&p, n as i64).await?;
        let t0 = Instant::now();
        p.stop_worker().await;
        p.start_worker().await;
        let url = p.standin.as_ref().expect("stand-in").url.clone();
        let o = outcome(&p, &runs, &url).await?;
        let attempts: i64 = sqlx::query_scalar("SELECT coalesce(max(attempts), 0)::bigint FROM deepfake_analyses")
            .fetch_one(&p.pool)
            .await?;
        print(
            &format!(
                "worker restarted mid-call ({:.0} s to recover; ML attempts recorded: max {attempts})",
                t0.elapsed().as_secs_f64()
            ),
            &o,
        );
    }

    // Redis away for the whole batch.
    {
        let mut p = Pipeline::new(Some(standin(200))).await;
        p.set("ML_CAPACITY", "32");
        p.start_worker().await;
        p.redis.stop();
        let runs = start_runs(&p, n).await;
        let url = p.standin.as_ref().expect("stand-in").url.clone();
        print("Redis down", &outcome(&p, &runs, &url).await?);
    }
    Ok(())
}
