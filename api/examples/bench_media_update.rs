//! Latency from a run's finalization to the `media_update` a socket.io-client receives, over 50
//! sequential image uploads through the whole system (api, worker, Temporal dev server, ML
//! stand-in at zero latency). The finalization time is the run's `completed_at`, written by the
//! finalize transaction. Prints one markdown row.

use std::process::Stdio;
use std::time::Duration;

use drishtiksha_common::config::{ApiConfig, WorkerConfig};
use drishtiksha_testkit::{RedisServer, TemporalDevServer, base_env, fresh_database};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const RUNS: usize = 50;
const KEY: &str = "bench-ml-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let (db_url, db) = fresh_database().await?;
    let redis = RedisServer::start().await?;
    let storage = std::env::temp_dir().join(format!("bench-media-update-{}", uuid::Uuid::new_v4()));

    let mut standin = drishtiksha_standin::Config::new(KEY);
    standin.latency_scale = 0.0;
    let ml = drishtiksha_standin::spawn_local(standin).await?;

    let mut env = base_env(&db_url, &redis.url());
    for (k, v) in [
        ("SERVER_URL", format!("http://{ml}")),
        ("SERVER_API_KEY", KEY.to_string()),
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("LOCAL_STORAGE_PATH", storage.to_string_lossy().into_owned()),
        ("API_RATE_LIMIT_MAX", "1000000".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    let _worker = drishtiksha_worker::spawn_worker(WorkerConfig::from_source(&env)?)?;
    let state = drishtiksha_api::build_state(ApiConfig::from_source(&env)?).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(drishtiksha_api::serve(state, listener));

    let http = reqwest::Client::new();
    let signup: Value = http
        .post(format!("http://{addr}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": "bench-password", "firstName": "B", "lastName": "B"}))
        .send()
        .await?
        .json()
        .await?;
    let token = signup["data"]["token"].as_str().unwrap_or_default().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{addr}"))
        .args(["--transports", "websocket", "--token", &token, "--seconds", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).lines();
    // Events are not replayed: the socket must be connected before the first upload.
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("client ended"))?;
        let v: Value = serde_json::from_str(&line)?;
        if v["kind"] == "connect" {
            break;
        }
        anyhow::ensure!(v["kind"] != "connect_error", "socket refused: {v}");
    }

    let png = std::fs::read(ensure_png()?)?;
    let mut latencies = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let part =
            reqwest::multipart::Part::bytes(png.clone()).file_name(format!("face-{i}.png")).mime_str("image/png")?;
        let resp: Value = http
            .post(format!("http://{addr}/api/v1/media"))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("media", part))
            .send()
            .await?
            .json()
            .await?;
        let media_id = resp["data"]["id"].as_str().unwrap_or_default().to_string();
        let received_at = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await??
                .ok_or_else(|| anyhow::anyhow!("client ended"))?;
            let v: Value = serde_json::from_str(&line)?;
            if v["event"] == "media_update" && v["payload"]["id"] == media_id.as_str() {
                break v["at"].as_f64().unwrap_or_default();
            }
        };
        let completed_ms: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM r.completed_at)::float8 * 1000 FROM analysis_runs r WHERE r.media_id = $1::uuid",
        )
        .bind(&media_id)
        .fetch_one(&db)
        .await?;
        latencies.push(received_at - completed_ms);
    }
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "| finalize commit → media_update at socket.io-client, p50 / p95 ({RUNS} runs) | {:.1} ms / {:.1} ms | p50 < 20 ms |",
        p(0.5),
        p(0.95)
    );
    let _ = std::fs::remove_dir_all(storage);
    drop(temporal);
    Ok(())
}

fn ensure_png() -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join("bench-media-update.png");
    if !path.exists() {
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"])
            .arg(&path)
            .status()?
            .success();
        anyhow::ensure!(ok, "ffmpeg could not make the test image");
    }
    Ok(path)
}
