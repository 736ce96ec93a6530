//! A whole pipeline per test: a Temporal dev server, a fresh database, a private Redis, the ML
//! stand-in in-process, a storage directory with real media files made by ffmpeg, and a worker.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use drishtiksha_common::config::WorkerConfig;
use drishtiksha_common::workflow::{AnalysisInput, StartAnalysis, start_analysis};
use drishtiksha_common::{AnalysisStatus, MediaType, RunStatus, workflow};
use drishtiksha_standin::Config as StandinConfig;
use drishtiksha_testkit::{RedisServer, TemporalDevServer, eventually, free_port, fresh_database};
use drishtiksha_worker::{WorkerGuard, spawn_worker};
use serde_json::Value;
use sqlx::PgPool;
use temporalio_client::Client;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const ML_KEY: &str = "test-ml-key";
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The kinds of test media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    VideoWithAudio,
    VideoWithoutAudio,
    Audio,
    Image,
}

impl Kind {
    fn media_type(self) -> MediaType {
        match self {
            Self::VideoWithAudio | Self::VideoWithoutAudio => MediaType::Video,
            Self::Audio => MediaType::Audio,
            Self::Image => MediaType::Image,
        }
    }

    fn ext_and_mime(self) -> (&'static str, &'static str) {
        match self {
            Self::VideoWithAudio | Self::VideoWithoutAudio => (".mp4", "video/mp4"),
            Self::Audio => (".wav", "audio/wav"),
            Self::Image => (".png", "image/png"),
        }
    }

    fn ffmpeg_args(self) -> Vec<&'static str> {
        match self {
            Self::VideoWithAudio => vec![
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=1:size=160x120:rate=10",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=1",
                "-c:v",
                "mpeg4",
                "-c:a",
                "aac",
                "-shortest",
            ],
            Self::VideoWithoutAudio => {
                vec!["-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10", "-c:v", "mpeg4", "-an"]
            }
            Self::Audio => vec!["-f", "lavfi", "-i", "sine=frequency=440:duration=1"],
            Self::Image => vec!["-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"],
        }
    }
}

/// A media row with its first run, started or not.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub media_id: Uuid,
    pub run_id: Uuid,
    pub user_id: Uuid,
    pub workflow_id: String,
    pub storage_key: String,
    pub path: PathBuf,
    pub kind: Kind,
}

/// A stand-in served in-process until dropped.
pub struct Standin {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_standin(config: StandinConfig) -> Standin {
    spawn_standin_on(config, 0).await
}

/// A stand-in on a given port (0: any free port), e.g. to start it again where it was.
pub async fn spawn_standin_on(config: StandinConfig, port: u16) -> Standin {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the stand-in's port");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let signal = async {
            let _ = stopped.await;
        };
        if let Err(e) = drishtiksha_standin::serve_with_shutdown(config, listener, signal).await {
            eprintln!("stand-in stopped: {e}");
        }
    });
    Standin { url: format!("http://{addr}"), stop: Some(stop) }
}

/// A stand-in configuration from its command-line flags (with the test key).
pub fn standin_with(flags: &[&str]) -> StandinConfig {
    let mut args = vec!["--api-key", ML_KEY];
    args.extend_from_slice(flags);
    match StandinConfig::parse(args.iter().map(|a| a.to_string()), |_: &str| None).expect("valid stand-in flags") {
        drishtiksha_standin::Command::Run(config) => *config,
        other => panic!("stand-in flags do not run it: {other:?}"),
    }
}

/// A JSON `GET` of one of the stand-in's endpoints (with the test key).
pub async fn standin_json(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("X-API-Key", ML_KEY)
        .send()
        .await
        .expect("stand-in answers")
        .json()
        .await
        .expect("stand-in JSON")
}

/// The stand-in's `/analyze` log entries with status 200 for one media.
pub async fn successful_calls(base: &str, media_id: uuid::Uuid) -> Vec<Value> {
    let log = standin_json(base, "/__standin/requests").await;
    log.as_array()
        .expect("request log")
        .iter()
        .filter(|e| e["mediaId"] == media_id.to_string() && e["status"] == 200)
        .cloned()
        .collect()
}

/// The stand-in's defaults with the test key and no latency.
pub fn standin_config() -> StandinConfig {
    let mut config = StandinConfig::new(ML_KEY);
    config.latency_scale = 0.0;
    config
}

pub struct Pipeline {
    pub temporal: TemporalDevServer,
    client: Client,
    pub temporal_address: String,
    pub pool: PgPool,
    pub db_url: String,
    pub redis: RedisServer,
    pub standin: Option<Standin>,
    pub ml_url: String,
    pub storage_root: PathBuf,
    pub task_queue: String,
    pub overrides: HashMap<String, String>,
    pub worker: Option<WorkerGuard>,
    pub user_id: Uuid,
}

impl Pipeline {
    /// Everything but the worker; `standin` `None` points the worker at a port nobody serves.
    pub async fn new(standin: Option<StandinConfig>) -> Self {
        let database = fresh_database().await.expect("fresh database");
        Self::with_database(standin, database).await
    }

    /// Everything but the worker, on a given (migrated) database.
    pub async fn with_database(standin: Option<StandinConfig>, (db_url, pool): (String, PgPool)) -> Self {
        let temporal = TemporalDevServer::start().await.expect("Temporal dev server starts");
        let client = temporal.client().await.expect("Temporal client connects");
        let redis = RedisServer::start().await.expect("redis-server starts");
        let (standin, ml_url) = match standin {
            Some(config) => {
                let s = spawn_standin(config).await;
                let url = s.url.clone();
                (Some(s), url)
            }
            None => (None, format!("http://127.0.0.1:{}", free_port())),
        };
        let storage_root = std::env::temp_dir().join(format!("drishtiksha-worker-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&storage_root).expect("storage root");
        let user_id = Uuid::new_v4();
        sqlx::query!(
            "INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, $2, 'Ada', 'Lovelace', 'x')",
            user_id,
            format!("{}@example.com", user_id.simple())
        )
        .execute(&pool)
        .await
        .expect("user inserted");
        Self {
            temporal_address: temporal.address(),
            temporal,
            client,
            pool,
            db_url,
            redis,
            standin,
            ml_url,
            storage_root,
            task_queue: format!("media-analysis-{}", Uuid::new_v4().simple()),
            overrides: HashMap::from(
                [
                    ("ML_RETRY_INITIAL_INTERVAL_S", "50ms"),
                    // A stopped ML server is waited for this long before its models fail.
                    ("ML_UNAVAILABLE_WAIT", "2s"),
                    ("ML_HEARTBEAT_TIMEOUT", "5s"),
                    ("WORKER_SHUTDOWN_GRACE", "5s"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            worker: None,
            user_id,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn set(&mut self, var: &str, value: &str) -> &mut Self {
        self.overrides.insert(var.to_string(), value.to_string());
        self
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig::from_source(&self.worker_env()).expect("valid worker configuration")
    }

    /// The worker's environment variables.
    pub fn worker_env(&self) -> HashMap<String, String> {
        let mut env = drishtiksha_testkit::base_env(&self.db_url, &self.redis.url());
        for (k, v) in [
            ("TEMPORAL_ADDRESS", self.temporal_address.clone()),
            ("TEMPORAL_TASK_QUEUE", self.task_queue.clone()),
            ("SERVER_URL", self.ml_url.clone()),
            ("SERVER_API_KEY", ML_KEY.to_string()),
            ("LOCAL_STORAGE_PATH", self.storage_root.to_string_lossy().into_owned()),
            ("WORKER_MAX_CONCURRENT_ACTIVITIES", "20".to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        env.extend(self.overrides.clone());
        env
    }

    /// Starts a worker (replacing none).
    pub async fn start_worker(&mut self) {
        let config = self.worker_config();
        let guard = tokio::task::spawn_blocking(move || spawn_worker(config))
            .await
            .expect("start-up thread")
            .expect("worker starts");
        self.worker = Some(guard);
    }

    /// Stops the worker gracefully (its in-flight activities are interrupted after the grace period).
    pub async fn stop_worker(&mut self) {
        if let Some(guard) = self.worker.take() {
            tokio::task::spawn_blocking(move || guard.shutdown())
                .await
                .expect("shutdown thread")
                .expect("worker stops cleanly");
        }
    }

    /// A real media file made by ffmpeg, with `marker` appended, and its media and run rows.
    pub async fn create_media(&self, kind: Kind, marker: &str) -> TestRun {
        let media_id = Uuid::new_v4();
        let run_id = Uuid::new_v4();
        let media_type = kind.media_type();
        let (ext, mime) = kind.ext_and_mime();
        let storage_key = format!("{}/{media_id}{ext}", media_type.storage_folder());
        let path = self.storage_root.join(&storage_key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("media folder");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(kind.ffmpeg_args())
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg made {kind:?}");
        if !marker.is_empty() {
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open media");
            f.write_all(marker.as_bytes()).expect("append marker");
        }
        let size = i64::try_from(std::fs::metadata(&path).expect("metadata").len()).expect("size");
        let workflow_id = workflow::workflow_id(media_id, 1);
        let mut tx = self.pool.begin().await.expect("tx");
        sqlx::query!(
            r#"INSERT INTO media (id, user_id, filename, storage_key, mimetype, size, media_type, latest_analysis_run_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
            media_id,
            self.user_id,
            format!("clip{ext}"),
            storage_key,
            mime,
            size,
            media_type as MediaType,
            run_id
        )
        .execute(&mut *tx)
        .await
        .expect("media inserted");
        sqlx::query!(
            "INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, 1, $3)",
            run_id,
            media_id,
            workflow_id
        )
        .execute(&mut *tx)
        .await
        .expect("run inserted");
        tx.commit().await.expect("commit");
        TestRun { media_id, run_id, user_id: self.user_id, workflow_id, storage_key, path, kind }
    }

    pub async fn start(&self, run: &TestRun) {
        start_analysis(
            self.client(),
            StartAnalysis {
                task_queue: &self.task_queue,
                workflow_id: &run.workflow_id,
                input: AnalysisInput { run_id: run.run_id, media_id: run.media_id, user_id: run.user_id },
                media_type: run.kind.media_type(),
                run_number: 1,
                filename: "clip",
            },
        )
        .await
        .expect("workflow starts");
    }

    /// Creates and starts a run.
    pub async fn analyse(&self, kind: Kind, marker: &str) -> TestRun {
        let run = self.create_media(kind, marker).await;
        self.start(&run).await;
        run
    }

    pub async fn run_row(&self, run_id: Uuid) -> RunRow {
        sqlx::query_as!(
            RunRow,
            r#"SELECT status AS "status: RunStatus", total_models, completed_count, failed_count, error_message,
                      completed_at IS NOT NULL AS "completed!"
               FROM analysis_runs WHERE id = $1"#,
            run_id
        )
        .fetch_one(&self.pool)
        .await
        .expect("run row")
    }

    /// Waits for the run to reach a terminal status.
    pub async fn finished_run(&self, run_id: Uuid) -> RunRow {
        eventually(RUN_TIMEOUT, || async {
            let row = self.run_row(run_id).await;
            row.status.is_terminal().then_some(row)
        })
        .await
        .expect("run reaches a terminal status")
    }

    pub async fn analyses(&self, run_id: Uuid) -> Vec<AnalysisRow> {
        sqlx::query_as!(
            AnalysisRow,
            r#"SELECT model_name, status AS "status: AnalysisStatus", prediction, confidence, error_message,
                      processing_time, media_type, result_payload, attempts
               FROM deepfake_analyses WHERE analysis_run_id = $1 ORDER BY model_name"#,
            run_id
        )
        .fetch_all(&self.pool)
        .await
        .expect("analysis rows")
    }

    pub async fn media_row(&self, media_id: Uuid) -> MediaRow {
        sqlx::query_as!(
            MediaRow,
            r#"SELECT status AS "status: RunStatus", has_audio, metadata, latest_analysis_run_id
               FROM media WHERE id = $1"#,
            media_id
        )
        .fetch_one(&self.pool)
        .await
        .expect("media row")
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The worker first: it must not outlive the services it uses.
        drop(self.worker.take());
        let _ = std::fs::remove_dir_all(&self.storage_root);
    }
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub status: RunStatus,
    pub total_models: i32,
    pub completed_count: i32,
    pub failed_count: i32,
    pub error_message: Option<String>,
    pub completed: bool,
}

#[derive(Debug, Clone)]
pub struct AnalysisRow {
    pub model_name: String,
    pub status: AnalysisStatus,
    pub prediction: String,
    pub confidence: f64,
    pub error_message: Option<String>,
    pub processing_time: Option<f64>,
    pub media_type: Option<String>,
    pub result_payload: Option<Value>,
    pub attempts: i32,
}

#[derive(Debug, Clone)]
pub struct MediaRow {
    pub status: RunStatus,
    pub has_audio: Option<bool>,
    pub metadata: Option<Value>,
    pub latest_analysis_run_id: Option<Uuid>,
}

pub fn names(rows: &[AnalysisRow]) -> Vec<&str> {
    rows.iter().map(|r| r.model_name.as_str()).collect()
}
