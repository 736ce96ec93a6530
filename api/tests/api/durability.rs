//! Durable intake with the real `api` and `worker` binaries: uploads are accepted while Temporal
//! is away and analysed once it is back (a worker restarted meanwhile keeps waiting instead of
//! exiting); an api killed mid-upload leaves no partial file after its next start.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drishtiksha_testkit::{RedisServer, TemporalDevServer, base_env, eventually, free_port, fresh_database};
use tokio::process::Child;
use uuid::Uuid;

use crate::support::binaries::{self, api_binary, worker_binary};
use crate::support::files_below;

const ML_KEY: &str = "durability-ml-key";
const CATALOGUE: &str = r#"[{"name": "IMG-ONLY", "isImage": true, "profile": "image-generic", "latency_ms": 200}]"#;

struct Stack {
    logs: PathBuf,
    storage: PathBuf,
    env: HashMap<String, String>,
    api: SocketAddr,
    db: sqlx::PgPool,
    _redis: RedisServer,
}

impl Stack {
    async fn new(temporal: &TemporalDevServer) -> Self {
        let logs = std::env::temp_dir().join(format!("drishtiksha-durability-test-{}", Uuid::new_v4().simple()));
        let storage = logs.join("media");
        std::fs::create_dir_all(&storage).expect("dirs");
        let (db_url, db) = fresh_database().await.expect("database");
        let redis = RedisServer::start().await.expect("redis");
        let mut standin = drishtiksha_standin::Config::new(ML_KEY);
        standin.catalogue =
            drishtiksha_standin::catalogue::Catalogue::parse(CATALOGUE, drishtiksha_standin::catalogue::Format::Json)
                .expect("catalogue");
        let ml = drishtiksha_standin::spawn_local(standin).await.expect("stand-in");
        let port = free_port();
        let mut env = base_env(&db_url, &redis.url());
        for (k, v) in [
            ("SERVER_URL", format!("http://{ml}")),
            ("SERVER_API_KEY", ML_KEY.to_string()),
            ("TEMPORAL_ADDRESS", temporal.address()),
            ("TEMPORAL_TASK_QUEUE", format!("durability-{}", Uuid::new_v4().simple())),
            ("LOCAL_STORAGE_PATH", storage.to_string_lossy().into_owned()),
            ("PORT", port.to_string()),
            ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
            ("RECONCILE_INTERVAL", "2s".to_string()),
            ("RECONCILE_STALE_AFTER", "1s".to_string()),
            ("STALE_UPLOAD_AGE", "0s".to_string()),
            ("RUST_LOG", "info".to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        Self { logs, storage, env, api: SocketAddr::from(([127, 0, 0, 1], port)), db, _redis: redis }
    }

    fn start_api(&self) -> Child {
        binaries::spawn(&api_binary(), &self.env, &self.logs, "api")
    }

    fn start_worker(&self) -> Child {
        binaries::spawn(&worker_binary(), &self.env, &self.logs, "worker")
    }

    async fn ready(&self, http: &reqwest::Client) {
        binaries::until_answers(http, self.api, "/api/health", &self.logs).await;
    }

    async fn signup(&self, http: &reqwest::Client) -> String {
        binaries::signup(http, self.api).await
    }

    fn partial_files(&self) -> Vec<PathBuf> {
        files_below(&self.storage)
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".part")))
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_accepted_while_temporal_is_away_and_analyzed_once_it_returns() {
    const UPLOADS: usize = 20;
    const OUTAGE: Duration = Duration::from_secs(60);
    let mut temporal = TemporalDevServer::start_persistent().await.expect("temporal");
    let stack = Stack::new(&temporal).await;
    let _api = stack.start_api();
    let mut worker = stack.start_worker();
    let http = reqwest::Client::new();
    stack.ready(&http).await;
    let token = stack.signup(&http).await;

    temporal.stop();
    let stopped = Instant::now();
    let mut media = Vec::new();
    for i in 0..UPLOADS {
        let png = drishtiksha_testkit::png_with_marker(&format!("durable-{i}"));
        let (status, v) = binaries::upload_png(&http, stack.api, &token, png).await;
        assert_eq!(status, 202, "upload {i} while Temporal is away: {v}");
        assert_eq!(v["data"]["status"], "QUEUED");
        media.push(v["data"]["id"].as_str().expect("id").to_string());
    }
    // A worker restarted while Temporal is away waits for it instead of exiting.
    worker.kill().await.expect("kill worker");
    let mut worker = stack.start_worker();
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    assert!(worker.try_wait().expect("worker status").is_none(), "the worker is still running");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM analysis_runs WHERE status = 'QUEUED'")
        .fetch_one(&stack.db)
        .await
        .expect("count");
    assert_eq!(queued, UPLOADS as i64, "every run waits, none failed");

    temporal.restart().await.expect("Temporal starts again");
    eventually(Duration::from_secs(180), || async {
        let analyzed: i64 = sqlx::query_scalar("SELECT count(*) FROM analysis_runs WHERE status = 'ANALYZED'")
            .fetch_one(&stack.db)
            .await
            .ok()?;
        (analyzed == UPLOADS as i64).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("every run is analyzed after Temporal returns; logs in {}", stack.logs.display()));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deepfake_analyses WHERE status = 'COMPLETED'")
        .fetch_one(&stack.db)
        .await
        .expect("count");
    assert_eq!(rows, UPLOADS as i64, "one row per run, no duplicates");
    assert!(worker.try_wait().expect("worker status").is_none(), "the worker is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_killed_mid_upload_leaves_no_partial_file_after_its_next_start() {
    let temporal = TemporalDevServer::start().await.expect("temporal");
    let stack = Stack::new(&temporal).await;
    let mut api = stack.start_api();
    let http = reqwest::Client::new();
    stack.ready(&http).await;
    let token = stack.signup(&http).await;

    // A large upload whose body stops half-way: the api has written part of it.
    let boundary = "durabilityboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let total = 8 * 1024 * 1024;
    let mut stream = std::net::TcpStream::connect(stack.api).expect("connect");
    write!(
        stream,
        "POST /api/v1/media HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        stack.api,
        head.len() + total + boundary.len() + 8
    )
    .expect("headers");
    stream.write_all(head.as_bytes()).expect("part head");
    let mut png = drishtiksha_testkit::png_with_marker("partial");
    png.resize(total / 2, 0);
    stream.write_all(&png).expect("half the body");
    stream.flush().expect("flush");
    eventually(Duration::from_secs(30), || async { (!stack.partial_files().is_empty()).then_some(()) })
        .await
        .expect("the upload is being written");

    api.kill().await.expect("kill api");
    drop(stream);
    assert!(!stack.partial_files().is_empty(), "the crash left a partial file");
    let _api = stack.start_api();
    stack.ready(&http).await;
    eventually(Duration::from_secs(30), || async { stack.partial_files().is_empty().then_some(()) })
        .await
        .expect("the next start removes the partial file");
}
