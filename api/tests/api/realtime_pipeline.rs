//! Live progress end to end: uploads through the REST API, the real worker and workflow on a
//! Temporal dev server, the ML stand-in publishing its progress schedules, and socket.io-client.

use drishtiksha_testkit::RedisServer;
use drishtiksha_worker::{WorkerGuard, spawn_worker};
use serde_json::{Value, json};

use crate::support::socket::SocketClient;
use crate::support::{Temporal, TestApp, unique_email};

const ML_KEY: &str = "realtime-ml-key";

/// Three image models whose profiles publish progress schedules.
const CATALOGUE: &str = r#"[
  {"name": "IMG-SIGLIP", "class_name": "A", "description": "a", "isImage": true, "profile": "siglip", "latency_ms": 400},
  {"name": "IMG-EFFNET", "class_name": "B", "description": "b", "isImage": true, "profile": "efficientnet", "latency_ms": 300},
  {"name": "IMG-WAVE", "class_name": "C", "description": "c", "isImage": true, "profile": "scattering", "latency_ms": 200}
]"#;
const MODELS: [&str; 3] = ["IMG-SIGLIP", "IMG-EFFNET", "IMG-WAVE"];

struct Stack {
    // Dropped in this order: the worker stops while Temporal (the app's) still runs.
    _worker: WorkerGuard,
    app: TestApp,
}

async fn stack(catalogue: &str) -> Stack {
    let redis = RedisServer::start().await.expect("redis");
    let mut standin = drishtiksha_standin::Config::new(ML_KEY);
    standin.catalogue =
        drishtiksha_standin::catalogue::Catalogue::parse(catalogue, drishtiksha_standin::catalogue::Format::Json)
            .expect("catalogue");
    standin.redis_url = Some(redis.url());
    let ml = drishtiksha_standin::spawn_local(standin).await.expect("stand-in");
    let app = TestApp::builder()
        .temporal(Temporal::Dev)
        .redis(redis)
        .env("SERVER_URL", format!("http://{ml}"))
        .env("SERVER_API_KEY", ML_KEY)
        .env("ML_RETRY_INITIAL_INTERVAL_S", "1")
        .spawn()
        .await;
    let worker = spawn_worker(app.worker_config()).expect("worker");
    Stack { app, _worker: worker }
}

fn png(marker: &str) -> Vec<u8> {
    drishtiksha_testkit::png_with_marker(marker)
}

async fn upload(app_addr: std::net::SocketAddr, http: &reqwest::Client, token: &str, bytes: Vec<u8>) -> Value {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("face.png").mime_str("image/png").expect("mime");
    let form = reqwest::multipart::Form::new().part("media", part);
    let r = http
        .post(format!("http://{app_addr}/api/v1/media"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.expect("json")["data"].clone()
}

fn progress_events(events: &[(String, Value)]) -> Vec<&Value> {
    events.iter().filter(|(n, _)| n == "progress_update").map(|(_, p)| p).collect()
}

/// Position of the first event matching `pred`.
fn pos(events: &[(String, Value)], pred: impl Fn(&str, &Value) -> bool) -> usize {
    events.iter().position(|(n, p)| pred(n, p)).unwrap_or_else(|| panic!("event not found in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_upload_with_three_models_streams_every_step_in_order() {
    let s = stack(CATALOGUE).await;
    let (_, token) = s.app.signup(&unique_email(), "correct-horse").await;
    let mut client = SocketClient::connected(s.app.addr, &token).await;
    let media = upload(s.app.addr, &s.app.http, &token, png("")).await;
    let media_id = media["id"].as_str().expect("id").to_string();
    let events = client.until_event("media_update").await;

    assert_eq!(events[0].0, "progress_update");
    assert_eq!(events[0].1["event"], "MEDIA_UPLOADED");
    assert_eq!(events[1].0, "media_uploaded");
    assert_eq!(events[1].1["mediaId"], media_id.as_str());
    let progress = progress_events(&events);
    let queued: Vec<&str> = progress
        .iter()
        .filter(|p| p["event"] == "ANALYSIS_QUEUED")
        .map(|p| p["data"]["model_name"].as_str().expect("model"))
        .collect();
    assert_eq!(queued.len(), 3);
    for model in MODELS {
        let is = |ev: &'static str| {
            move |n: &str, p: &Value| n == "progress_update" && p["event"] == ev && p["data"]["model_name"] == model
        };
        let queued_at = pos(&events, is("ANALYSIS_QUEUED"));
        let started_at = pos(&events, is("ANALYSIS_STARTED"));
        let completed_at = pos(&events, is("ANALYSIS_COMPLETED"));
        // ML events carry no runId; the stand-in publishes its schedule while the call is held.
        let ml_at = pos(&events, |n, p| {
            n == "progress_update" && p["data"]["model_name"] == model && p["data"].get("runId").is_none()
        });
        assert!(queued_at < started_at && started_at < ml_at && ml_at < completed_at, "{model}: {events:#?}");
        assert!(pos(&events, |n, p| n == "analysis_started" && p["modelName"] == model) == started_at + 1);
        assert!(pos(&events, |n, p| n == "analysis_completed" && p["modelName"] == model) == completed_at + 1);
    }
    assert!(events.iter().any(|(n, p)| n == "analysis_progress" && p["progress"].is_i64()));
    let run_level = pos(&events, |n, p| n == "progress_update" && p["data"].get("finalStatus").is_some());
    assert_eq!(events[run_level].1["event"], "ANALYSIS_COMPLETE");
    assert_eq!(events[run_level + 1].0, "run_finalized");
    assert_eq!(events[run_level + 1].1["finalStatus"], "ANALYZED");
    assert_eq!(events[run_level + 1].1["completedCount"], 3);
    let (name, media_update) = events.last().expect("last");
    assert_eq!(name, "media_update");
    let detail: Value = s.app.get_auth(&format!("/api/v1/media/{media_id}"), &token).await.json().await.expect("json");
    assert_eq!(media_update, &detail["data"]);
    assert_eq!(detail["data"]["status"], "ANALYZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_emits_analysis_failed_and_processing_error_and_cancelling_emits_cancelled() {
    let s = stack(CATALOGUE).await;
    let (_, token) = s.app.signup(&unique_email(), "correct-horse").await;
    let mut client = SocketClient::connected(s.app.addr, &token).await;
    upload(s.app.addr, &s.app.http, &token, png("STANDIN:422@IMG-WAVE")).await;
    let events = client.until_event("media_update").await;
    let failed = events.iter().find(|(n, _)| n == "analysis_failed").expect("analysis_failed");
    assert_eq!(failed.1["modelName"], "IMG-WAVE");
    assert!(failed.1["error"].as_str().is_some_and(|e| e.contains("simulated media processing error")));
    let processing = events.iter().find(|(n, _)| n == "processing_error").expect("processing_error");
    assert_eq!(processing.1["filename"], "face.png");
    assert_eq!(processing.1["modelName"], "IMG-WAVE");
    let fin = events.iter().find(|(n, _)| n == "run_finalized").expect("run_finalized");
    assert_eq!((fin.1["finalStatus"].clone(), fin.1["failedCount"].clone()), (json!("ANALYZED"), json!(1)));

    // A model that hangs keeps the run open until it is cancelled.
    let media = upload(s.app.addr, &s.app.http, &token, png("STANDIN:hang@IMG-SIGLIP")).await;
    let (media_id, run_id) = (media["id"].as_str().expect("id"), media["latestAnalysisRunId"].as_str().expect("run"));
    loop {
        let v = client.next().await;
        if v["event"] == "analysis_completed" {
            break;
        }
    }
    let r = s
        .app
        .http
        .post(s.app.url(&format!("/api/v1/media/{media_id}/runs/{run_id}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 202);
    let events = client.until_event("media_update").await;
    let fin = events.iter().find(|(n, _)| n == "run_finalized").expect("run_finalized");
    assert_eq!(fin.1["finalStatus"], "CANCELLED");
    let (_, update) = events.last().expect("media_update");
    assert_eq!(update["status"], "CANCELLED");
    assert_eq!(update["analysisRuns"][0]["status"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_on_two_api_processes_both_receive_an_uploads_events() {
    let s = stack(CATALOGUE).await;
    let (peer, _peer_task) = s.app.spawn_peer().await;
    let (_, token) = s.app.signup(&unique_email(), "correct-horse").await;
    let mut on_first = SocketClient::connected(s.app.addr, &token).await;
    let mut on_peer = SocketClient::connected(peer, &token).await;
    // Uploaded through the peer, observed on both.
    let media = upload(peer, &s.app.http, &token, png("")).await;
    for c in [&mut on_first, &mut on_peer] {
        let events = c.until_event("media_update").await;
        assert_eq!(events.last().map(|(_, p)| p["id"].clone()), Some(media["id"].clone()));
        assert!(events.iter().any(|(n, _)| n == "media_uploaded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_events_not_results() {
    let slow = CATALOGUE.replace(r#""latency_ms": 400"#, r#""latency_ms": 4000"#);
    let mut s = stack(&slow).await;
    let (_, token) = s.app.signup(&unique_email(), "correct-horse").await;
    let mut client = SocketClient::connected(s.app.addr, &token).await;
    let media = upload(s.app.addr, &s.app.http, &token, png("")).await;
    // Wait until the slow model started, then restart Redis under everyone.
    loop {
        let v = client.next().await;
        if v["event"] == "analysis_started" && v["payload"]["modelName"] == "IMG-SIGLIP" {
            break;
        }
    }
    s.app.redis.restart().await.expect("restart redis");
    let events = client.until_event("media_update").await;
    let (_, update) = events.last().expect("media_update");
    assert_eq!(update["id"], media["id"]);
    assert_eq!(update["status"], "ANALYZED");
    let runs = &update["analysisRuns"][0];
    assert_eq!(runs["completedCount"], 3);
    assert!(runs["analyses"].as_array().is_some_and(|a| a.iter().all(|x| x["status"] == "COMPLETED")));
}
