//! An api served in-process on a free port, with its own database and its own Redis.

#![allow(dead_code)]

pub mod socket;

use std::collections::HashMap;
use std::net::SocketAddr;

use drishtiksha_common::config::ApiConfig;
use drishtiksha_testkit::{RedisServer, base_env, fresh_database};
use serde_json::{Value, json};
use sqlx::PgPool;

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PgPool,
    pub db_url: String,
    /// The private Redis of this app (peers share their primary's).
    pub redis: RedisServer,
    pub redis_url: String,
    pub http: reqwest::Client,
    pub storage_dir: std::path::PathBuf,
    /// The environment this api was configured with (peers reuse it).
    pub env: HashMap<String, String>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(HashMap::new()).await
    }

    pub async fn spawn_with(overrides: HashMap<&str, String>) -> Self {
        let (db_url, db) = fresh_database().await.expect("database");
        let redis = RedisServer::start().expect("redis-server");
        Self::spawn_on(db_url, db, redis, overrides).await
    }

    /// A second api process on the same database and Redis (a horizontally scaled peer).
    pub async fn spawn_peer(&self) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let mut env = self.env.clone();
        env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
        let config = ApiConfig::from_source(&env).expect("config");
        let state = drishtiksha_api::build_state(config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (addr, tokio::spawn(drishtiksha_api::serve(state, listener)))
    }

    pub async fn spawn_on(db_url: String, db: PgPool, redis: RedisServer, overrides: HashMap<&str, String>) -> Self {
        let redis_url = redis.url();
        let storage_dir = std::env::temp_dir().join(format!("drishtiksha-api-test-{}", uuid::Uuid::new_v4()));
        let mut env = base_env(&db_url, &redis.url());
        env.insert("LOCAL_STORAGE_PATH".into(), storage_dir.to_string_lossy().into_owned());
        // No Temporal server is needed by these tests; nothing listens here.
        env.insert("TEMPORAL_ADDRESS".into(), format!("127.0.0.1:{}", drishtiksha_testkit::free_port()));
        // `/metrics` is only served on its own address (see `metrics_url`).
        env.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", drishtiksha_testkit::free_port()));
        for (k, v) in overrides {
            env.insert(k.to_string(), v);
        }
        let config = ApiConfig::from_source(&env).expect("config");
        let state = drishtiksha_api::build_state(config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(drishtiksha_api::serve(state, listener));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { addr, db, db_url, redis, redis_url, http, storage_dir, env }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `/metrics` on the metrics address.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.env["METRICS_ADDR"])
    }

    /// The metrics text, once the metrics listener answers.
    pub async fn metrics(&self) -> String {
        let url = self.metrics_url();
        drishtiksha_testkit::eventually(std::time::Duration::from_secs(10), || async {
            self.http.get(&url).send().await.ok()?.text().await.ok()
        })
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

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.storage_dir);
    }
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v = r.json().await.expect("json body");
    (status, v)
}

/// Asserts the error envelope of §1.3.
pub fn assert_error(v: &Value, status: u16, message: &str) {
    assert_eq!(v["statusCode"], status, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert!(v["errors"].is_array(), "{v}");
}
