//! Configuration from the environment (12-factor), parsed into real types once at start-up.
//!
//! A missing or malformed variable is reported as one line naming the variable and the expected
//! form; the binaries exit with status 2 on it. Secret values are never echoed.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// Task queue of the analysis workflow and its activities.
pub const DEFAULT_TASK_QUEUE: &str = "media-analysis";
pub const DEFAULT_PROGRESS_CHANNEL: &str = "media-progress-events";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.var, self.expected)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &'static str, expected: impl Into<String>) -> ConfigError {
    ConfigError { var, expected: expected.into() }
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// Loads `.env` from the working directory when present (never overriding the real environment).
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// A value that must not appear in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

struct Vars<'a>(&'a dyn Source);

impl Vars<'_> {
    fn opt(&self, var: &'static str) -> Option<String> {
        self.0.get(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str, expected: &str) -> Result<String, ConfigError> {
        self.opt(var).ok_or_else(|| err(var, format!("is required ({expected})")))
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.opt(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| err(var, format!("must be {expected}, got {v:?}"))),
        }
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.opt(var) {
            None => Ok(default),
            Some(v) => parse_duration(&v).ok_or_else(|| {
                err(var, format!("must be a duration: <n> seconds or <n>s|m|h|d (e.g. 90, 15m, 1d), got {v:?}"))
            }),
        }
    }

    fn bool(&self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.opt(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(Some(true)),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(err(var, format!("must be true or false, got {v:?}"))),
        }
    }

    fn url(&self, var: &'static str, value: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
        let expected = format!("must be a URL with scheme {}", schemes.join(" or "));
        let url = Url::parse(value).map_err(|_| err(var, expected.clone()))?;
        if !schemes.contains(&url.scheme()) || !url.has_host() {
            return Err(err(var, expected));
        }
        Ok(url)
    }
}

/// `<n>` (seconds) or `<n>s|m|h|d`; also `<n>ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Normalises an origin (`scheme://host[:port]`, trailing slash ignored).
pub fn parse_origin(s: &str) -> Option<String> {
    let url = Url::parse(s.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return None;
    }
    if !(url.path() == "/" || url.path().is_empty()) || url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct TemporalConfig {
    /// `http://host:port` (or `https://…`).
    pub address: Url,
    pub namespace: String,
    /// The workflows and their short steps (`TEMPORAL_TASK_QUEUE`).
    pub task_queue: String,
    /// The model calls (`TEMPORAL_INFERENCE_TASK_QUEUE`, default `<task queue>-inference`): served
    /// only by inference workers, whose activity slots are their ML server's capacity.
    pub inference_task_queue: String,
    /// `TEMPORAL_API_KEY` (Temporal Cloud); implies TLS.
    pub api_key: Option<Secret>,
    /// `TEMPORAL_TLS=true`, an `https://` address, or an API key.
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub enum StorageConfig {
    Local { root: PathBuf },
    S3(Box<S3Config>),
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<Url>,
    pub public_base_url: Option<Url>,
    pub presign_ttl: Duration,
    /// Where browsers reach the store, when that differs from `endpoint` (e.g. a reverse proxy
    /// in front of MinIO): presigned URLs are signed for this address. `S3_PRESIGN_ENDPOINT`.
    pub presign_endpoint: Option<Url>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), which MinIO, Ceph and most other
    /// S3-compatible stores need; `S3_FORCE_PATH_STYLE`, default on when `S3_ENDPOINT` is set.
    pub force_path_style: bool,
    /// `S3_ACCESS_KEY_ID` + `S3_SECRET_ACCESS_KEY`, when the store's keys are not the process's
    /// AWS credentials; otherwise the AWS SDK's usual sources (`AWS_ACCESS_KEY_ID`, profiles,
    /// web identity, instance roles).
    pub static_credentials: Option<(String, Secret)>,
}

#[derive(Debug, Clone)]
pub struct MlConfig {
    pub server_url: Url,
    pub api_key: Secret,
    pub retry_initial_interval: Duration,
    pub retry_max_attempts: u32,
    pub analyze_timeout: Duration,
    pub stats_timeout: Duration,
    /// How long an ML server that refuses connections or answers 503 (restarting, loading its
    /// models) is waited for before a model or a discovery fails (`ML_UNAVAILABLE_WAIT`).
    pub unavailable_wait: Duration,
    /// Heartbeat timeout of a model call: how soon a lost inference worker is noticed
    /// (`ML_HEARTBEAT_TIMEOUT`).
    pub heartbeat_timeout: Duration,
}

/// Settings both binaries share.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub database_url: Secret,
    /// Connections per process (`DATABASE_POOL_SIZE`); default 4 per core, which measured best
    /// for the api on small machines (more connections only add contention).
    pub database_pool_size: u32,
    pub redis_url: Secret,
    pub temporal: TemporalConfig,
    pub storage: StorageConfig,
    pub ml: MlConfig,
    pub progress_channel: String,
    pub public_base_url: Url,
    pub log_format: LogFormat,
    /// Where `/metrics` is served separately; `None` serves it on the main listener (api) or not
    /// at all (worker).
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub common: CommonConfig,
    pub port: u16,
    pub jwt_secret: Secret,
    pub jwt_expires_in: Duration,
    pub frontend_origins: Vec<String>,
    pub cookie_secure: bool,
    pub trust_proxy: usize,
    pub max_upload_bytes: u64,
    /// Partial files of interrupted local uploads older than this are removed
    /// (`STALE_UPLOAD_AGE`; an upload in progress on another api is younger).
    pub stale_upload_age: Duration,
    pub api_rate_limit_max: u64,
    pub api_rate_limit_window: Duration,
    /// Signups (that pass validation) per IP and hour.
    pub signup_rate_limit_max: u64,
    /// Longest wait for a complete request head, also between keep-alive requests.
    pub http_header_timeout: Duration,
    /// Longest gap between two chunks of a request body.
    pub http_body_timeout: Duration,
    /// Open connections per process.
    pub http_max_connections: usize,
    /// Progress events of one (media, model) reach a socket at most once per this window, the
    /// latest winning (`SOCKET_PROGRESS_WINDOW`, 150 ms; `0` relays every one).
    pub socket_progress_window: Duration,
    /// Packets socketioxide buffers per socket (`SOCKET_BUFFER`, 1 024); beyond it events wait in
    /// the socket's outbox.
    pub socket_buffer: usize,
}

/// What a worker process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRole {
    /// Workflows and their short steps, on `TEMPORAL_TASK_QUEUE`.
    Orchestration,
    /// Model calls to this process's ML server, on `TEMPORAL_INFERENCE_TASK_QUEUE`, at most
    /// `ML_CAPACITY` at once.
    Inference,
    /// Both (one process for a one-machine deployment).
    All,
}

impl WorkerRole {
    pub fn orchestrates(self) -> bool {
        matches!(self, Self::Orchestration | Self::All)
    }

    pub fn infers(self) -> bool {
        matches!(self, Self::Inference | Self::All)
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    pub role: WorkerRole,
    /// Concurrent short steps (database writes, finalization) of an orchestration worker.
    pub max_concurrent_activities: usize,
    /// Concurrent inferences the ML server of this inference worker can run (`ML_CAPACITY`): the
    /// inference worker's activity slots. Run one inference worker per ML server.
    pub ml_capacity: usize,
    /// How long in-flight model calls may finish after SIGTERM (`WORKER_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
    pub reconcile_interval: Duration,
    /// Runs updated more recently than this are left alone by the reconciler.
    pub reconcile_stale_after: Duration,
}

/// S3 bucket naming rules (the subset every S3-compatible store accepts).
fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl CommonConfig {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(src);
        let database_url = v.required("DATABASE_URL", "postgres://user:password@host:5432/database")?;
        v.url("DATABASE_URL", &database_url, &["postgres", "postgresql"])?;
        let redis_url = v.required("REDIS_URL", "redis://host:6379 or rediss://…")?;
        v.url("REDIS_URL", &redis_url, &["redis", "rediss"])?;

        let address = v.opt("TEMPORAL_ADDRESS").unwrap_or_else(|| "localhost:7233".to_string());
        let address_url = if address.contains("://") { address.clone() } else { format!("http://{address}") };
        let address = v.url("TEMPORAL_ADDRESS", &address_url, &["http", "https"]).map_err(|_| {
            err("TEMPORAL_ADDRESS", format!("must be host:port (e.g. localhost:7233), got {address:?}"))
        })?;
        let task_queue = v.opt("TEMPORAL_TASK_QUEUE").unwrap_or_else(|| DEFAULT_TASK_QUEUE.to_string());
        let inference_task_queue =
            v.opt("TEMPORAL_INFERENCE_TASK_QUEUE").unwrap_or_else(|| format!("{task_queue}-inference"));
        if inference_task_queue == task_queue {
            return Err(err("TEMPORAL_INFERENCE_TASK_QUEUE", "must differ from TEMPORAL_TASK_QUEUE"));
        }
        let temporal = TemporalConfig {
            address,
            namespace: v.opt("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".to_string()),
            task_queue,
            inference_task_queue,
            api_key: v.opt("TEMPORAL_API_KEY").map(Secret::new),
            tls: false,
        };
        let temporal = TemporalConfig {
            tls: v.bool("TEMPORAL_TLS")?.unwrap_or(false)
                || temporal.address.scheme() == "https"
                || temporal.api_key.is_some(),
            ..temporal
        };

        let storage = match v.opt("STORAGE_PROVIDER").as_deref().unwrap_or("local") {
            "local" => StorageConfig::Local {
                root: PathBuf::from(v.opt("LOCAL_STORAGE_PATH").unwrap_or_else(|| "./data/media".to_string())),
            },
            "s3" => {
                let endpoint = match v.opt("S3_ENDPOINT") {
                    Some(e) => Some(v.url("S3_ENDPOINT", &e, &["http", "https"])?),
                    None => None,
                };
                let public_base_url = match v.opt("S3_PUBLIC_BASE_URL") {
                    Some(e) => Some(v.url("S3_PUBLIC_BASE_URL", &e, &["http", "https"])?),
                    None => None,
                };
                let bucket = v.required("S3_BUCKET", "a bucket name, when STORAGE_PROVIDER=s3")?;
                if !valid_bucket_name(&bucket) {
                    return Err(err(
                        "S3_BUCKET",
                        format!("must be 3-63 lower-case letters, digits, '.' or '-', got {bucket:?}"),
                    ));
                }
                let presign_ttl = v.duration("S3_PRESIGN_TTL", Duration::from_secs(86_400))?;
                // SigV4 presigned URLs are valid for at most seven days.
                if presign_ttl.is_zero() || presign_ttl > Duration::from_secs(7 * 86_400) {
                    return Err(err("S3_PRESIGN_TTL", "must be between 1s and 7d"));
                }
                let presign_endpoint = match v.opt("S3_PRESIGN_ENDPOINT") {
                    Some(e) => Some(v.url("S3_PRESIGN_ENDPOINT", &e, &["http", "https"])?),
                    None => None,
                };
                let force_path_style = v.bool("S3_FORCE_PATH_STYLE")?.unwrap_or(endpoint.is_some());
                let static_credentials = match (v.opt("S3_ACCESS_KEY_ID"), v.opt("S3_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(err("S3_SECRET_ACCESS_KEY", "must be set together with S3_ACCESS_KEY_ID"));
                    }
                    (None, Some(_)) => {
                        return Err(err("S3_ACCESS_KEY_ID", "must be set together with S3_SECRET_ACCESS_KEY"));
                    }
                };
                StorageConfig::S3(Box::new(S3Config {
                    bucket,
                    region: v.opt("S3_REGION").unwrap_or_else(|| "us-east-1".to_string()),
                    endpoint,
                    public_base_url,
                    presign_ttl,
                    presign_endpoint,
                    force_path_style,
                    static_credentials,
                }))
            }
            other => return Err(err("STORAGE_PROVIDER", format!("must be local or s3, got {other:?}"))),
        };

        let server_url = v.required("SERVER_URL", "the ML server's base URL, e.g. http://localhost:8000")?;
        let server_url = v.url("SERVER_URL", &server_url, &["http", "https"])?;
        let ml = MlConfig {
            server_url,
            api_key: Secret::new(v.required("SERVER_API_KEY", "the ML server's X-API-Key")?),
            retry_initial_interval: v.duration("ML_RETRY_INITIAL_INTERVAL_S", Duration::from_secs(5))?,
            retry_max_attempts: v.parse("ML_RETRY_MAX_ATTEMPTS", 3u32, "a positive integer")?,
            analyze_timeout: v.duration("ML_ANALYZE_TIMEOUT", Duration::from_secs(20 * 60))?,
            stats_timeout: v.duration("ML_STATS_TIMEOUT", Duration::from_secs(20))?,
            unavailable_wait: v.duration("ML_UNAVAILABLE_WAIT", Duration::from_secs(30 * 60))?,
            heartbeat_timeout: v.duration("ML_HEARTBEAT_TIMEOUT", Duration::from_secs(30))?,
        };
        if ml.heartbeat_timeout < Duration::from_secs(2) {
            return Err(err("ML_HEARTBEAT_TIMEOUT", "must be at least 2s"));
        }
        if ml.retry_max_attempts == 0 {
            return Err(err("ML_RETRY_MAX_ATTEMPTS", "must be a positive integer, got \"0\""));
        }

        let public_base_url = v.opt("PUBLIC_BASE_URL").unwrap_or_else(|| "http://localhost:3000".to_string());
        let public_base_url = v.url("PUBLIC_BASE_URL", &public_base_url, &["http", "https"])?;
        let log_format = match v.opt("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(err("LOG_FORMAT", format!("must be text or json, got {other:?}"))),
        };
        let metrics_addr = match v.opt("METRICS_ADDR") {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| err("METRICS_ADDR", format!("must be ip:port, got {a:?}")))?),
        };

        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2);
        let database_pool_size = v.parse("DATABASE_POOL_SIZE", (4 * cores).clamp(4, 32), "a positive integer")?;
        if database_pool_size == 0 {
            return Err(err("DATABASE_POOL_SIZE", "must be a positive integer, got \"0\""));
        }
        Ok(Self {
            database_url: Secret::new(database_url),
            database_pool_size,
            redis_url: Secret::new(redis_url),
            temporal,
            storage,
            ml,
            progress_channel: v
                .opt("MEDIA_PROGRESS_CHANNEL_NAME")
                .unwrap_or_else(|| DEFAULT_PROGRESS_CHANNEL.to_string()),
            public_base_url,
            log_format,
            metrics_addr,
        })
    }
}

/// The placeholder of `.env.example`.
const SAMPLE_JWT_SECRET: &str = "change-me-to-a-random-string-of-at-least-32-bytes";

/// Why a JWT secret of the right length is still unfit: the sample value, or too little entropy
/// (estimated from its byte frequencies: a repeated character or a short repeated pattern). A hex
/// or base64 secret from a random generator is far above the bar.
fn weak_jwt_secret(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    if secret == SAMPLE_JWT_SECRET || lower.contains("change-me") || lower.contains("changeme") {
        return Some("is the sample value of .env.example");
    }
    let mut counts = [0usize; 256];
    for b in secret.bytes() {
        counts[b as usize] += 1;
    }
    let n = secret.len() as f64;
    let bits: f64 = counts.iter().filter(|c| **c > 0).map(|&c| -(c as f64 / n).log2() * c as f64).sum();
    let distinct = counts.iter().filter(|c| **c > 0).count();
    (distinct < 8 || bits < 96.0).then_some("is too predictable (too few distinct characters)")
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(src);
        let port = v.parse("PORT", 3000u16, "a port number (1-65535)")?;
        let jwt_secret = v.required("JWT_SECRET", "a random string of at least 32 bytes")?;
        if jwt_secret.len() < 32 {
            return Err(err("JWT_SECRET", format!("must be at least 32 bytes long, got {} bytes", jwt_secret.len())));
        }
        if let Some(reason) = weak_jwt_secret(&jwt_secret) {
            return Err(err("JWT_SECRET", format!("{reason}; generate one, e.g. with `openssl rand -hex 32`")));
        }
        let jwt_expires_in = v.duration("JWT_EXPIRES_IN", Duration::from_secs(86_400))?;
        if jwt_expires_in.is_zero() {
            return Err(err("JWT_EXPIRES_IN", "must be a positive duration"));
        }
        let origins =
            v.opt("FRONTEND_URL").unwrap_or_else(|| "http://localhost:5173,http://127.0.0.1:5173".to_string());
        let mut frontend_origins = Vec::new();
        for o in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let parsed = parse_origin(o).ok_or_else(|| {
                err(
                    "FRONTEND_URL",
                    format!("must be a comma-separated list of origins (scheme://host[:port]), got {o:?}"),
                )
            })?;
            frontend_origins.push(parsed);
        }
        let common = CommonConfig::from_source(src)?;
        let cookie_secure = v.bool("COOKIE_SECURE")?.unwrap_or(common.public_base_url.scheme() == "https");
        let max_upload_bytes = v.parse("MAX_UPLOAD_BYTES", 157_286_400u64, "a positive number of bytes")?;
        if max_upload_bytes == 0 {
            return Err(err("MAX_UPLOAD_BYTES", "must be a positive number of bytes"));
        }
        let api_rate_limit_max = v.parse("API_RATE_LIMIT_MAX", 20_000u64, "a positive integer")?;
        let signup_rate_limit_max = v.parse("SIGNUP_RATE_LIMIT_MAX", 20u64, "a number of signups per hour and IP")?;
        let http_header_timeout = v.duration("HTTP_HEADER_TIMEOUT", Duration::from_secs(30))?;
        let http_body_timeout = v.duration("HTTP_BODY_TIMEOUT", Duration::from_secs(30))?;
        if http_header_timeout.is_zero() || http_body_timeout.is_zero() {
            return Err(err("HTTP_HEADER_TIMEOUT", "and HTTP_BODY_TIMEOUT must be positive durations"));
        }
        let http_max_connections = v.parse("HTTP_MAX_CONNECTIONS", 10_000usize, "a positive number of connections")?;
        if http_max_connections == 0 {
            return Err(err("HTTP_MAX_CONNECTIONS", "must be a positive number of connections"));
        }
        let window = v.parse("API_RATE_LIMIT_WINDOW_S", 60u64, "a positive number of seconds")?;
        if window == 0 || api_rate_limit_max == 0 {
            return Err(err("API_RATE_LIMIT_WINDOW_S", "and API_RATE_LIMIT_MAX must be positive"));
        }
        let socket_buffer = v.parse("SOCKET_BUFFER", 1024usize, "a number of packets (at least 16)")?;
        if socket_buffer < 16 {
            return Err(err("SOCKET_BUFFER", "must be at least 16 packets"));
        }
        Ok(Self {
            common,
            port,
            jwt_secret: Secret::new(jwt_secret),
            jwt_expires_in,
            frontend_origins,
            cookie_secure,
            trust_proxy: v.parse("TRUST_PROXY", 0usize, "a number of trusted proxy hops (0, 1, 2, …)")?,
            max_upload_bytes,
            stale_upload_age: v.duration("STALE_UPLOAD_AGE", Duration::from_secs(3600))?,
            api_rate_limit_max,
            api_rate_limit_window: Duration::from_secs(window),
            signup_rate_limit_max,
            http_header_timeout,
            http_body_timeout,
            http_max_connections,
            socket_progress_window: v.duration("SOCKET_PROGRESS_WINDOW", Duration::from_millis(150))?,
            socket_buffer,
        })
    }
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(src);
        let role = match v.opt("WORKER_ROLE").as_deref() {
            None | Some("all") => WorkerRole::All,
            Some("orchestration") => WorkerRole::Orchestration,
            Some("inference") => WorkerRole::Inference,
            Some(other) => {
                return Err(err("WORKER_ROLE", format!("must be all, orchestration or inference, got {other:?}")));
            }
        };
        let max_concurrent_activities = v.parse("WORKER_MAX_CONCURRENT_ACTIVITIES", 100usize, "a positive integer")?;
        let ml_capacity = v.parse("ML_CAPACITY", 1usize, "a positive number of concurrent inferences")?;
        if ml_capacity == 0 || max_concurrent_activities == 0 {
            return Err(err("ML_CAPACITY", "and WORKER_MAX_CONCURRENT_ACTIVITIES must be positive"));
        }
        Ok(Self {
            common: CommonConfig::from_source(src)?,
            role,
            max_concurrent_activities,
            ml_capacity,
            shutdown_grace: v.duration("WORKER_SHUTDOWN_GRACE", Duration::from_secs(60))?,
            reconcile_interval: v.duration("RECONCILE_INTERVAL", Duration::from_secs(60))?,
            reconcile_stale_after: v.duration("RECONCILE_STALE_AFTER", Duration::from_secs(60))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("DATABASE_URL", "postgres://root@127.0.0.1:5432/drishtiksha"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SERVER_URL", "http://127.0.0.1:8000"),
            ("SERVER_API_KEY", "key"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(k: &str, v: Option<&str>) -> HashMap<String, String> {
        let mut m = base();
        match v {
            Some(v) => m.insert(k.to_string(), v.to_string()),
            None => m.remove(k),
        };
        m
    }

    #[test]
    fn defaults_apply() {
        let c = ApiConfig::from_source(&base()).expect("valid");
        assert_eq!(c.port, 3000);
        assert_eq!(c.jwt_expires_in, Duration::from_secs(86_400));
        assert_eq!(c.frontend_origins, vec!["http://localhost:5173", "http://127.0.0.1:5173"]);
        assert!(!c.cookie_secure);
        assert_eq!(c.max_upload_bytes, 157_286_400);
        assert_eq!(c.common.temporal.address.as_str(), "http://localhost:7233/");
        assert_eq!(c.common.temporal.namespace, "default");
        assert_eq!(c.common.progress_channel, "media-progress-events");
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let e = ApiConfig::from_source(&with("DATABASE_URL", None)).expect_err("must fail");
        assert_eq!(e.var, "DATABASE_URL");
    }

    #[test]
    fn sample_and_low_entropy_jwt_secrets_are_refused() {
        for weak in [
            SAMPLE_JWT_SECRET,
            "please-changeme-0123456789abcdefghijklmnop",
            &"a".repeat(64),
            &"ab".repeat(32),
            "passwordpasswordpasswordpassword",
        ] {
            let e = ApiConfig::from_source(&with("JWT_SECRET", Some(weak))).expect_err(weak);
            assert_eq!(e.var, "JWT_SECRET");
            assert!(!e.to_string().contains(weak), "{e}");
        }
        for strong in [
            "0123456789abcdef0123456789abcdef",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "q0O3l1Yw5Zr8hK2pT6vX9bN4mC7sD1fG",
        ] {
            assert!(ApiConfig::from_source(&with("JWT_SECRET", Some(strong))).is_ok(), "{strong}");
        }
    }

    #[test]
    fn short_jwt_secret_is_refused_without_echoing_it() {
        let e = ApiConfig::from_source(&with("JWT_SECRET", Some("0123456789"))).expect_err("must fail");
        assert_eq!(e.var, "JWT_SECRET");
        assert!(!e.to_string().contains("0123456789"));
    }

    #[test]
    fn socket_delivery_settings_default_and_parse() {
        let c = ApiConfig::from_source(&base()).expect("valid");
        assert_eq!(c.socket_progress_window, Duration::from_millis(150));
        assert_eq!(c.socket_buffer, 1024);
        let c = ApiConfig::from_source(&with("SOCKET_PROGRESS_WINDOW", Some("0"))).expect("valid");
        assert_eq!(c.socket_progress_window, Duration::ZERO);
        let e = ApiConfig::from_source(&with("SOCKET_BUFFER", Some("8"))).expect_err("must fail");
        assert_eq!(e.var, "SOCKET_BUFFER");
    }

    #[test]
    fn non_numeric_port_is_refused() {
        let e = ApiConfig::from_source(&with("PORT", Some("abc"))).expect_err("must fail");
        assert_eq!(e.var, "PORT");
    }

    #[test]
    fn frontend_url_must_be_origins() {
        let e = ApiConfig::from_source(&with("FRONTEND_URL", Some("not a url"))).expect_err("must fail");
        assert_eq!(e.var, "FRONTEND_URL");
        let c = ApiConfig::from_source(&with("FRONTEND_URL", Some("https://app.example.com/, http://a:8080")))
            .expect("valid");
        assert_eq!(c.frontend_origins, vec!["https://app.example.com", "http://a:8080"]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn https_base_url_makes_cookies_secure() {
        let c = ApiConfig::from_source(&with("PUBLIC_BASE_URL", Some("https://api.example.com"))).expect("valid");
        assert!(c.cookie_secure);
    }

    fn s3(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m = with("STORAGE_PROVIDER", Some("s3"));
        m.insert("S3_BUCKET".into(), "drishtiksha-media".into());
        for (k, v) in extra {
            m.insert((*k).into(), (*v).into());
        }
        m
    }

    #[test]
    fn s3_settings_parse_with_their_defaults() {
        let c = CommonConfig::from_source(&s3(&[])).expect("valid");
        let StorageConfig::S3(s) = c.storage else { panic!("s3 expected") };
        assert_eq!((s.bucket.as_str(), s.region.as_str()), ("drishtiksha-media", "us-east-1"));
        assert_eq!(s.presign_ttl, Duration::from_secs(86_400));
        assert!(!s.force_path_style, "AWS itself uses virtual-hosted style");

        let c = CommonConfig::from_source(&s3(&[("S3_ENDPOINT", "http://127.0.0.1:9000"), ("S3_PRESIGN_TTL", "15m")]))
            .expect("valid");
        let StorageConfig::S3(s) = c.storage else { panic!("s3 expected") };
        assert!(s.force_path_style, "custom endpoints default to path-style");
        assert_eq!(s.presign_ttl, Duration::from_secs(900));
        let c =
            CommonConfig::from_source(&s3(&[("S3_ENDPOINT", "https://r2.example.com"), ("S3_FORCE_PATH_STYLE", "no")]))
                .expect("valid");
        let StorageConfig::S3(s) = c.storage else { panic!("s3 expected") };
        assert!(!s.force_path_style);
    }

    #[test]
    fn bad_s3_settings_name_the_variable() {
        let mut m = s3(&[]);
        m.remove("S3_BUCKET");
        assert_eq!(CommonConfig::from_source(&m).expect_err("no bucket").var, "S3_BUCKET");
        for (var, value) in [
            ("S3_BUCKET", "Bad_Bucket"),
            ("S3_BUCKET", "ab"),
            ("S3_ENDPOINT", "minio:9000"),
            ("S3_PUBLIC_BASE_URL", "ftp://cdn.example.com"),
            ("S3_PRESIGN_ENDPOINT", "localhost:3000"),
            ("S3_PRESIGN_TTL", "8d"),
            ("S3_PRESIGN_TTL", "0"),
            ("S3_FORCE_PATH_STYLE", "maybe"),
            ("STORAGE_PROVIDER", "gcs"),
        ] {
            let e = CommonConfig::from_source(&s3(&[(var, value)])).expect_err(value);
            assert_eq!(e.var, var, "{var}={value}");
        }
        // Half a key pair names the missing half.
        let e = CommonConfig::from_source(&s3(&[("S3_ACCESS_KEY_ID", "id")])).expect_err("half");
        assert_eq!(e.var, "S3_SECRET_ACCESS_KEY");
        let e = CommonConfig::from_source(&s3(&[("S3_SECRET_ACCESS_KEY", "secret")])).expect_err("half");
        assert_eq!(e.var, "S3_ACCESS_KEY_ID");
    }

    #[test]
    fn a_temporal_api_key_implies_tls() {
        let c = CommonConfig::from_source(&with("TEMPORAL_API_KEY", Some("cloud-key"))).expect("valid");
        assert!(c.temporal.tls);
        assert!(!format!("{:?}", c.temporal).contains("cloud-key"));
        let c = CommonConfig::from_source(&with("TEMPORAL_TLS", Some("true"))).expect("valid");
        assert!(c.temporal.tls && c.temporal.api_key.is_none());
        assert!(!CommonConfig::from_source(&base()).expect("valid").temporal.tls);
    }

    #[test]
    fn worker_does_not_need_the_jwt_secret() {
        assert!(WorkerConfig::from_source(&with("JWT_SECRET", None)).is_ok());
    }
}
