//! A whole system for the command line to talk to — a Temporal dev server, a fresh database, a
//! private Redis, the ML stand-in, the api and a worker (the last three in this process, as the
//! api's own pipeline tests run them) — and the real `drishtiksha` binary run against it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use drishtiksha_common::config::{ApiConfig, WorkerConfig};
use drishtiksha_testkit::{RedisServer, TemporalDevServer, base_env, fresh_database};
use drishtiksha_worker::{WorkerGuard, spawn_worker};
use serde_json::{Value, json};
use uuid::Uuid;

const ML_KEY: &str = "cli-test-ml-key";
pub const PASSWORD: &str = "correct-horse-battery";

/// One model per media type (two for video), quick enough for tests, slow enough that progress
/// events arrive while the bars are up.
pub const CATALOGUE: &str = r#"[
  {"name": "VID-SIGLIP", "profile": "siglip", "isVideo": true, "latency_ms": 1500},
  {"name": "VID-EFFNET", "profile": "efficientnet", "isVideo": true, "latency_ms": 900},
  {"name": "AUD-WAVE", "profile": "scattering", "isAudio": true, "latency_ms": 600},
  {"name": "IMG-CHECK", "profile": "image-generic", "isImage": true, "latency_ms": 400}
]"#;
pub const MODELS: [&str; 4] = ["VID-SIGLIP", "VID-EFFNET", "AUD-WAVE", "IMG-CHECK"];

pub struct Stack {
    // Dropped in this order: the worker stops while Temporal still runs.
    _worker: WorkerGuard,
    _redis: RedisServer,
    _temporal: TemporalDevServer,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// The api's database (for what only an operator can do, like making an ADMIN).
    pub db: sqlx::PgPool,
    /// Scratch space of this test: config dir, media files, outputs.
    pub dir: PathBuf,
    storage: PathBuf,
}

impl Stack {
    pub async fn start(catalogue: &str) -> Self {
        let temporal = TemporalDevServer::start().await.expect("temporal");
        let (db_url, db) = fresh_database().await.expect("database");
        let redis = RedisServer::start().await.expect("redis");
        let mut standin = drishtiksha_standin::Config::new(ML_KEY);
        standin.catalogue =
            drishtiksha_standin::catalogue::Catalogue::parse(catalogue, drishtiksha_standin::catalogue::Format::Json)
                .expect("catalogue");
        standin.redis_url = Some(redis.url());
        let ml = drishtiksha_standin::spawn_local(standin).await.expect("stand-in");

        let dir = std::env::temp_dir().join(format!("drishtiksha-cli-test-{}", Uuid::new_v4().simple()));
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).expect("dirs");
        let mut env = base_env(&db_url, &redis.url());
        for (k, v) in [
            ("SERVER_URL", format!("http://{ml}")),
            ("SERVER_API_KEY", ML_KEY.to_string()),
            ("TEMPORAL_ADDRESS", temporal.address()),
            ("TEMPORAL_TASK_QUEUE", format!("cli-{}", Uuid::new_v4().simple())),
            ("ML_RETRY_INITIAL_INTERVAL_S", "1".to_string()),
            ("LOCAL_STORAGE_PATH", storage.to_string_lossy().into_owned()),
        ] {
            env.insert(k.to_string(), v);
        }
        let state = drishtiksha_api::build_state(ApiConfig::from_source(&env).expect("api config")).await.expect("api");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(drishtiksha_api::serve(state, listener));
        let worker = spawn_worker(WorkerConfig::from_source(&env).expect("worker config")).expect("worker");
        Self {
            _worker: worker,
            _redis: redis,
            _temporal: temporal,
            addr,
            http: reqwest::Client::new(),
            db,
            dir,
            storage,
        }
    }

    pub fn server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new account; returns its e-mail.
    pub async fn signup(&self) -> String {
        let email = format!("analyst-{}@example.com", Uuid::new_v4().simple());
        let r = self
            .http
            .post(format!("{}/api/v1/auth/signup", self.server()))
            .json(&json!({"email": email, "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), 201);
        email
    }

    /// The config directory the binary uses (its `XDG_CONFIG_HOME`).
    pub fn config_home(&self) -> PathBuf {
        self.dir.join("config")
    }

    pub fn cli(&self) -> Cli {
        Cli::new(&self.server(), &self.config_home())
    }

    /// Logs `email` in through the binary.
    pub async fn login(&self, email: &str) {
        let out =
            self.cli().stdin(&format!("{PASSWORD}\n")).run(&["login", "--email", email, "--password-stdin"]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }

    /// A media directory of this test with the given files.
    pub fn folder(&self, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).expect("dir");
        for (f, bytes) in files {
            std::fs::write(d.join(f), bytes).expect("write");
        }
        d
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One run of the `drishtiksha` binary, environment isolated from the developer's.
pub struct Cli {
    cmd: tokio::process::Command,
    stdin: Option<String>,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// stderr's non-empty lines.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_drishtiksha")
}

impl Cli {
    pub fn new(server: &str, config_home: &Path) -> Self {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", config_home)
            .env("XDG_CONFIG_HOME", config_home)
            .env("DRISHTIKSHA_SERVER", server)
            .kill_on_drop(true);
        Self { cmd, stdin: None }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn stdin(mut self, s: &str) -> Self {
        self.stdin = Some(s.to_string());
        self
    }

    pub async fn run(mut self, args: &[&str]) -> Output {
        use tokio::io::AsyncWriteExt as _;
        self.cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::piped());
        let mut child = self.cmd.spawn().expect("drishtiksha");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(s) = self.stdin.take() {
            stdin.write_all(s.as_bytes()).await.expect("stdin");
        }
        drop(stdin);
        let out = tokio::time::timeout(std::time::Duration::from_secs(180), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("drishtiksha {args:?} did not finish within 180 s"))
            .expect("wait");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn ffmpeg(args: &[&str], ext: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("drishtiksha-cli-media-{}.{ext}", Uuid::new_v4().simple()));
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg could not make a .{ext}");
    let bytes = std::fs::read(&path).expect("media");
    let _ = std::fs::remove_file(path);
    bytes
}

/// A one-second video without sound.
pub fn video() -> Vec<u8> {
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=128x96:rate=10", "-t", "1", "-c:v", "mpeg4"], "mp4")
}

/// A one-second tone.
pub fn audio() -> Vec<u8> {
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1"], "wav")
}

pub fn image(marker: &str) -> Vec<u8> {
    drishtiksha_testkit::png_with_marker(marker)
}
