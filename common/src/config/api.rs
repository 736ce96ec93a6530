//! The api process's settings.

use std::time::Duration;

use super::{CommonConfig, ConfigError, ProcessEnv, Secret, Source, Vars, err, parse_origin};

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

/// The placeholder of `.env.example`.
pub(super) const SAMPLE_JWT_SECRET: &str = "change-me-to-a-random-string-of-at-least-32-bytes";

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
