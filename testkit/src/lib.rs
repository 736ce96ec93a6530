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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("redis-server did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
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
        for sa in ["MediaId=Keyword", "UserId=Keyword", "MediaType=Keyword", "RunNumber=Int"] {
            cmd.args(["--search-attribute", sa]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("temporal dev server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
