//! Live progress under load and bounded payloads, through the whole system (api, worker, Temporal
//! dev server, ML stand-in publishing its progress schedules). Prints markdown rows:
//!
//! - a 50-run zero-latency burst watched by one socket.io-client: channel messages published vs
//!   `progress_update`s delivered, and terminal events delivered (must be 100 %);
//! - `GET /media/:id` bytes for a 3840 × 2160 image whose model returns a full-resolution heatmap,
//!   with the payload verbatim (the full result) and bounded;
//! - the frontend's refetches (one `GET /media/:id` per `progress_update`) for one video run,
//!   counted by two sockets of the same user on two api processes: one relaying every progress
//!   message (`SOCKET_PROGRESS_WINDOW=0`), one with the default window.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use drishtiksha_common::config::{ApiConfig, DEFAULT_PROGRESS_CHANNEL, WorkerConfig};
use drishtiksha_testkit::{RedisServer, TemporalDevServer, base_env, fresh_database};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const RUNS: usize = 50;
const KEY: &str = "bench-ml-key";
const CATALOGUE: &str = r#"[
  {"name": "IMG-SIGLIP", "class_name": "A", "description": "a", "isImage": true, "profile": "siglip", "latency_ms": 0},
  {"name": "IMG-EFFNET", "class_name": "B", "description": "b", "isImage": true, "profile": "efficientnet", "latency_ms": 0},
  {"name": "IMG-HEATMAP", "class_name": "H", "description": "h", "isImage": true, "profile": "image-heatmap", "full_heatmap": true, "latency_ms": 0},
  {"name": "SIGLIP-LSTM-V4", "class_name": "S", "description": "s", "isVideo": true, "profile": "siglip", "latency_ms": 3000},
  {"name": "EFFICIENTNET-B7-V1", "class_name": "E", "description": "e", "isVideo": true, "profile": "efficientnet", "latency_ms": 2000}
]"#;
/// Terminal events of one image run: 3 × analysis_completed, run_finalized, media_update.
const TERMINAL_PER_IMAGE_RUN: usize = 5;
const TERMINAL: [&str; 5] =
    ["analysis_completed", "analysis_failed", "run_finalized", "media_update", "processing_error"];

/// A message published on the channel after the events it must follow.
struct Marker {
    redis: redis::Client,
    user_id: String,
}

impl Marker {
    async fn publish(&self) -> anyhow::Result<()> {
        let m =
            json!({"media_id": "bench", "user_id": self.user_id, "event": "BENCH_MARKER", "message": "", "data": {}});
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let _: i64 =
            redis::cmd("PUBLISH").arg(DEFAULT_PROGRESS_CHANNEL).arg(m.to_string()).query_async(&mut conn).await?;
        Ok(())
    }
}

struct Client {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Client {
    async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client.mjs");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .arg(format!("http://{addr}"))
            .args(["--transports", "websocket", "--token", token, "--seconds", "900"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).lines();
        let mut c = Self { _child: child, lines };
        loop {
            let v = c.next().await?;
            anyhow::ensure!(v["kind"] != "connect_error", "socket refused: {v}");
            if v["kind"] == "connect" {
                return Ok(c);
            }
        }
    }

    async fn next(&mut self) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(300), self.lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("client ended"))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Events until `media_update` arrived for every id of `media`, then until `marker` (published
    /// after them, so nothing of those runs can follow it).
    async fn collect(&mut self, media: &HashSet<String>, marker: &Marker) -> anyhow::Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut updated = HashSet::new();
        while updated.len() < media.len() {
            let v = self.next().await?;
            if v["event"] == "media_update" && v["payload"]["id"].as_str().is_some_and(|id| media.contains(id)) {
                updated.insert(v["payload"]["id"].as_str().unwrap_or_default().to_string());
            }
            events.push(v);
        }
        marker.publish().await?;
        loop {
            let v = self.next().await?;
            if v["payload"]["event"] == "BENCH_MARKER" {
                return Ok(events);
            }
            events.push(v);
        }
    }
}

async fn upload(
    http: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    name: String,
    mime: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<String> {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name).mime_str(mime)?;
    let resp: Value = http
        .post(format!("http://{addr}/api/v1/media"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("media", part))
        .send()
        .await?
        .json()
        .await?;
    resp["data"]["id"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("upload refused: {resp}"))
}

fn ffmpeg(args: &[&str], ext: &str) -> anyhow::Result<Vec<u8>> {
    let path = std::env::temp_dir().join(format!("bench-events-{}.{ext}", uuid::Uuid::new_v4()));
    let ok = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .arg(&path)
        .status()?
        .success();
    anyhow::ensure!(ok, "ffmpeg failed");
    let bytes = std::fs::read(&path)?;
    let _ = std::fs::remove_file(path);
    Ok(bytes)
}

async fn serve_api(env: &std::collections::HashMap<String, String>) -> anyhow::Result<SocketAddr> {
    let state = drishtiksha_api::build_state(ApiConfig::from_source(env)?).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(drishtiksha_api::serve(state, listener));
    Ok(addr)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let (db_url, _db) = fresh_database().await?;
    let redis = RedisServer::start().await?;
    let storage = std::env::temp_dir().join(format!("bench-events-{}", uuid::Uuid::new_v4()));

    let mut standin = drishtiksha_standin::Config::new(KEY);
    standin.catalogue =
        drishtiksha_standin::catalogue::Catalogue::parse(CATALOGUE, drishtiksha_standin::catalogue::Format::Json)?;
    standin.redis_url = Some(redis.url());
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
    let addr = serve_api(&env).await?;
    let mut every = env.clone();
    every.insert("SOCKET_PROGRESS_WINDOW".into(), "0".into());
    let addr_every = serve_api(&every).await?;

    let http = reqwest::Client::new();
    let signup: Value = http
        .post(format!("http://{addr}/api/v1/auth/signup"))
        .json(&json!({"email": "bench-events@example.com", "password": "bench-password", "firstName": "B", "lastName": "B"}))
        .send()
        .await?
        .json()
        .await?;
    let token = signup["data"]["token"].as_str().unwrap_or_default().to_string();
    let user_id = signup["data"]["user"]["id"].as_str().unwrap_or_default().to_string();
    let redis_client = redis::Client::open(redis.url())?;
    let marker = Marker { redis: redis_client.clone(), user_id };

    // --- 50-run burst --------------------------------------------------------------------------
    let mut pubsub = redis_client.get_async_pubsub().await?;
    pubsub.subscribe(DEFAULT_PROGRESS_CHANNEL).await?;
    let mut published_stream = pubsub.into_on_message();
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(msg) = published_stream.next().await {
            let payload: String = msg.get_payload().unwrap_or_default();
            if payload.contains("BENCH_MARKER") {
                return n;
            }
            n += 1;
        }
        n
    });
    let mut client = Client::connect(addr, &token).await?;
    let pngs: Vec<Vec<u8>> = (0..RUNS)
        .map(|i| {
            let mut png = ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"], "png")?;
            png.extend_from_slice(format!("burst-{i}").as_bytes());
            Ok(png)
        })
        .collect::<anyhow::Result<_>>()?;
    let ids = futures::future::try_join_all(
        pngs.into_iter()
            .enumerate()
            .map(|(i, png)| upload(&http, addr, &token, format!("burst-{i}.png"), "image/png", png)),
    )
    .await?;
    let media: HashSet<String> = ids.into_iter().collect();
    let events = client.collect(&media, &marker).await?;
    let published = counter.await?;
    let progress = events.iter().filter(|v| v["event"] == "progress_update").count();
    let terminal = events.iter().filter(|v| v["event"].as_str().is_some_and(|e| TERMINAL.contains(&e))).count();
    let expected_terminal = RUNS * TERMINAL_PER_IMAGE_RUN;
    println!(
        "| {RUNS}-run zero-latency burst, 1 socket: channel messages published / progress_update delivered | {published} / {progress} (the rest coalesced) | outcomes never coalesced |"
    );
    println!(
        "| {RUNS}-run burst: terminal events delivered (analysis_completed, run_finalized, media_update) | {terminal} / {expected_terminal} ({:.0} %) | 100 % |",
        100.0 * terminal as f64 / expected_terminal as f64
    );

    // --- 4K heatmap ----------------------------------------------------------------------------
    let uhd = ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:s=3840x2160", "-frames:v", "1"], "png")?;
    let id = upload(&http, addr, &token, "uhd.png".into(), "image/png", uhd).await?;
    let one: HashSet<String> = [id.clone()].into();
    client.collect(&one, &marker).await?;
    let detail = http.get(format!("http://{addr}/api/v1/media/{id}")).bearer_auth(&token).send().await?.bytes().await?;
    let v: Value = serde_json::from_slice(&detail)?;
    let heatmap = v["data"]["analysisRuns"][0]["analyses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["modelName"] == "IMG-HEATMAP"))
        .cloned()
        .unwrap_or_default();
    let analysis_id = heatmap["id"].as_str().unwrap_or_default();
    let full = http
        .get(format!("http://{addr}/api/v1/media/{id}/analyses/{analysis_id}/result"))
        .bearer_auth(&token)
        .send()
        .await?
        .bytes()
        .await?;
    println!(
        "| GET /media/:id bytes, 3840 × 2160 image with a full-resolution heatmap: payload verbatim / bounded | {:.1} MB / {:.1} kB | ≤ 256 KiB per analysis |",
        (detail.len() + full.len()) as f64 / 1e6,
        detail.len() as f64 / 1e3
    );

    // --- refetches for one video run, before and after coalescing ------------------------------
    let mut client_every = Client::connect(addr_every, &token).await?;
    let video = ffmpeg(&["-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10", "-c:v", "mpeg4"], "mp4")?;
    let id = upload(&http, addr, &token, "clip.mp4".into(), "video/mp4", video).await?;
    let one: HashSet<String> = [id.clone()].into();
    let after = client.collect(&one, &marker).await?;
    let before = client_every.collect(&one, &marker).await?;
    let refetches = |evs: &[Value]| {
        evs.iter().filter(|v| v["event"] == "progress_update" && v["payload"]["mediaId"] == id.as_str()).count()
    };
    println!(
        "| frontend refetches (one GET /media/:id per progress_update), one video run of 2 models: every message relayed / coalesced (150 ms) | {} / {} | fewer, outcomes intact |",
        refetches(&before),
        refetches(&after)
    );
    let _ = std::fs::remove_dir_all(storage);
    drop(temporal);
    Ok(())
}
