//! Test support shared by the integration tests of every crate. Everything here talks to real
//! services: the machine's Postgres, private `redis-server` processes, the project's Temporal CLI.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Server-level connection used to create per-test databases.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A new, migrated database of its own for one test. Returns its URL and a pool.
pub async fn fresh_database() -> anyhow::Result<(String, PgPool)> {
    let admin_url = admin_database_url();
    let name = format!("drishtiksha_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("bad admin URL"))?;
    let url = format!("{base}/{name}");
    let pool = PgPoolOptions::new().max_connections(8).connect(&url).await?;
    drishtiksha_common::db::migrate(&pool).await?;
    Ok((url, pool))
}

/// The workspace root (where `.venv/` and `migrations/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// The `temporal` CLI installed by the set-up (`TEMPORAL_CLI_PATH` overrides).
pub fn temporal_cli() -> PathBuf {
    std::env::var("TEMPORAL_CLI_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/temporal"))
}

/// The analysis workflow's search attributes, as the dev server's `--search-attribute` values.
pub const SEARCH_ATTRIBUTES: [&str; 4] = ["MediaId=Keyword", "UserId=Keyword", "MediaType=Keyword", "RunNumber=Int"];

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Variables every process of the system needs, pointing at test services.
pub fn base_env(database_url: &str, redis_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("JWT_SECRET", "test-secret-0123456789abcdef0123456789"),
        ("SERVER_URL", "http://127.0.0.1:9"),
        ("SERVER_API_KEY", "test-ml-key"),
        // Tests sign many users up from one address, several apps on one Redis.
        ("SIGNUP_RATE_LIMIT_MAX", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Waits until something accepts connections on `port` of the loopback address.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A small real PNG made by ffmpeg, with `marker` appended so that every call's file (and so its
/// content hash and simulated verdict) differs.
pub fn png_with_marker(marker: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("drishtiksha-png-{}.png", uuid::Uuid::new_v4()));
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"])
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg could not make a PNG");
    let mut bytes = std::fs::read(&path).expect("png");
    let _ = std::fs::remove_file(path);
    bytes.extend_from_slice(marker.as_bytes());
    bytes
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A private `redis-server` on a free port, stopped on drop; can be stopped and restarted on the
/// same port to test outages.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<Self> {
        let mut s = Self { port: free_port(), child: None };
        s.restart()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10), "redis-server")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Temporal dev server (the project's CLI) on free ports, in memory, with the analysis
/// workflow's search attributes; killed on drop.
pub struct TemporalDevServer {
    pub port: u16,
    child: Child,
}

impl TemporalDevServer {
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let mut cmd = Command::new(temporal_cli());
        cmd.args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", &port.to_string()]).args([
            "--namespace",
            "default",
            "--log-level",
            "error",
        ]);
        for sa in SEARCH_ATTRIBUTES {
            cmd.args(["--search-attribute", sa]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let server = Self { port, child };
        wait_for_port(port, Duration::from_secs(30), "temporal dev server")?;
        Ok(server)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TemporalDevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server (moto's server mode, installed by the set-up into `.venv`) on a free
/// port, keeping objects in memory; killed on drop.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

/// Keys the test S3 server accepts (it does not check them, but requests must be signed).
pub const S3_TEST_KEY_ID: &str = "drishtiksha-test";
pub const S3_TEST_SECRET: &str = "drishtiksha-test-secret";

impl S3Server {
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let bin = std::env::var("MOTO_SERVER_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".venv/bin/moto_server"));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {} (run scripts/setup.sh): {e}", bin.display()))?;
        let server = Self { port, child };
        wait_for_port(port, Duration::from_secs(60), "S3 server")?;
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Variables that put a process's media into `bucket` on this server.
    pub fn env(&self, bucket: &str) -> HashMap<String, String> {
        let endpoint = self.endpoint();
        [
            ("STORAGE_PROVIDER", "s3"),
            ("S3_BUCKET", bucket),
            ("S3_REGION", "us-east-1"),
            ("S3_ENDPOINT", endpoint.as_str()),
            ("S3_ACCESS_KEY_ID", S3_TEST_KEY_ID),
            ("S3_SECRET_ACCESS_KEY", S3_TEST_SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A store on this server, as a process configured with [`S3Server::env`] opens it.
    pub async fn storage(&self, bucket: &str) -> anyhow::Result<drishtiksha_common::storage::Storage> {
        let mut env = base_env("postgres://unused@127.0.0.1/unused", &redis_url());
        env.extend(self.env(bucket));
        let cfg = drishtiksha_common::config::CommonConfig::from_source(&env)?;
        drishtiksha_common::storage::Storage::from_config(&cfg.storage).await
    }
}

/// Object keys in an S3 store's bucket.
pub async fn s3_object_keys(s3: &drishtiksha_common::storage::S3Storage) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3.client().list_objects_v2().bucket(s3.bucket()).set_continuation_token(token.take()).send().await?;
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    keys.sort();
    Ok(keys)
}

/// Multipart uploads an S3 store's bucket still holds (finished or aborted uploads hold none).
pub async fn s3_pending_multipart(s3: &drishtiksha_common::storage::S3Storage) -> anyhow::Result<usize> {
    let out = s3.client().list_multipart_uploads().bucket(s3.bucket()).send().await?;
    Ok(out.uploads().len())
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bucket name of its own for one test.
pub fn unique_bucket() -> String {
    format!("drishtiksha-test-{}", uuid::Uuid::new_v4().simple())
}
