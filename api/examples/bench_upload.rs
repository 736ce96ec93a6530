//! Upload throughput and memory: streams a 150 MiB video through `POST /api/v1/media` of an api
//! served in-process (own database, machine Redis, a Temporal dev server so the run really
//! starts), into S3 storage (an S3-compatible server on loopback) and into local storage, and
//! prints markdown rows: size, seconds, MB/s, RSS growth of the process.
//!
//! The client sends from a generator over one static 64 KiB buffer, so the RSS growth measured is
//! the api's buffering of the upload.
//!
//! ```text
//! cargo run --release -p drishtiksha-api --example bench_upload [-- <MiB>]
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use drishtiksha_common::config::ApiConfig;
use std::collections::HashMap;

use drishtiksha_testkit::{
    S3Server, TemporalDevServer, base_env, eventually, fresh_database, redis_url, unique_bucket,
};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

static CHUNK: [u8; 64 * 1024] = [0x5a; 64 * 1024];
const FTYP: &[u8] = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2";

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(150);
    let temporal = TemporalDevServer::start().await?;

    let s3 = S3Server::start().await?;
    measure(&temporal, mib, "S3 storage", s3.env(&unique_bucket())).await?;
    drop(s3);

    let storage = std::env::temp_dir().join(format!("bench-upload-{}", uuid::Uuid::new_v4()));
    let local = HashMap::from([("LOCAL_STORAGE_PATH".to_string(), storage.to_string_lossy().into_owned())]);
    measure(&temporal, mib, "local storage", local).await?;
    let _ = std::fs::remove_dir_all(storage);
    drop(temporal);
    Ok(())
}

async fn measure(
    temporal: &TemporalDevServer,
    mib: u64,
    label: &str,
    storage_env: HashMap<String, String>,
) -> anyhow::Result<()> {
    let total = mib * 1_048_576;
    let (db_url, _pool) = fresh_database().await?;
    let mut env = base_env(&db_url, &redis_url());
    env.extend(storage_env);
    env.insert("TEMPORAL_ADDRESS".into(), temporal.address());
    env.insert("TEMPORAL_TASK_QUEUE".into(), format!("bench-{}", uuid::Uuid::new_v4().simple()));
    env.insert("MAX_UPLOAD_BYTES".into(), (total + 1).max(157_286_400).to_string());
    let state = drishtiksha_api::build_state(ApiConfig::from_source(&env)?).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(drishtiksha_api::serve(state, listener));

    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), || async {
        let r = http.get(format!("{base}/api/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let signup: Value = http
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": "correct-horse-battery", "firstName": "B", "lastName": "B"}))
        .send()
        .await?
        .json()
        .await?;
    let token = signup["data"]["token"].as_str().ok_or_else(|| anyhow::anyhow!("no token: {signup}"))?.to_string();

    let upload = |size: u64| {
        let chunks = futures::stream::unfold(0u64, move |sent| async move {
            if sent >= size {
                return None;
            }
            let n = (size - sent).min(CHUNK.len() as u64) as usize;
            // The file starts like an MP4 (an `ftyp` box): the api checks content against the type.
            let chunk = if sent == 0 && n >= FTYP.len() {
                let mut first = FTYP.to_vec();
                first.extend_from_slice(&CHUNK[FTYP.len()..n]);
                Bytes::from(first)
            } else {
                Bytes::from_static(&CHUNK[..n])
            };
            Some((Ok::<Bytes, std::io::Error>(chunk), sent + n as u64))
        });
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(chunks), size)
            .file_name("bench.mp4")
            .mime_str("video/mp4")
            .expect("mime");
        http.post(format!("{base}/api/v1/media")).bearer_auth(&token).multipart(Form::new().part("media", part)).send()
    };

    // Warm-up: connection pools, first workflow start.
    let warm = upload(1_048_576).await?;
    anyhow::ensure!(warm.status() == 202, "warm-up upload answered {}", warm.status());

    let before = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let resp = upload(total).await?;
    let elapsed = started.elapsed();
    sampler.abort();
    let status = resp.status();
    anyhow::ensure!(status == 202, "upload answered {status}: {}", resp.text().await?);
    let growth_mb = (peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before)) as f64 / 1024.0;
    let mb_s = total as f64 / 1_048_576.0 / elapsed.as_secs_f64();

    println!(
        "| POST /media of a {mib} MiB file ({label}): throughput | {mb_s:.1} MiB/s ({:.2} s) | — |",
        elapsed.as_secs_f64()
    );
    println!("| POST /media of a {mib} MiB file ({label}): api RSS growth | {growth_mb:.1} MiB | < 32 MB |");
    server.abort();
    Ok(())
}
