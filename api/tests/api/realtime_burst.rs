//! Live progress under a burst: 20 concurrent runs on a zero-latency stand-in whose models publish
//! their full progress schedules, watched by one socket.io-client per user over polling and
//! WebSocket, each a slow reader (busy after every event, like a page re-rendering). Outcomes must
//! all arrive, once each, in order; progress is coalesced.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use drishtiksha_testkit::RedisServer;
use drishtiksha_worker::{WorkerGuard, spawn_worker};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::socket::SocketClient;
use crate::support::{Temporal, TestApp, Turn, unique_email};

const ML_KEY: &str = "burst-ml-key";

/// Three image models whose profiles publish progress schedules (≈ 50, 60 and 6 messages a call).
const CATALOGUE: &str = r#"[
  {"name": "IMG-SIGLIP", "class_name": "A", "description": "a", "isImage": true, "profile": "siglip"},
  {"name": "IMG-EFFNET", "class_name": "B", "description": "b", "isImage": true, "profile": "efficientnet"},
  {"name": "IMG-WAVE", "class_name": "C", "description": "c", "isImage": true, "profile": "scattering"}
]"#;
const MODELS: [&str; 3] = ["IMG-SIGLIP", "IMG-EFFNET", "IMG-WAVE"];
const USERS: usize = 2;
const RUNS_PER_USER: usize = 10;

/// Warnings and errors the api logs while the test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Stack {
    // Dropped in this order: the worker stops while Temporal (the app's) still runs.
    _worker: WorkerGuard,
    app: TestApp,
}

/// The api runs on `turn`.
async fn stack(api_env: &[(&'static str, &str)], turn: Turn) -> Stack {
    let redis = RedisServer::start().await.expect("redis");
    let mut standin = drishtiksha_standin::Config::new(ML_KEY);
    standin.catalogue =
        drishtiksha_standin::catalogue::Catalogue::parse(CATALOGUE, drishtiksha_standin::catalogue::Format::Json)
            .expect("catalogue");
    standin.redis_url = Some(redis.url());
    standin.latency_scale = 0.0;
    let ml = drishtiksha_standin::spawn_local(standin).await.expect("stand-in");
    let app = TestApp::builder()
        .turn(turn)
        .temporal(Temporal::Dev)
        .redis(redis)
        .env("SERVER_URL", format!("http://{ml}"))
        .env("SERVER_API_KEY", ML_KEY)
        .env("ML_RETRY_INITIAL_INTERVAL_S", "1")
        .envs(api_env.iter().copied())
        .spawn()
        .await;
    let worker = spawn_worker(app.worker_config()).expect("worker");
    Stack { app, _worker: worker }
}

async fn upload(app: &TestApp, token: &str, marker: &str) -> Value {
    let part = reqwest::multipart::Part::bytes(drishtiksha_testkit::png_with_marker(marker))
        .file_name("face.png")
        .mime_str("image/png")
        .expect("mime");
    let r = app
        .http
        .post(app.url("/api/v1/media"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("media", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.expect("json")["data"].clone()
}

/// Sum of a counter's samples whose labels satisfy `pred`.
fn counter(metrics: &str, name: &str, pred: impl Fn(&str) -> bool) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && pred(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const TERMINAL: [&str; 5] =
    ["analysis_completed", "analysis_failed", "run_finalized", "media_update", "processing_error"];

/// Warnings and errors logged in this process (each scenario reads what was logged while its api
/// ran alone).
static LOGS: LazyLock<Captured> = LazyLock::new(|| {
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init();
    logs
});
async fn metrics_of(_app: &TestApp) -> String {
    // The api runs in this process (its /metrics is served only on METRICS_ADDR): read the
    // registry it writes to.
    drishtiksha_common::metrics::render()
}

/// 20 uploads at once (USERS × RUNS_PER_USER) on a zero-latency stand-in, one slow socket per
/// user (half polling, half WebSocket; `busy_ms` of work per event). Checks that every outcome of
/// every run arrives exactly once and in order, that nothing terminal is dropped, coalesced or
/// logged as undelivered; returns how many progress messages were coalesced meanwhile.
async fn burst(api_env: &[(&'static str, &str)], busy_ms: u32) -> f64 {
    let logs = LOGS.clone();
    // Alone in this process from here on: the metrics and the logs read below are this scenario's.
    let turn = Turn::solo().await;
    let logged_before = logs.0.lock().expect("logs").len();
    let s = stack(api_env, turn).await;
    let before = metrics_of(&s.app).await;
    let coalesced_before = counter(&before, "drishtiksha_socket_events_coalesced_total", |l| l.contains("PROGRESS"));

    // One socket per user, half over long-polling (the transport that fills buffers first).
    let mut users = Vec::new();
    for i in 0..USERS {
        let (user_id, token) = s.app.signup(&unique_email(), "correct-horse").await;
        let transport = if i % 2 == 0 { "polling" } else { "websocket" };
        let mut client = SocketClient::start_slow(s.app.addr, &token, transport, busy_ms).await;
        assert_eq!(client.next().await["kind"], "connect");
        users.push((user_id, token, client));
    }
    // 20 uploads at once.
    let app = &s.app;
    let jobs: Vec<_> = users
        .iter()
        .flat_map(|(_, token, _)| (0..RUNS_PER_USER).map(move |k| (token.clone(), k)))
        .map(|(token, k)| async move { upload(app, &token, &format!("burst-{k}-{}", Uuid::new_v4())).await })
        .collect();
    let uploads = futures::future::join_all(jobs).await;
    let mut runs_of_user: Vec<HashMap<String, String>> = vec![HashMap::new(); USERS];
    for (i, m) in uploads.iter().enumerate() {
        let media = m["id"].as_str().expect("id").to_string();
        let run = m["latestAnalysisRunId"].as_str().expect("run").to_string();
        runs_of_user[i / RUNS_PER_USER].insert(media, run);
    }

    for (i, (user_id, _, client)) in users.iter_mut().enumerate() {
        let runs = &runs_of_user[i];
        // Every media's final update, then a marker published after all of them: whatever the
        // socket receives before the marker is all it will ever receive for these runs.
        let mut updated = HashSet::new();
        let mut events = Vec::new();
        while updated.len() < runs.len() {
            let (n, p) = client.event().await;
            if n == "media_update" {
                updated.insert(p["id"].as_str().expect("id").to_string());
            }
            events.push((n, p));
        }
        let marker =
            json!({"media_id": "marker", "user_id": user_id, "event": "TEST_MARKER", "message": "", "data": {}});
        let redis = redis::Client::open(s.app.redis_url.as_str()).expect("redis url");
        let mut conn = redis.get_multiplexed_async_connection().await.expect("redis");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(drishtiksha_common::config::DEFAULT_PROGRESS_CHANNEL)
            .arg(marker.to_string())
            .query_async(&mut conn)
            .await
            .expect("publish");
        loop {
            let (n, p) = client.event().await;
            if p["event"] == "TEST_MARKER" {
                break;
            }
            events.push((n, p));
        }

        for (media, run) in runs {
            let of_run = |n: &str, p: &Value| {
                (n == "media_update" && p["id"] == media.as_str()) || p["analysisRunId"] == run.as_str()
            };
            let seq: Vec<(usize, &str, &Value)> = events
                .iter()
                .enumerate()
                .filter(|(_, (n, p))| TERMINAL.contains(&n.as_str()) && of_run(n, p))
                .map(|(at, (n, p))| (at, n.as_str(), p))
                .collect();
            let names: Vec<&str> = seq.iter().map(|(_, n, _)| *n).collect();
            assert_eq!(names.len(), MODELS.len() + 2, "user {i} run {run}: {names:?}");
            let mut models: Vec<&str> = seq[..MODELS.len()]
                .iter()
                .map(|(_, n, p)| {
                    assert_eq!(*n, "analysis_completed", "run {run}: {names:?}");
                    p["modelName"].as_str().expect("model")
                })
                .collect();
            models.sort_unstable();
            let mut expected = MODELS.to_vec();
            expected.sort_unstable();
            assert_eq!(models, expected, "run {run}");
            assert_eq!(names[MODELS.len()..], ["run_finalized", "media_update"], "run {run}");
            assert_eq!(seq[MODELS.len()].2["finalStatus"], "ANALYZED");
            assert_eq!(seq[MODELS.len() + 1].2["status"], "ANALYZED");
            // Each typed outcome right after its own progress_update.
            for (at, n, _) in &seq {
                if *n != "media_update" {
                    assert_eq!(events[at - 1].0, "progress_update", "{n} of run {run}");
                    assert_eq!(events[at - 1].1["mediaId"], media.as_str());
                }
            }
        }
    }

    let metrics = metrics_of(&s.app).await;
    let coalesced =
        counter(&metrics, "drishtiksha_socket_events_coalesced_total", |l| l.contains("PROGRESS")) - coalesced_before;
    // Counts of this scenario: what the process counted before it (other scenarios, other tests)
    // is subtracted.
    let added = |name: &str, pred: &dyn Fn(&str) -> bool| counter(&metrics, name, pred) - counter(&before, name, pred);
    for ev in ["ANALYSIS_COMPLETED", "ANALYSIS_FAILED", "ANALYSIS_COMPLETE", "ANALYSIS_CANCELLED", "MEDIA_UPLOADED"] {
        let label = format!("event=\"{ev}\"");
        assert_eq!(added("drishtiksha_socket_events_dropped_total", &|l| l.contains(&label)), 0.0);
        assert_eq!(added("drishtiksha_socket_events_coalesced_total", &|l| l.contains(&label)), 0.0);
    }
    assert_eq!(added("drishtiksha_socket_overflow_disconnects_total", &|_| true), 0.0);
    let logged = String::from_utf8_lossy(&logs.0.lock().expect("logs")[logged_before..]).into_owned();
    drop(s);
    let undelivered: Vec<&str> =
        logged.lines().filter(|l| l.contains("socket") && (l.contains("WARN") || l.contains("ERROR"))).collect();
    assert!(undelivered.is_empty(), "{undelivered:#?}");
    coalesced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_runs_deliver_every_outcome_once_and_in_order_while_progress_is_coalesced() {
    let coalesced = burst(&[], 1).await;
    assert!(coalesced > 0.0, "no progress was coalesced");
}

/// Without a window, progress is only coalesced while a socket is backed up: with a small buffer
/// and slow readers the outboxes must wait for room (a full buffer used to mean a lost event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_with_small_buffers_and_no_window_still_get_every_outcome_once_and_in_order() {
    let coalesced = burst(&[("SOCKET_PROGRESS_WINDOW", "0"), ("SOCKET_BUFFER", "16")], 3).await;
    assert!(coalesced > 0.0, "the sockets never backed up: this scenario did not test waiting for room");
}
