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

/// The dev server's dynamic config (`temporal/dev-dynamic-config.txt`), as `key=value` strings.
pub fn dev_dynamic_config() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("temporal/dev-dynamic-config.txt")).unwrap_or_default();
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// Arguments every test dev server gets: the search attributes and the dynamic config.
pub fn dev_server_args() -> Vec<String> {
    let mut args: Vec<String> =
        SEARCH_ATTRIBUTES.iter().flat_map(|a| ["--search-attribute".to_string(), a.to_string()]).collect();
    for kv in dev_dynamic_config() {
        args.push("--dynamic-config-value".to_string());
        args.push(kv);
    }
    args
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
        // Tests sign many users up from one address, several apps on one Redis.
        ("SIGNUP_RATE_LIMIT_MAX", "1000000"),
        ("ML_CAPACITY", "8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Waits until something accepts connections on `port` of the loopback address.
pub async fn wait_for_port(port: u16, timeout: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not start on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    pub async fn start() -> anyhow::Result<Self> {
        let mut s = Self { port: free_port(), child: None };
        s.restart().await?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10), "redis-server").await
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

/// A Temporal dev server (the project's CLI) on a free port with the analysis workflow's search
/// attributes and dynamic config; in memory, or in a SQLite file that survives [`stop`] and
/// [`restart`] (for outage tests). Killed on drop.
///
/// A start counts once the server answers a namespace call (a visibility count on `default`), not
/// merely once its port accepts connections. A start that fails (the CLI exits, e.g. because its
/// port was taken meanwhile, or the server does not answer in time) is tried again, on a fresh port
/// unless the server must keep its port ([`restart`]).
///
/// [`stop`]: TemporalDevServer::stop
/// [`restart`]: TemporalDevServer::restart
pub struct TemporalDevServer {
    pub port: u16,
    db_file: Option<PathBuf>,
    log_file: PathBuf,
    child: Option<Child>,
}

/// How long one start of the dev server may take before it is tried again.
const TEMPORAL_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts of the dev server tried before giving up.
const TEMPORAL_START_ATTEMPTS: u32 = 3;

impl TemporalDevServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(None).await
    }

    /// A dev server whose state is kept in a file, so that it can be stopped and started again.
    pub async fn start_persistent() -> anyhow::Result<Self> {
        let file = std::env::temp_dir().join(format!("drishtiksha-temporal-test-{}.db", uuid::Uuid::new_v4().simple()));
        Self::launch(Some(file)).await
    }

    async fn launch(db_file: Option<PathBuf>) -> anyhow::Result<Self> {
        let log_file =
            std::env::temp_dir().join(format!("drishtiksha-temporal-test-{}.log", uuid::Uuid::new_v4().simple()));
        let mut server = Self { port: free_port(), db_file, log_file, child: None };
        server.spawn(true).await?;
        Ok(server)
    }

    /// Starts the CLI until a start succeeds; `fresh_port`: a failed start moves to another port.
    async fn spawn(&mut self, fresh_port: bool) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            let mut child = self.command()?.spawn()?;
            match self.serving(&mut child).await {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
                    let tail: String = log.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
                    if attempt >= TEMPORAL_START_ATTEMPTS {
                        anyhow::bail!("{e} (after {attempt} attempts); the CLI's log ends with:\n{tail}");
                    }
                    eprintln!("Temporal dev server start {attempt} failed, retrying: {e}\n{tail}");
                }
            }
            attempt += 1;
            if fresh_port {
                self.port = free_port();
            }
        }
    }

    fn command(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new(temporal_cli());
        cmd.args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--namespace", "default", "--log-level", "error"])
            .args(dev_server_args());
        if let Some(file) = &self.db_file {
            cmd.arg("--db-filename").arg(file);
        }
        let log = std::fs::File::create(&self.log_file)?;
        cmd.stdout(Stdio::null()).stderr(log);
        Ok(cmd)
    }

    /// Waits until `child` serves the namespace on this server's port; fails if it exits first or
    /// does not answer in time.
    async fn serving(&self, child: &mut Child) -> anyhow::Result<()> {
        let deadline = Instant::now() + TEMPORAL_START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the Temporal dev server on port {} exited ({status})", self.port);
            }
            if self.answers().await {
                // Answered by this child, not by a server that held the port before it.
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("the Temporal dev server on port {} exited ({status})", self.port);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the Temporal dev server did not answer on port {} within {TEMPORAL_START_TIMEOUT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server answers a visibility count on its namespace.
    async fn answers(&self) -> bool {
        let attempt = async {
            let client = self.client().await.ok()?;
            client.count_workflows("", temporalio_client::WorkflowCountOptions::default()).await.ok()
        };
        matches!(tokio::time::timeout(Duration::from_secs(5), attempt).await, Ok(Some(_)))
    }

    /// A client of the `default` namespace on this server.
    pub async fn client(&self) -> anyhow::Result<temporalio_client::Client> {
        let config = drishtiksha_common::config::TemporalConfig {
            address: temporalio_client::Url::parse(&format!("http://{}", self.address()))?,
            namespace: "default".to_string(),
            task_queue: drishtiksha_common::config::DEFAULT_TASK_QUEUE.to_string(),
            inference_task_queue: format!("{}-inference", drishtiksha_common::config::DEFAULT_TASK_QUEUE),
            api_key: None,
            tls: false,
        };
        drishtiksha_common::temporal::connect(&config, "drishtiksha-testkit").await
    }

    /// Kills the server (its state stays in the file of a persistent server).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn(false).await
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TemporalDevServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log_file);
        if let Some(file) = &self.db_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
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
    pub async fn start() -> anyhow::Result<Self> {
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
        wait_for_port(port, Duration::from_secs(60), "S3 server").await?;
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

/// A PostgreSQL server of its own (the machine's PostgreSQL binaries, a fresh cluster in a temp
/// directory, trust auth, fsync off) on a free port, so that a test can stop and start it; stopped
/// and removed on drop. Run as the `postgres` user when the tests run as root.
pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PostgresServer {
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL binaries under /usr/lib/postgresql"))?;
        let dir = std::env::temp_dir().join(format!("drishtiksha-pg-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let server = Self { port: free_port(), dir, bin };
        if is_root() {
            let status = Command::new("chown").arg("postgres:postgres").arg(&server.dir).status()?;
            anyhow::ensure!(status.success(), "chown of the cluster directory failed");
        }
        let data = server.dir.join("data");
        server.run(
            &server.bin.join("initdb"),
            &["-D", &data.to_string_lossy(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )?;
        server.resume()?;
        Ok(server)
    }

    fn run(&self, program: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        anyhow::ensure!(out.status.success(), "{}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.run(&self.bin.join("pg_ctl"), &all)
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        self.pg_ctl(&["-w", "-t", "60", "-l", &log, "-o", &options, "start"])
    }

    /// Stops the server at once, as a crash would (open connections break).
    pub fn halt(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"])
    }

    /// A migrated database on this server; its URL.
    pub async fn database(&self, name: &str) -> anyhow::Result<String> {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("postgres://postgres@127.0.0.1:{}/postgres", self.port))
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
        admin.close().await;
        let url = format!("postgres://postgres@127.0.0.1:{}/{name}", self.port);
        let pool = PgPoolOptions::new().max_connections(1).connect(&url).await?;
        drishtiksha_common::db::migrate(&pool).await?;
        pool.close().await;
        Ok(url)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}
