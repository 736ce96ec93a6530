//! The real `api` and `worker` binaries, started as processes with their output in log files, and
//! the requests the tests make of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drishtiksha_testkit::eventually;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

use super::PASSWORD;

/// The `api` binary of this package.
pub fn api_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_api"))
}

/// The `worker` binary, built next to the `api` binary by `cargo test --workspace`.
pub fn worker_binary() -> PathBuf {
    let path = api_binary().with_file_name("worker");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p drishtiksha-worker`", path.display());
    path
}

/// Starts `bin` with exactly `env` in `logs` (away from the checkout, so that no developer's `.env`
/// is read), its output appended to `<logs>/<name>.log`; killed when dropped.
pub fn spawn(bin: &Path, env: &HashMap<String, String>, logs: &Path, name: &str) -> Child {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{name}.log"))).expect("log file");
    Command::new(bin)
        .envs(env)
        .current_dir(logs)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// Waits until the api at `api` answers 200 on `path` (`/api/health`, `/api/ready`).
pub async fn until_answers(http: &reqwest::Client, api: SocketAddr, path: &str, logs: &Path) {
    eventually(Duration::from_secs(120), || async {
        let r = http.get(format!("http://{api}{path}")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("api {api} does not answer {path}; logs in {}", logs.display()));
}

/// Signs a new user up at the api at `api`; returns its token.
pub async fn signup(http: &reqwest::Client, api: SocketAddr) -> String {
    let email = format!("user-{}@example.com", Uuid::new_v4().simple());
    let r = http
        .post(format!("http://{api}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["data"]["token"].as_str().expect("token").to_string()
}

/// Uploads a PNG to the api at `api`; returns the status and the body.
pub async fn upload_png(http: &reqwest::Client, api: SocketAddr, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("face.png").mime_str("image/png").expect("mime");
    let r = http
        .post(format!("http://{api}/api/v1/media"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("media", part))
        .send()
        .await
        .expect("upload");
    super::body(r).await
}
