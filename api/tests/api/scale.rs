//! Horizontal scale on one machine: two `api` processes and two `worker` processes (the real
//! binaries) on one Temporal dev server, one Postgres, one Redis and S3 storage. Forty uploads are
//! split across both apis and one worker is killed mid-batch: every run still ends ANALYZED with
//! one row per model, and every user's socket, on either api, saw the `media_update` of each of
//! its own media and nobody else's.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drishtiksha_common::storage::Storage;
use drishtiksha_testkit::{
    RedisServer, S3Server, TemporalDevServer, base_env, eventually, free_port, fresh_database, s3_object_keys,
    unique_bucket,
};
use futures::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use crate::support::binaries::{self, api_binary, worker_binary};
use crate::support::socket::SocketClient;

const ML_KEY: &str = "scale-ml-key";
const UPLOADS: usize = 40;
const USERS: usize = 4;
/// Three image models slow enough that the batch outlasts the worker kill.
const CATALOGUE: &str = r#"[
  {"name": "IMG-SIGLIP", "class_name": "A", "description": "a", "isImage": true, "profile": "siglip", "latency_ms": 1500},
  {"name": "IMG-EFFNET", "class_name": "B", "description": "b", "isImage": true, "profile": "efficientnet", "latency_ms": 1200},
  {"name": "IMG-WAVE", "class_name": "C", "description": "c", "isImage": true, "profile": "scattering", "latency_ms": 900}
]"#;
const MODELS: [&str; 3] = ["IMG-EFFNET", "IMG-SIGLIP", "IMG-WAVE"];

fn png(upload: usize) -> Vec<u8> {
    drishtiksha_testkit::png_with_marker(&format!("upload-{upload}"))
}

async fn upload(http: &reqwest::Client, api: SocketAddr, token: &str, bytes: Vec<u8>) -> String {
    let (status, v) = binaries::upload_png(http, api, token, bytes).await;
    assert_eq!(status, 202, "{v}");
    v["data"]["id"].as_str().expect("id").to_string()
}

async fn count(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_and_two_workers_finish_every_run_when_a_worker_dies_mid_batch() {
    let logs = std::env::temp_dir().join(format!("drishtiksha-scale-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let temporal = TemporalDevServer::start().await.expect("temporal");
    let (db_url, db) = fresh_database().await.expect("database");
    let redis = RedisServer::start().await.expect("redis");
    let s3 = S3Server::start().await.expect("s3 server");
    let bucket = unique_bucket();

    let mut standin = drishtiksha_standin::Config::new(ML_KEY);
    standin.catalogue =
        drishtiksha_standin::catalogue::Catalogue::parse(CATALOGUE, drishtiksha_standin::catalogue::Format::Json)
            .expect("catalogue");
    standin.redis_url = Some(redis.url());
    let ml = drishtiksha_standin::spawn_local(standin).await.expect("stand-in");

    let mut env = base_env(&db_url, &redis.url());
    env.extend(s3.env(&bucket));
    for (k, v) in [
        ("SERVER_URL", format!("http://{ml}")),
        ("SERVER_API_KEY", ML_KEY.to_string()),
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("TEMPORAL_TASK_QUEUE", format!("scale-{}", Uuid::new_v4().simple())),
        ("ML_RETRY_INITIAL_INTERVAL_S", "1".to_string()),
        ("WORKER_MAX_CONCURRENT_ACTIVITIES", "8".to_string()),
        ("RUST_LOG", "info".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }

    let api_bin = api_binary();
    let worker_bin = worker_binary();
    let mut apis = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let mut e = env.clone();
        e.insert("PORT".into(), port.to_string());
        e.insert("PUBLIC_BASE_URL".into(), format!("http://127.0.0.1:{port}"));
        apis.push(binaries::spawn(&api_bin, &e, &logs, &format!("api-{i}")));
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let mut workers: Vec<_> =
        (0..2).map(|i| binaries::spawn(&worker_bin, &env, &logs, &format!("worker-{i}"))).collect();

    let http = reqwest::Client::new();
    for addr in &addrs {
        binaries::until_answers(&http, *addr, "/api/ready", &logs).await;
    }

    // Users, each with a socket on one of the apis; their uploads go through both.
    let mut tokens = Vec::new();
    let mut seen: Vec<Arc<Mutex<Vec<Value>>>> = Vec::new();
    let mut readers = Vec::new();
    for u in 0..USERS {
        let token = binaries::signup(&http, addrs[u % 2]).await;
        let mut socket = SocketClient::start_for(addrs[u % 2], Some(&token), "websocket", 600).await;
        let first = socket.next().await;
        assert_eq!(first["kind"], "connect", "{first}");
        let updates = Arc::new(Mutex::new(Vec::new()));
        let sink = updates.clone();
        readers.push(tokio::spawn(async move {
            loop {
                let (name, payload) = socket.event().await;
                if name == "media_update" {
                    sink.lock().expect("lock").push(payload);
                }
            }
        }));
        seen.push(updates);
        tokens.push(token);
    }

    let images: Vec<Vec<u8>> = (0..UPLOADS).map(png).collect();
    let uploads = futures::stream::iter(images.into_iter().enumerate().map(|(i, bytes)| {
        let (http, token, addr) = (&http, &tokens[i % USERS], addrs[(i / USERS) % 2]);
        async move { (i % USERS, upload(http, addr, token, bytes).await) }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let mut owned: Vec<BTreeSet<String>> = vec![BTreeSet::new(); USERS];
    for (user, id) in uploads {
        owned[user].insert(id);
    }

    // Kill one worker while it is busy: some runs are done, most are still being analysed.
    let analyzed = "SELECT count(*) FROM analysis_runs WHERE status = 'ANALYZED'";
    eventually(Duration::from_secs(120), || async { (count(&db, analyzed).await >= 3).then_some(()) })
        .await
        .unwrap_or_else(|_| panic!("no run finished; logs in {}", logs.display()));
    workers[0].start_kill().expect("kill");
    workers[0].wait().await.expect("wait");
    let at_kill = count(&db, analyzed).await;
    assert!(at_kill < UPLOADS as i64, "the batch was over before the kill ({at_kill} runs analysed)");

    let terminal = "SELECT count(*) FROM analysis_runs WHERE status IN ('ANALYZED', 'FAILED', 'CANCELLED')";
    eventually(Duration::from_secs(300), || async { (count(&db, terminal).await == UPLOADS as i64).then_some(()) })
        .await
        .unwrap_or_else(|_| panic!("runs did not finish after the kill; logs in {}", logs.display()));

    // Every run analysed by every model exactly once; nothing stuck, nothing duplicated.
    assert_eq!(count(&db, analyzed).await, UPLOADS as i64, "every run ANALYZED");
    assert_eq!(count(&db, "SELECT count(*) FROM media WHERE status = 'ANALYZED'").await, UPLOADS as i64);
    assert_eq!(count(&db, "SELECT count(*) FROM analysis_runs").await, UPLOADS as i64, "one run per upload");
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT analysis_run_id, model_name, status::text FROM deepfake_analyses ORDER BY analysis_run_id, model_name",
    )
    .fetch_all(&db)
    .await
    .expect("analyses");
    assert_eq!(rows.len(), UPLOADS * MODELS.len(), "one analysis row per run and model");
    let mut per_run: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for (run, model, status) in &rows {
        assert_eq!(status, "COMPLETED", "{run} {model}");
        per_run.entry(*run).or_default().push(model);
    }
    assert!(per_run.values().all(|models| models == &MODELS), "{per_run:?}");
    let counts = count(&db, "SELECT count(*) FROM analysis_runs WHERE completed_count = 3 AND failed_count = 0").await;
    assert_eq!(counts, UPLOADS as i64, "run counts");

    // Every file is in the bucket.
    let store: Storage = s3.storage(&bucket).await.expect("store");
    let Storage::S3(store) = &store else { unreachable!("s3 store") };
    let keys = s3_object_keys(store).await.expect("objects");
    // Objects are keyed `media/<key>`: the uploads, and each model's answer (kept before it was
    // recorded) under `results/`, once.
    let answers = keys.iter().filter(|k| k.starts_with("media/results/")).count();
    assert_eq!(keys.len() - answers, UPLOADS);
    assert_eq!(answers, UPLOADS * MODELS.len());

    // Each user saw the final media_update of each of its own media, on whichever api it is.
    for (u, updates) in seen.iter().enumerate() {
        let expected = &owned[u];
        eventually(Duration::from_secs(30), || async {
            let got: BTreeSet<String> = updates
                .lock()
                .expect("lock")
                .iter()
                .filter(|p| p["status"] == "ANALYZED")
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect();
            (&got == expected).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("user {u} did not see all of its media_update events"));
        let foreign: Vec<Value> = updates
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| !p["id"].as_str().is_some_and(|id| expected.contains(id)))
            .cloned()
            .collect();
        assert!(foreign.is_empty(), "user {u} saw another user's media: {foreign:?}");
    }

    for r in readers {
        r.abort();
    }
    drop(workers);
    drop(apis);
    let _ = std::fs::remove_dir_all(&logs);
}
