//! An api served in-process on a free port with its own database and storage directory, and,
//! when asked, a Temporal dev server, a worker and the ML stand-in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drishtiksha_common::config::ApiConfig;
use drishtiksha_testkit::{TemporalDevServer, base_env, eventually, free_port, fresh_database, redis_url};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Where the api's Temporal client points.
pub enum Temporal {
    /// A dev server of the test's own; workflows wait on a task queue nobody polls unless a
    /// worker is started.
    Dev,
    /// A port nothing listens on.
    Unreachable,
}

pub struct Options {
    pub temporal: Temporal,
    pub max_upload_bytes: Option<u64>,
    pub extra_env: HashMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Self { temporal: Temporal::Dev, max_upload_bytes: None, extra_env: HashMap::new() }
    }
}

pub struct TestApi {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: PgPool,
    pub storage_dir: PathBuf,
    pub env: HashMap<String, String>,
    pub temporal: Option<TemporalDevServer>,
}

impl TestApi {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn without_temporal() -> Self {
        Self::spawn_with(Options { temporal: Temporal::Unreachable, ..Options::default() }).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let (db_url, db) = fresh_database().await.expect("database");
        let storage_dir = std::env::temp_dir().join(format!("drishtiksha-media-test-{}", Uuid::new_v4()));
        let task_queue = format!("media-test-{}", Uuid::new_v4().simple());
        let temporal = match options.temporal {
            Temporal::Dev => Some(TemporalDevServer::start().expect("temporal dev server")),
            Temporal::Unreachable => None,
        };
        let mut env = base_env(&db_url, &redis_url());
        env.insert("LOCAL_STORAGE_PATH".into(), storage_dir.to_string_lossy().into_owned());
        env.insert("TEMPORAL_TASK_QUEUE".into(), task_queue);
        env.insert("PUBLIC_BASE_URL".into(), "http://files.example.test:3000".into());
        let address = match &temporal {
            Some(t) => t.address(),
            None => format!("127.0.0.1:{}", free_port()),
        };
        env.insert("TEMPORAL_ADDRESS".into(), address);
        env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
        if let Some(limit) = options.max_upload_bytes {
            env.insert("MAX_UPLOAD_BYTES".into(), limit.to_string());
        }
        env.extend(options.extra_env);
        let config = ApiConfig::from_source(&env).expect("config");
        let state = drishtiksha_api::build_state(config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(drishtiksha_api::serve(state, listener));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let api = Self { addr, http, db, storage_dir, env, temporal };
        if api.temporal.is_some() {
            // The dev server accepts connections before its namespace answers.
            eventually(Duration::from_secs(60), || async {
                let r = api.http.get(api.url("/api/ready")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await
            .expect("api ready with temporal");
        }
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signs a user up through the API; returns (user id, token).
    pub async fn signup(&self) -> (String, String) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let r = self
            .http
            .post(self.url("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": "correct-horse-battery", "firstName": "Ada", "lastName": "Lovelace"}))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), 201, "signup failed");
        let v: Value = r.json().await.expect("json");
        (
            v["data"]["user"]["id"].as_str().expect("id").to_string(),
            v["data"]["token"].as_str().expect("token").to_string(),
        )
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
        let (status, v) = json_of(self.upload(token, "pixel.png", "image/png", png_bytes(), None).await).await;
        assert_eq!(status, 202, "{v}");
        v["data"].clone()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        json_of(self.http.get(self.url(path)).bearer_auth(token).send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        json_of(self.http.post(self.url(path)).bearer_auth(token).send().await.expect("request")).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        json_of(self.http.patch(self.url(path)).bearer_auth(token).json(&body).send().await.expect("request")).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        json_of(self.http.delete(self.url(path)).bearer_auth(token).send().await.expect("request")).await
    }

    /// Every file below the storage root, partial uploads included.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage_dir, &mut out);
        out
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

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.storage_dir);
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

pub fn file_part(name: &str, mime: &str, bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("mime")
}

pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, v)
}

/// Asserts the error envelope of §1.3.
pub fn assert_error(v: &Value, status: u16, message: &str, errors: &[&str]) {
    assert_eq!(v["statusCode"], status, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["errors"], json!(errors), "{v}");
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
