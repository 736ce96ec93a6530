//! Configuration from the environment (12-factor), parsed into real types once at start-up.
//!
//! A missing or malformed variable is reported as one line naming the variable and the expected
//! form; the binaries exit with status 2 on it. Secret values are never echoed.

use std::collections::HashMap;
use std::fmt;
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

mod api;
mod common;
mod worker;

pub use api::ApiConfig;
pub use common::{CommonConfig, LogFormat, MlConfig, S3Config, StorageConfig, TemporalConfig};
pub use worker::{WorkerConfig, WorkerRole};

#[cfg(test)]
mod tests {
    use super::api::SAMPLE_JWT_SECRET;
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
