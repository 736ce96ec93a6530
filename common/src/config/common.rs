//! The settings every process shares: database, Redis, Temporal, storage, the ML server, logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{ConfigError, DEFAULT_PROGRESS_CHANNEL, DEFAULT_TASK_QUEUE, Secret, Source, Vars, err};

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
