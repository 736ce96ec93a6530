//! An api served in-process on a free port, with its own database, its own Redis, its own storage
//! directory and, when asked, its own Temporal dev server ([`TestApp::builder`]); the requests,
//! uploads and assertions the tests share; the real binaries ([`binaries`]) and a socket.io client
//! ([`socket`]).

#![allow(dead_code)]

pub mod binaries;
pub mod socket;
mod solo;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drishtiksha_common::config::ApiConfig;
use drishtiksha_testkit::{RedisServer, TemporalDevServer, base_env, eventually, free_port, fresh_database};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub use solo::Turn;

/// The password of the users [`TestApp::new_user`] signs up.
pub const PASSWORD: &str = "correct-horse-battery";

/// Where the api's Temporal client points.
pub enum Temporal {
    /// A port nothing listens on: runs are accepted and stay QUEUED.
    Unreachable,
    /// A dev server of the app's own ([`TestApp::temporal`]); workflows wait on the app's task queue,
    /// which nobody polls unless a worker is started.
    Dev,
}

/// How a [`TestApp`] is set up; [`TestApp::builder`].
pub struct Builder {
    temporal: Temporal,
    redis: Option<RedisServer>,
    env: HashMap<String, String>,
    turn: Option<Turn>,
}

impl Builder {
    /// Where the api's Temporal client points (default: [`Temporal::Unreachable`]).
    pub fn temporal(mut self, temporal: Temporal) -> Self {
        self.temporal = temporal;
        self
    }

    /// The Redis the api uses (default: a private one started for it).
    pub fn redis(mut self, redis: RedisServer) -> Self {
        self.redis = Some(redis);
        self
    }

    /// One environment variable of the api, over the defaults.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// Environment variables of the api, over the defaults.
    pub fn envs<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// `MAX_UPLOAD_BYTES`.
    pub fn max_upload_bytes(self, limit: u64) -> Self {
        self.env("MAX_UPLOAD_BYTES", limit.to_string())
    }

    /// The api runs on this turn instead of a shared one: e.g. [`Turn::solo`], for a test that
    /// counts the process's metrics or reads its logs.
    pub fn turn(mut self, turn: Turn) -> Self {
        self.turn = Some(turn);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let turn = match self.turn {
            Some(t) => t,
            None => Turn::shared().await,
        };
        let (db_url, db) = fresh_database().await.expect("database");
        let redis = match self.redis {
            Some(r) => r,
            None => RedisServer::start().await.expect("redis-server"),
        };
        let temporal = match self.temporal {
            Temporal::Dev => Some(TemporalDevServer::start().await.expect("temporal dev server")),
            Temporal::Unreachable => None,
        };
        let redis_url = redis.url();
        let storage_dir = std::env::temp_dir().join(format!("drishtiksha-api-test-{}", Uuid::new_v4()));
        let mut env = base_env(&db_url, &redis_url);
        env.insert("LOCAL_STORAGE_PATH".into(), storage_dir.to_string_lossy().into_owned());
        env.insert("TEMPORAL_TASK_QUEUE".into(), format!("api-test-{}", Uuid::new_v4().simple()));
        env.insert("PUBLIC_BASE_URL".into(), "http://files.example.test:3000".into());
        let temporal_address = match &temporal {
            Some(t) => t.address(),
            None => format!("127.0.0.1:{}", free_port()),
        };
        env.insert("TEMPORAL_ADDRESS".into(), temporal_address);
        // `/metrics` is only served on its own address (see `metrics_url`).
        env.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()));
        env.extend(self.env);
        let config = ApiConfig::from_source(&env).expect("config");
        let state = drishtiksha_api::build_state(config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(drishtiksha_api::serve(state, listener));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let app = TestApp { addr, db, db_url, redis, redis_url, http, storage_dir, env, temporal, _turn: turn };
        if app.temporal.is_some() {
            eventually(Duration::from_secs(60), || async {
                let r = app.http.get(app.url("/api/ready")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await
            .expect("api ready with temporal");
        }
        app
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PgPool,
    pub db_url: String,
    /// The app's Redis (peers share it).
    pub redis: RedisServer,
    pub redis_url: String,
    pub http: reqwest::Client,
    pub storage_dir: PathBuf,
    /// The environment this api was configured with (peers and in-process workers reuse it).
    pub env: HashMap<String, String>,
    /// The app's Temporal dev server, with [`Temporal::Dev`].
    pub temporal: Option<TemporalDevServer>,
    _turn: Turn,
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder { temporal: Temporal::Unreachable, redis: None, env: HashMap::new(), turn: None }
    }

    /// An api with the defaults of [`TestApp::builder`].
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// A second api process on the same database, Redis and Temporal (a horizontally scaled peer).
    pub async fn spawn_peer(&self) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let mut env = self.env.clone();
        env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
        let config = ApiConfig::from_source(&env).expect("config");
        let state = drishtiksha_api::build_state(config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (addr, tokio::spawn(drishtiksha_api::serve(state, listener)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The configuration of a worker for this api: its database, Redis, storage, Temporal server and
    /// task queue, its ML server.
    pub fn worker_config(&self) -> drishtiksha_common::config::WorkerConfig {
        drishtiksha_common::config::WorkerConfig::from_source(&self.env).expect("worker config")
    }

    /// The Temporal task queue the api starts workflows on.
    pub fn task_queue(&self) -> &str {
        &self.env["TEMPORAL_TASK_QUEUE"]
    }

    /// `/metrics` on the metrics address.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.env["METRICS_ADDR"])
    }

    /// The metrics text, once the metrics listener answers.
    pub async fn metrics(&self) -> String {
        let url = self.metrics_url();
        eventually(Duration::from_secs(10), || async { self.http.get(&url).send().await.ok()?.text().await.ok() })
            .await
            .expect("metrics listener")
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.expect("request")
    }

    /// Signs a user up; returns (user id, token).
    pub async fn signup(&self, email: &str, password: &str) -> (String, String) {
        let r = self
            .post_json(
                "/api/v1/auth/signup",
                json!({"email": email, "password": password, "firstName": "Ada", "lastName": "Lovelace"}),
            )
            .await;
        assert_eq!(r.status(), 201, "signup failed");
        let body: Value = r.json().await.expect("json");
        (
            body["data"]["user"]["id"].as_str().expect("id").to_string(),
            body["data"]["token"].as_str().expect("token").to_string(),
        )
    }

    /// Signs a new user up (a fresh address, [`PASSWORD`]); returns (user id, token).
    pub async fn new_user(&self) -> (String, String) {
        self.signup(&unique_email(), PASSWORD).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        body(self.get_auth(path, token).await).await
    }

    pub async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        body(self.http.post(self.url(path)).bearer_auth(token).send().await.expect("request")).await
    }

    pub async fn patch(&self, path: &str, token: &str, json: Value) -> (u16, Value) {
        body(self.http.patch(self.url(path)).bearer_auth(token).json(&json).send().await.expect("request")).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        body(self.http.delete(self.url(path)).bearer_auth(token).send().await.expect("request")).await
    }

    pub async fn upload_form(&self, token: &str, form: Form) -> reqwest::Response {
        self.http.post(self.url("/api/v1/media")).bearer_auth(token).multipart(form).send().await.expect("upload")
    }

    /// Uploads one file in `media` (and a description when given).
    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
        description: Option<&str>,
    ) -> reqwest::Response {
        let mut form = Form::new().part("media", file_part(name, mime, bytes));
        if let Some(d) = description {
            form = form.text("description", d.to_string());
        }
        self.upload_form(token, form).await
    }

    /// Uploads a small PNG that must be accepted; returns the media `data`.
    pub async fn upload_png(&self, token: &str) -> Value {
        let (status, v) = body(self.upload(token, "pixel.png", "image/png", png_bytes(), None).await).await;
        assert_eq!(status, 202, "{v}");
        v["data"].clone()
    }

    /// Every file below the storage root, partial uploads included.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        files_below(&self.storage_dir)
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.db).await.expect("count")
    }

    /// Asserts that a rejected upload left nothing behind: no row, no file.
    pub async fn assert_nothing_stored(&self) {
        assert_eq!(self.count("media").await, 0, "a media row was created");
        assert_eq!(self.count("analysis_runs").await, 0, "a run was created");
        assert_eq!(self.stored_files(), Vec::<PathBuf>::new(), "files were left in storage");
    }

    /// Ends a run the way a finished workflow would.
    pub async fn finish_run(&self, run_id: &str) {
        let id = Uuid::parse_str(run_id).expect("run id");
        drishtiksha_common::db::runs::finalize(
            &self.db,
            id,
            drishtiksha_common::db::runs::Finalization::Finish {
                error: Some("No compatible models available for IMAGE".into()),
            },
        )
        .await
        .expect("finalize")
        .expect("run was active");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.storage_dir);
    }
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// The status and JSON body of a response (a body that is not JSON fails, showing it).
pub async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, v)
}

/// Asserts the error envelope of §1.3: exactly `statusCode`, `success: false`, `message` and the
/// `errors` list.
pub fn assert_error(v: &Value, status: u16, message: &str, errors: &[&str]) {
    assert_eq!(v["statusCode"], status, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["errors"], json!(errors), "{v}");
    let mut fields = keys(v);
    fields.sort();
    assert_eq!(fields, ["errors", "message", "statusCode", "success"], "{v}");
}

pub fn file_part(name: &str, mime: &str, bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("mime")
}

/// A 1×1 PNG.
pub fn png_bytes() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
        0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff,
        0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}

/// Timestamps are RFC 3339 UTC with exactly three fractional digits.
pub fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert_eq!(s.len(), 24, "{s}");
    assert!(s.ends_with('Z') && s.as_bytes()[19] == b'.', "{s}");
}

pub fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

/// `len` bytes that start like an MP4 (an `ftyp` box): enough for the upload's content check.
pub fn mp4_like(len: usize) -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    bytes.resize(len.max(bytes.len()), 1);
    bytes
}
