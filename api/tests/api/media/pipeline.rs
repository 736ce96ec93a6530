//! The whole pipeline through REST: the api, a Temporal dev server, a worker on the test's task
//! queue and the ML stand-in, all in-process except the dev server.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use drishtiksha_testkit::{RedisServer, eventually};
use drishtiksha_worker::WorkerGuard;
use futures::StreamExt;
use serde_json::Value;

use crate::support::{Temporal, TestApp, body};

/// A server put in front of the stand-in: gets its address, returns its own.
pub(crate) type Front = fn(std::net::SocketAddr) -> futures::future::BoxFuture<'static, std::net::SocketAddr>;

/// An api with a worker and an ML stand-in whose simulated models take `latency_scale` times
/// their usual time (0: answer at once).
pub(crate) struct Pipeline {
    /// Declared first so that it is dropped first: a test that fails stops its worker while the
    /// api's Temporal dev server still runs.
    worker: Option<WorkerGuard>,
    pub(crate) api: TestApp,
    channel: String,
}

impl Pipeline {
    pub(crate) async fn start(latency_scale: f64) -> Self {
        Self::start_with(latency_scale, None, HashMap::new(), None).await
    }

    /// As [`Pipeline::start`], with the stand-in's catalogue (JSON) replaced, extra api/worker
    /// environment, and optionally a `front` server started before the api and used as its ML
    /// server (given the stand-in's address, it returns its own).
    pub(crate) async fn start_with(
        latency_scale: f64,
        catalogue: Option<&str>,
        extra: HashMap<String, String>,
        front: Option<Front>,
    ) -> Self {
        let redis = RedisServer::start().await.expect("redis-server");
        let channel = format!("media-progress-test-{}", uuid::Uuid::new_v4().simple());
        let mut ml = drishtiksha_standin::Config::new("test-ml-key");
        ml.latency_scale = latency_scale;
        ml.redis_url = Some(redis.url());
        ml.channel = channel.clone();
        if let Some(c) = catalogue {
            ml.catalogue =
                drishtiksha_standin::catalogue::Catalogue::parse(c, drishtiksha_standin::catalogue::Format::Json)
                    .expect("catalogue");
        }
        let mut ml_addr = drishtiksha_standin::spawn_local(ml).await.expect("stand-in");
        if let Some(front) = front {
            ml_addr = front(ml_addr).await;
        }

        let api = TestApp::builder()
            .temporal(Temporal::Dev)
            .redis(redis)
            .env("SERVER_URL", format!("http://{ml_addr}"))
            .env("MEDIA_PROGRESS_CHANNEL_NAME", channel.clone())
            .env("ML_RETRY_INITIAL_INTERVAL_S", "1")
            .envs(extra)
            .spawn()
            .await;
        let config = api.worker_config();
        let worker = tokio::task::spawn_blocking(move || drishtiksha_worker::spawn_worker(config))
            .await
            .expect("join")
            .expect("worker");
        Self { api, worker: Some(worker), channel }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            tokio::task::spawn_blocking(move || worker.shutdown()).await.expect("join").expect("worker shutdown");
        }
    }

    /// Polls `GET /media/:id` until `done` accepts its `data`.
    pub(crate) async fn wait_for_media(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/v1/media/{id}");
        eventually(timeout, || async {
            let (status, v) = self.api.get(&path, token).await;
            (status == 200 && done(&v["data"])).then(|| v["data"].clone())
        })
        .await
        .unwrap_or_else(|_| panic!("media {id} did not reach the expected state"))
    }
}

/// A one-second 160×120 MP4 with an audio track, made by ffmpeg.
fn small_video() -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("clip-{}.mp4", uuid::Uuid::new_v4()));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-shortest", "-c:v", "mpeg4", "-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg failed");
    let bytes = std::fs::read(&path).expect("video");
    let _ = std::fs::remove_file(path);
    bytes
}

fn is_terminal(status: &Value) -> bool {
    matches!(status.as_str(), Some("ANALYZED" | "FAILED" | "CANCELLED"))
}

#[tokio::test]
async fn an_uploaded_video_is_analyzed_end_to_end_through_rest() {
    let p = Pipeline::start(0.0).await;
    let (_, token) = p.api.new_user().await;
    let (status, v) = body(p.api.upload(&token, "interview.mp4", "video/mp4", small_video(), None).await).await;
    assert_eq!(status, 202, "{v}");
    let id = v["data"]["id"].as_str().expect("id").to_string();

    let media = p.wait_for_media(&token, &id, Duration::from_secs(120), |m| is_terminal(&m["status"])).await;
    assert_eq!(media["status"], "ANALYZED", "{media}");
    assert_eq!(media["hasAudio"], true);
    assert_eq!(media["metadata"]["video"]["width"], 160);
    let run = &media["analysisRuns"][0];
    assert_eq!(run["status"], "ANALYZED");
    assert_eq!(run["runNumber"], 1);
    let total = run["totalModels"].as_i64().expect("totalModels");
    assert!(total >= 1, "{run}");
    assert_eq!(run["completedCount"], total);
    assert_eq!(run["failedCount"], 0);
    assert!(run["completedAt"].is_string());
    let analyses = run["analyses"].as_array().expect("analyses");
    assert_eq!(analyses.len() as i64, total);
    for a in analyses {
        assert_eq!(a["status"], "COMPLETED", "{a}");
        assert!(matches!(a["prediction"].as_str(), Some("REAL" | "FAKE")), "{a}");
        assert!(a["resultPayload"].is_object());
    }
    // The run endpoint shows the same run.
    let (status, v) =
        p.api.get(&format!("/api/v1/media/{id}/runs/{}", run["id"].as_str().expect("run id")), &token).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], *run);

    // A re-run goes through the pipeline again.
    let (status, v) = p.api.post(&format!("/api/v1/media/{id}/analyze"), &token).await;
    assert_eq!(status, 202, "{v}");
    let media = p
        .wait_for_media(&token, &id, Duration::from_secs(120), |m| {
            m["analysisRuns"][0]["runNumber"] == 2 && is_terminal(&m["analysisRuns"][0]["status"])
        })
        .await;
    assert_eq!(media["analysisRuns"][0]["status"], "ANALYZED");
    assert_eq!(media["status"], "ANALYZED");
    p.stop().await;
}

#[tokio::test]
async fn cancelling_a_running_run_ends_it_cancelled_and_allows_a_rerun() {
    let p = Pipeline::start(60.0).await;
    let (_, token) = p.api.new_user().await;
    let media = p.api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id").to_string();
    let run_id = media["latestAnalysisRunId"].as_str().expect("run").to_string();
    p.wait_for_media(&token, &id, Duration::from_secs(60), |m| m["status"] == "PROCESSING").await;

    let (status, v) = p.api.post(&format!("/api/v1/media/{id}/runs/{run_id}/cancel"), &token).await;
    assert_eq!(status, 202, "{v}");
    let media = p.wait_for_media(&token, &id, Duration::from_secs(60), |m| is_terminal(&m["status"])).await;
    assert_eq!(media["status"], "CANCELLED");
    let run = &media["analysisRuns"][0];
    assert_eq!(run["status"], "CANCELLED");
    assert_eq!(run["errorMessage"], "Analysis cancelled");
    for a in run["analyses"].as_array().expect("analyses") {
        assert_eq!(a["status"], "CANCELLED", "{a}");
    }
    let (status, v) = p.api.post(&format!("/api/v1/media/{id}/runs/{run_id}/cancel"), &token).await;
    assert_eq!(status, 409, "{v}");
    let (status, _) = p.api.post(&format!("/api/v1/media/{id}/analyze"), &token).await;
    assert_eq!(status, 202);
    p.stop().await;
}

#[tokio::test]
async fn deleting_media_cancels_its_running_analysis_first() {
    let p = Pipeline::start(60.0).await;
    let (_, token) = p.api.new_user().await;
    let media = p.api.upload_png(&token).await;
    let id = media["id"].as_str().expect("id").to_string();
    let key = media["publicId"].as_str().expect("key").to_string();
    p.wait_for_media(&token, &id, Duration::from_secs(60), |m| m["status"] == "PROCESSING").await;

    let client = redis::Client::open(p.api.redis_url.as_str()).expect("redis");
    let mut events = client.get_async_pubsub().await.expect("pubsub");
    events.subscribe(&p.channel).await.expect("subscribe");

    let started = Instant::now();
    let (status, v) = p.api.delete(&format!("/api/v1/media/{id}"), &token).await;
    assert_eq!(status, 200, "{v}");
    assert!(started.elapsed() < Duration::from_secs(15), "delete took {:?}", started.elapsed());
    assert_eq!(p.api.count("media").await, 0);
    assert!(!p.api.storage_dir.join(&key).exists());

    // The workflow wound down: its run was finalized CANCELLED (and announced) before the rows went.
    let mut stream = events.on_message();
    let cancelled = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = stream.next().await {
            let payload: String = msg.get_payload().expect("payload");
            let v: Value = serde_json::from_str(&payload).expect("json");
            if v["media_id"] == id.as_str() && v["event"] == "ANALYSIS_CANCELLED" {
                return v;
            }
        }
        panic!("channel closed");
    })
    .await
    .expect("run finalized CANCELLED while the delete waited");
    assert_eq!(cancelled["data"]["finalStatus"], "CANCELLED");
    drop(stream);
    p.stop().await;
}
