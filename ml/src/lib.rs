//! The ML server client (`docs/ml-server.md` §3–§7): model discovery through the shared `/stats` cache,
//! `/analyze` with a streamed upload, response validation and the failure classification.
//! Sections cited as `§x.y` below are those of `docs/ml-server.md`.

use drishtiksha_common::messages;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use drishtiksha_common::MediaType;
use drishtiksha_common::config::{MlConfig, Secret};
use drishtiksha_common::db::runs::ModelResult;
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::time::format_ts;
use futures::Stream;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

/// Prefix of the Redis key of the cached `/stats` object, shared with the api's server-status
/// endpoint; the key ends with the ML server's base URL ([`stats_cache_key`]), so deployments
/// sharing one Redis never read each other's model lists.
pub const STATS_CACHE_KEY: &str = "ml_server_stats";
pub const STATS_CACHE_TTL: Duration = Duration::from_secs(60);
/// Largest response body accepted (`heatmap_scores` can be tens of MB).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
const MAX_MESSAGE_CHARS: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The classes of §7.3; each is a failure type the retry policy and the Web UI show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlErrorKind {
    Unavailable,
    Timeout,
    ServerError,
    RateLimited,
    AuthRejected,
    RequestRejected,
    InvalidResponse,
    /// 500 "Inference Error": the server already tried every fallback model; final.
    InferenceExhausted,
}

impl MlErrorKind {
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Unavailable => "ML_UNAVAILABLE",
            Self::Timeout => "ML_TIMEOUT",
            Self::ServerError => "ML_SERVER_ERROR",
            Self::RateLimited => "ML_RATE_LIMITED",
            Self::AuthRejected => "ML_AUTH_REJECTED",
            Self::RequestRejected => "ML_REQUEST_REJECTED",
            Self::InvalidResponse => "ML_INVALID_RESPONSE",
            Self::InferenceExhausted => "ML_INFERENCE_EXHAUSTED",
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::ServerError | Self::RateLimited)
    }
}

/// A classified failure of one ML call; `message` is safe to store and show (never an upstream body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MlError {
    pub kind: MlErrorKind,
    pub message: String,
    /// `Retry-After` of a 429.
    pub retry_after: Option<Duration>,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The server is not there or not ready (connection refused, DNS failure, 503): it is waited
    /// for (`ML_UNAVAILABLE_WAIT`) rather than counted as one of the model's attempts.
    pub waitable: bool,
}

impl MlError {
    fn new(kind: MlErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None, status: None, waitable: false }
    }

    fn from_transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() && !e.is_connect() {
            Self::new(MlErrorKind::Timeout, messages::ML_TIMEOUT)
        } else {
            // A connection that could not be made never reached the server; one that broke after
            // the request was sent did, and counts as an attempt.
            Self { waitable: e.is_connect(), ..Self::new(MlErrorKind::Unavailable, messages::ML_UNAVAILABLE) }
        }
    }

    /// The server-status wording (`docs/contract.md` §4.4) of a failed `/stats` call.
    pub fn status_message(&self) -> &'static str {
        match (self.kind, self.status) {
            (MlErrorKind::Unavailable, _) | (_, Some(503)) => messages::ML_UNAVAILABLE,
            (MlErrorKind::Timeout, _) => messages::ML_TIMEOUT,
            (MlErrorKind::AuthRejected, _) => messages::ML_AUTH,
            (MlErrorKind::InvalidResponse, _) => "Model analysis service returned an invalid response.",
            _ => "Model analysis service returned an error.",
        }
    }
}

/// One `/analyze` call.
pub struct AnalyzeRequest<S> {
    pub body: S,
    pub length: u64,
    /// `<mediaId><ext>` (§5).
    pub part_filename: String,
    pub model: String,
    pub media_id: Uuid,
    pub user_id: Uuid,
    /// `<runId>:<model>:<attempt>`.
    pub correlation_id: String,
}

/// HTTP client of the ML server. It never retries and never follows redirects; retries belong to
/// the workflow's retry policy.
#[derive(Clone)]
pub struct MlClient {
    http: reqwest::Client,
    base: Url,
    api_key: Secret,
    analyze_timeout: Duration,
    stats_timeout: Duration,
}

impl MlClient {
    pub fn new(cfg: &MlConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: cfg.server_url.clone(),
            api_key: cfg.api_key.clone(),
            analyze_timeout: cfg.analyze_timeout,
            stats_timeout: cfg.stats_timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// `GET /stats`: the JSON object, unchanged.
    pub async fn stats(&self) -> Result<Value, MlError> {
        let request = self.http.get(self.url("/stats")).timeout(self.stats_timeout);
        let (status, body) = self.send(request).await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(MlError {
                status: Some(status.as_u16()),
                ..MlError::new(MlErrorKind::InvalidResponse, messages::ML_INVALID)
            }),
        }
    }

    /// `POST /analyze` with the file streamed as the `media` part: the response body as received
    /// and its validated reading.
    pub async fn analyze<S>(&self, req: AnalyzeRequest<S>) -> Result<(Vec<u8>, ModelResult), MlError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(req.body), req.length)
            .file_name(req.part_filename);
        let form = reqwest::multipart::Form::new()
            .part("media", part)
            .text("model", req.model)
            .text("mediaId", req.media_id.to_string())
            .text("userId", req.user_id.to_string());
        let request = self
            .http
            .post(self.url("/analyze"))
            .header("X-Correlation-ID", req.correlation_id)
            .timeout(self.analyze_timeout)
            .multipart(form);
        let (_, body) = self.send(request).await?;
        let result = validate_result(&body)?;
        Ok((body, result))
    }

    /// Sends with the API key and reads the whole (bounded) body; a non-2xx answer is classified.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), MlError> {
        let response =
            request.header("X-API-Key", self.api_key.expose()).send().await.map_err(|e| MlError::from_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await?;
        if !status.is_success() {
            return Err(classify_status(status, &headers, &body));
        }
        Ok((status, body))
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, MlError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| MlError::from_transport(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(MlError::new(MlErrorKind::InvalidResponse, messages::ML_INVALID));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Classifies a non-2xx response (§7.3).
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> MlError {
    let extracted = || extract_message(body);
    let (kind, message) = match status.as_u16() {
        401 | 403 => (MlErrorKind::AuthRejected, messages::ML_AUTH.to_string()),
        429 => (MlErrorKind::RateLimited, extracted()),
        503 => (MlErrorKind::Unavailable, messages::ML_UNAVAILABLE.to_string()),
        500 if fallbacks_exhausted(body) => (MlErrorKind::InferenceExhausted, extracted()),
        500..=599 => (MlErrorKind::ServerError, extracted()),
        400..=499 => (MlErrorKind::RequestRejected, extracted()),
        // A redirect is not followed; it is a response the contract does not allow.
        _ => (MlErrorKind::InvalidResponse, messages::ML_INVALID.to_string()),
    };
    let retry_after = if kind == MlErrorKind::RateLimited {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    } else {
        None
    };
    MlError { kind, message, retry_after, status: Some(status.as_u16()), waitable: status.as_u16() == 503 }
}

/// A 500 whose body is the server's "Inference Error" (`detail.error`), which it sends only after
/// its whole fallback chain failed: calling again would run that chain again.
fn fallbacks_exhausted(body: &[u8]) -> bool {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value.pointer("/detail/error").and_then(Value::as_str) == Some("Inference Error")
}

/// The first string of `detail` → `detail.message` → `message` → `detail.error` (§7.2), at most
/// 1 000 characters.
pub fn extract_message(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let detail = value.get("detail");
    let found = detail
        .and_then(Value::as_str)
        .or_else(|| detail.and_then(|d| d.get("message")).and_then(Value::as_str))
        .or_else(|| value.get("message").and_then(Value::as_str))
        .or_else(|| detail.and_then(|d| d.get("error")).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty());
    match found {
        Some(s) => s.chars().take(MAX_MESSAGE_CHARS).collect(),
        None => messages::ML_GENERIC.to_string(),
    }
}

/// Validates a 2xx `/analyze` body (§6) into what the row stores.
pub fn validate_result(body: &[u8]) -> Result<ModelResult, MlError> {
    let invalid = || MlError::new(MlErrorKind::InvalidResponse, messages::ML_INVALID);
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    if value.get("success") != Some(&Value::Bool(true)) {
        return Err(invalid());
    }
    let data = value.get("data").filter(|d| d.is_object()).ok_or_else(invalid)?;
    let prediction =
        data.get("prediction").and_then(Value::as_str).filter(|p| matches!(*p, "REAL" | "FAKE")).ok_or_else(invalid)?;
    let confidence =
        data.get("confidence").and_then(Value::as_f64).filter(|c| (0.0..=1.0).contains(c)).ok_or_else(invalid)?;
    let model_used = value.get("model_used").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_string);
    Ok(ModelResult {
        model_used,
        prediction: prediction.to_string(),
        confidence,
        processing_time: data.get("processing_time").and_then(Value::as_f64),
        media_type: data.get("media_type").and_then(Value::as_str).map(str::to_string),
        payload: data.clone(),
    })
}

/// The model selection rule of §4: loaded models fit for the media, in `models_info` order.
pub fn select_models(stats: &Value, media_type: MediaType, has_audio: Option<bool>) -> Vec<String> {
    let Some(models) = stats.get("models_info").and_then(Value::as_array) else {
        return Vec::new();
    };
    let flag = |m: &Value, key: &str| m.get(key).and_then(Value::as_bool).unwrap_or(false);
    let mut selected: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in models {
        let Some(name) = m.get("name").and_then(Value::as_str) else {
            continue;
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if !flag(m, "loaded") {
            continue;
        }
        let fits = if flag(m, "isMultiModal") {
            media_type == MediaType::Video && has_audio == Some(true)
        } else {
            match media_type {
                MediaType::Video => flag(m, "isVideo"),
                MediaType::Audio => flag(m, "isAudio"),
                MediaType::Image => flag(m, "isImage"),
            }
        };
        if fits {
            selected.push(name.to_string());
        }
    }
    selected
}

/// `ServerHealth.status` of a stats object (`docs/contract.md` §3.5).
pub fn health_status(stats: &Value) -> &'static str {
    match stats.get("status").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
        Some("ok" | "healthy" | "running") => "HEALTHY",
        Some("degraded") => "DEGRADED",
        Some("unhealthy" | "error" | "failed") => "UNHEALTHY",
        _ => "UNKNOWN",
    }
}

/// `/stats` through the shared Redis cache: a hit is returned as cached; a miss calls the ML
/// server, caches the object with `responseTimeMs` and `cachedAt`, and records a `server_health`
/// row (an UNHEALTHY one on failure; failures are not cached). Redis trouble bypasses the cache.
pub async fn cached_stats(ml: &MlClient, redis: &RedisHandle, db: &PgPool) -> Result<Value, MlError> {
    let key = stats_cache_key(&ml.base);
    if let Some(hit) = cache_get(redis, &key).await {
        return Ok(hit);
    }
    let started = Instant::now();
    let outcome = ml.stats().await;
    let elapsed_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    match outcome {
        Ok(stats) => {
            let mut object = match stats {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            object.insert("responseTimeMs".to_string(), json!(elapsed_ms));
            object.insert("cachedAt".to_string(), json!(format_ts(&Utc::now())));
            let stats = Value::Object(object);
            cache_set(redis, &key, &stats).await;
            record_health(db, health_status(&stats), elapsed_ms, &stats).await;
            Ok(stats)
        }
        Err(e) => {
            let payload =
                json!({ "status": "UNHEALTHY", "errorMessage": e.status_message(), "responseTimeMs": elapsed_ms });
            record_health(db, "UNHEALTHY", elapsed_ms, &payload).await;
            Err(e)
        }
    }
}

/// `ml_server_stats:<base URL>`: one cache entry per ML server.
pub fn stats_cache_key(server: &Url) -> String {
    format!("{STATS_CACHE_KEY}:{}", server.as_str().trim_end_matches('/'))
}

async fn cache_get(redis: &RedisHandle, key: &str) -> Option<Value> {
    let mut conn = redis.conn().await.ok()?;
    let cached: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await.ok()?;
    serde_json::from_str(&cached?).ok()
}

async fn cache_set(redis: &RedisHandle, key: &str, stats: &Value) {
    let Ok(mut conn) = redis.conn().await else {
        return;
    };
    let result: redis::RedisResult<()> = redis::cmd("SET")
        .arg(key)
        .arg(stats.to_string())
        .arg("EX")
        .arg(STATS_CACHE_TTL.as_secs())
        .query_async(&mut conn)
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "ML stats not cached");
    }
}

async fn record_health(db: &PgPool, status: &str, response_time_ms: i32, payload: &Value) {
    let result = sqlx::query!(
        "INSERT INTO server_health (id, status, response_time_ms, stats_payload) VALUES ($1, $2, $3, $4)",
        Uuid::new_v4(),
        status,
        response_time_ms,
        payload
    )
    .execute(db)
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "server health not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_extracted_in_contract_order() {
        assert_eq!(extract_message(br#"{"detail":"Uploaded media file is empty."}"#), "Uploaded media file is empty.");
        assert_eq!(
            extract_message(
                br#"{"detail":{"error":"Media Processing Error","message":"Media could not be processed. Reason: x"}}"#
            ),
            "Media could not be processed. Reason: x"
        );
        assert_eq!(extract_message(br#"{"error":"Internal","message":"Unexpected"}"#), "Unexpected");
        assert_eq!(extract_message(br#"{"detail":{"error":"Inference Error"}}"#), "Inference Error");
        assert_eq!(extract_message(br#"{"detail":[{"type":"missing"}]}"#), messages::ML_GENERIC);
        assert_eq!(extract_message(b"<html>oops</html>"), messages::ML_GENERIC);
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(5000));
        assert_eq!(extract_message(long.as_bytes()).chars().count(), 1000);
    }

    #[test]
    fn statuses_are_classified_per_contract() {
        let h = HeaderMap::new();
        let kind = |s: u16| classify_status(StatusCode::from_u16(s).expect("status"), &h, b"{}").kind;
        assert_eq!(kind(401), MlErrorKind::AuthRejected);
        assert_eq!(kind(403), MlErrorKind::AuthRejected);
        assert_eq!(kind(422), MlErrorKind::RequestRejected);
        assert_eq!(kind(404), MlErrorKind::RequestRejected);
        assert_eq!(kind(500), MlErrorKind::ServerError);
        assert_eq!(kind(502), MlErrorKind::ServerError);
        assert_eq!(kind(503), MlErrorKind::Unavailable);
        assert!(classify_status(StatusCode::SERVICE_UNAVAILABLE, &h, b"{}").waitable);
        assert!(!classify_status(StatusCode::INTERNAL_SERVER_ERROR, &h, b"{}").waitable);
        let exhausted = br#"{"detail":{"error":"Inference Error","message":"Model inference failed and all fallbacks exhausted.","primary_error":"x","fallback_error":"y"}}"#;
        let e = classify_status(StatusCode::INTERNAL_SERVER_ERROR, &h, exhausted);
        assert_eq!(e.kind, MlErrorKind::InferenceExhausted);
        assert!(!e.kind.is_retryable());
        assert_eq!(e.message, "Model inference failed and all fallbacks exhausted.");
        assert_eq!(kind(307), MlErrorKind::InvalidResponse);
        assert!(!MlErrorKind::RequestRejected.is_retryable());
        assert!(MlErrorKind::RateLimited.is_retryable());
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().expect("header"));
        let e = classify_status(StatusCode::TOO_MANY_REQUESTS, &h, br#"{"detail":"Too many requests"}"#);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(e.message, "Too many requests");
        assert_eq!(classify_status(StatusCode::UNAUTHORIZED, &h, b"{}").message, messages::ML_AUTH);
    }

    #[test]
    fn results_are_validated() {
        let ok = validate_result(
            br#"{"success":true,"data":{"prediction":"FAKE","confidence":0.87,"processing_time":1.5,"media_type":"video","x":[1]}}"#,
        )
        .expect("valid");
        assert_eq!(ok.prediction, "FAKE");
        assert_eq!(ok.processing_time, Some(1.5));
        assert_eq!(ok.payload["x"], json!([1]));
        assert_eq!(ok.model_used, None);
        let fallback = validate_result(
            br#"{"success":true,"model_used":"B","data":{"prediction":"REAL","confidence":0.7,"note":"Primary model 'A' failed. Used fallback model 'B'."}}"#,
        )
        .expect("valid");
        assert_eq!(fallback.model_used.as_deref(), Some("B"));
        for bad in [
            &br#"{"success":false,"data":{"prediction":"FAKE","confidence":0.8}}"#[..],
            br#"{"success":true,"data":{"prediction":"MAYBE","confidence":0.8}}"#,
            br#"{"success":true,"data":{"prediction":"REAL","confidence":1.5}}"#,
            br#"{"success":true,"data":{"prediction":"REAL","confidence":"0.8"}}"#,
            br#"{"success":true,"data":[]}"#,
            b"not json",
        ] {
            assert_eq!(validate_result(bad).expect_err("invalid").kind, MlErrorKind::InvalidResponse);
        }
    }

    #[test]
    fn selection_follows_the_contract() {
        let stats = json!({ "models_info": [
            {"name": "V", "loaded": true, "isVideo": true},
            {"name": "MM", "loaded": true, "isVideo": true, "isAudio": true, "isMultiModal": true},
            {"name": "A", "loaded": true, "isAudio": true},
            {"name": "I", "loaded": true, "isImage": true},
            {"name": "OFF", "loaded": false, "isImage": true},
            {"name": "V", "loaded": true, "isImage": true},
            {"name": "NOFLAG", "isVideo": true}
        ]});
        assert_eq!(select_models(&stats, MediaType::Video, Some(true)), ["V", "MM"]);
        assert_eq!(select_models(&stats, MediaType::Video, Some(false)), ["V"]);
        assert_eq!(select_models(&stats, MediaType::Video, None), ["V"]);
        assert_eq!(select_models(&stats, MediaType::Audio, None), ["A"]);
        assert_eq!(select_models(&stats, MediaType::Image, None), ["I"]);
        assert!(select_models(&json!({}), MediaType::Image, None).is_empty());
    }

    #[test]
    fn the_stats_cache_key_names_the_ml_server() {
        let a = stats_cache_key(&Url::parse("http://ml-a:8000/").expect("url"));
        let b = stats_cache_key(&Url::parse("http://ml-b:8000").expect("url"));
        assert_eq!(a, "ml_server_stats:http://ml-a:8000");
        assert_ne!(a, b);
    }

    #[test]
    fn health_status_maps_case_insensitively() {
        assert_eq!(health_status(&json!({"status": "Running"})), "HEALTHY");
        assert_eq!(health_status(&json!({"status": "degraded"})), "DEGRADED");
        assert_eq!(health_status(&json!({"status": "error"})), "UNHEALTHY");
        assert_eq!(health_status(&json!({})), "UNKNOWN");
    }
}
