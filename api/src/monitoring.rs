//! `/api/v1/monitoring` (§4.4): the ML server's status and history, the processing queue from
//! Temporal visibility, and the ADMIN-only maintenance endpoints backed by the run reconciler.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::views::{PassReport, Verification};
use drishtiksha_common::workflow::WORKFLOW_TYPE;
use drishtiksha_ml::{MlError, MlErrorKind, cached_stats};

use crate::auth::AuthUser;
use crate::envelope::{Envelope, Success, ok};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::openapi::TAG_MONITORING;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_server_status))
        .routes(routes!(get_server_history))
        .routes(routes!(get_queue_status))
        .routes(routes!(check_stuck_runs))
        .routes(routes!(verify_statuses))
        .routes(routes!(fix_statuses))
}

/// The ML server's `GET /stats` object unchanged (`status`, `uptime_seconds`, `models_info`,
/// `device_info`, `system_info`, …), plus `responseTimeMs` and `cachedAt`; each `models_info[]`
/// entry carries its flags in both spellings (`isVideo` and `is_video`, …).
#[derive(ToSchema)]
#[schema(example = json!({
    "status": "running", "uptime_seconds": 3600, "device_info": {}, "system_info": {},
    "models_info": [{"name": "SIGLIP-LSTM-V4", "loaded": true, "isVideo": true, "isAudio": false, "isImage": false,
                     "is_video": true, "is_audio": false, "is_image": false}],
    "responseTimeMs": 143, "cachedAt": "2025-10-12T03:41:49.123Z"
}))]
#[derive(Serialize)]
pub struct ServerStatus {
    /// The ML server's own keys, as it sent them.
    #[serde(flatten)]
    #[schema(ignore)]
    stats: serde_json::Map<String, Value>,
    /// Duration of the ML call, in milliseconds.
    #[serde(rename = "responseTimeMs", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, required = true)]
    response_time_ms: Option<Value>,
    /// When the ML server was asked.
    #[serde(rename = "cachedAt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = DateTime<Utc>, required = true)]
    cached_at: Option<Value>,
}

impl ServerStatus {
    /// The cached `/stats` object (an object by construction of the cache).
    fn of(stats: Value) -> Self {
        let mut stats = match stats {
            Value::Object(map) => map,
            other => serde_json::Map::from_iter([("status".to_string(), other)]),
        };
        let response_time_ms = stats.remove("responseTimeMs");
        let cached_at = stats.remove("cachedAt");
        Self { stats, response_time_ms, cached_at }
    }
}

/// The model flags in both spellings: the ML server sends `isVideo`…, while the original
/// frontend's in-progress card reads `is_video` / `is_audio` (without them it lists no models).
/// A spelling the server already sent is never overwritten.
const FLAG_SPELLINGS: [(&str, &str); 4] =
    [("isVideo", "is_video"), ("isAudio", "is_audio"), ("isImage", "is_image"), ("isMultiModal", "is_multimodal")];

fn with_both_flag_spellings(stats: &mut Value) {
    let Some(models) = stats.get_mut("models_info").and_then(Value::as_array_mut) else { return };
    for model in models.iter_mut().filter_map(Value::as_object_mut) {
        for (camel, snake) in FLAG_SPELLINGS {
            match (model.get(camel).cloned(), model.get(snake).cloned()) {
                (Some(v), None) => {
                    model.insert(snake.to_string(), v);
                }
                (None, Some(v)) => {
                    model.insert(camel.to_string(), v);
                }
                _ => {}
            }
        }
    }
}

/// The answers of the ML server's failures (§4.4); each inserts an `UNHEALTHY` history row.
const ML_FAILURES: &str = "503 `Model analysis service is unavailable.`; 504 `Request to model analysis service timed out.`; \
502 `Model analysis service rejected the backend's credentials.` / `…returned an error.` / `…returned an invalid response.`";

/// Result of `fix-statuses`.
#[derive(Serialize, ToSchema)]
pub struct FixReport {
    pub fixed: usize,
    pub failed: usize,
}

fn ml_error_response(e: &MlError) -> ApiError {
    let status = match (e.kind, e.status) {
        (MlErrorKind::Unavailable, _) | (_, Some(503)) => StatusCode::SERVICE_UNAVAILABLE,
        (MlErrorKind::Timeout, _) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, e.status_message())
}

/// Served from a 60 s cache shared with model discovery; every miss asks the ML server.
#[utoipa::path(
    get, path = "/server-status", tag = TAG_MONITORING, summary = "The ML server's status",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses(
        (status = 200, description = "`Server status retrieved successfully`", body = Success<ServerStatus>),
        (status = 502, description = ML_FAILURES, body = ErrorBody),
        (status = 503, description = ML_FAILURES, body = ErrorBody),
        (status = 504, description = ML_FAILURES, body = ErrorBody),
    ),
)]
async fn get_server_status(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Envelope<ServerStatus>> {
    match cached_stats(&state.ml, &state.redis, &state.db).await {
        Ok(mut stats) => {
            with_both_flag_spellings(&mut stats);
            Ok(ok(ServerStatus::of(stats), "Server status retrieved successfully"))
        }
        Err(e) => Err(ml_error_response(&e)),
    }
}

/// One check of the ML server (§3.5).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "0b7e3d6c-2f1a-4c5b-9d8e-7f6a5b4c3d2e", "status": "HEALTHY", "responseTimeMs": 143,
    "statsPayload": {"status": "running"}, "checkedAt": "2025-10-12T03:41:49.123Z"
}))]
struct ServerHealth {
    id: Uuid,
    status: HealthStatus,
    response_time_ms: i32,
    #[schema(required = true, value_type = Option<Object>)]
    stats_payload: Option<Value>,
    #[serde(with = "drishtiksha_common::time::ts")]
    checked_at: DateTime<Utc>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Number of rows, newest first.
    // Read as text, so that a bad value gets the contract's message rather than a rejection.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500, default = 50)]
    limit: Option<String>,
}

impl HistoryQuery {
    /// The query of a request; a query string that is not even a list of `key=value` pairs has
    /// no valid `limit` either.
    fn of(query: Result<Query<Self>, QueryRejection>) -> ApiResult<Self> {
        query.map(|Query(q)| q).map_err(|_| bad_limit())
    }

    fn limit(&self) -> ApiResult<i64> {
        match &self.limit {
            None => Ok(50),
            Some(raw) => raw.trim().parse::<i64>().ok().filter(|n| (1..=500).contains(n)).ok_or_else(bad_limit),
        }
    }
}

fn bad_limit() -> ApiError {
    ApiError::validation_one("limit must be an integer between 1 and 500")
}

/// All users' rows, `checkedAt` descending.
#[utoipa::path(
    get, path = "/server-history", tag = TAG_MONITORING, summary = "History of ML server checks",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "`Server health history retrieved successfully`", body = Success<Vec<ServerHealth>>),
        (status = 400, description = "`Validation failed`: `limit must be an integer between 1 and 500`", body = ErrorBody),
    ),
)]
async fn get_server_history(
    State(state): State<AppState>,
    _user: AuthUser,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Envelope<Vec<ServerHealth>>> {
    let limit = HistoryQuery::of(query)?.limit()?;
    let rows = sqlx::query!(
        "SELECT id, status, response_time_ms, stats_payload, checked_at
         FROM server_health ORDER BY checked_at DESC LIMIT $1",
        limit
    )
    .fetch_all(&state.db)
    .await?;
    let rows = rows
        .into_iter()
        .map(|r| ServerHealth {
            id: r.id,
            status: HealthStatus::of_stored(&r.status),
            response_time_ms: r.response_time_ms,
            stats_payload: r.stats_payload,
            checked_at: r.checked_at,
        })
        .collect();
    Ok(ok(rows, "Server health history retrieved successfully"))
}

/// `server_health.status`, from the ML server's `status` (§3.5); stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    /// The stored text as written by `drishtiksha_ml::health_status`; anything else is unknown.
    fn of_stored(text: &str) -> Self {
        match text {
            "HEALTHY" => Self::Healthy,
            "DEGRADED" => Self::Degraded,
            "UNHEALTHY" => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }
}

/// The processing queue, from Temporal visibility and the database (§4.4).
#[derive(Serialize, Debug, PartialEq, Eq, ToSchema)]
#[schema(example = json!({"pending": 0, "active": 2, "completed": 41, "failed": 1, "delayed": 1, "inferenceBacklog": 4}))]
pub struct QueueStatus {
    pub pending: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub delayed: i64,
    /// Model calls waiting for inference capacity (Temporal's approximate backlog of the
    /// inference task queue).
    #[serde(rename = "inferenceBacklog")]
    pub inference_backlog: i64,
}

#[utoipa::path(
    get, path = "/queue-status", tag = TAG_MONITORING, summary = "The processing queue",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses(
        (status = 200, description = "`Processing queue status retrieved successfully.`", body = Success<QueueStatus>),
        (status = 503, description = "Temporal (or the database) is unavailable", body = ErrorBody),
    ),
)]
async fn get_queue_status(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Envelope<QueueStatus>> {
    let client = state.temporal().await.map_err(ApiError::unavailable)?;
    let tq = state.config.common.temporal.task_queue.replace('\'', "");
    let since = (Utc::now() - ChronoDuration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let base = format!("WorkflowType = '{WORKFLOW_TYPE}' AND TaskQueue = '{tq}'");
    let count = |q: String| {
        let client = client.clone();
        async move {
            client
                .count_workflows(q, temporalio_client::WorkflowCountOptions::default())
                .await
                .map(|c| c.count() as i64)
                .map_err(|e| ApiError::unavailable(anyhow::anyhow!("visibility query failed: {e}")))
        }
    };
    let (open, completed, failed, timed_out, terminated) = tokio::try_join!(
        count(format!("{base} AND ExecutionStatus = 'Running'")),
        count(format!("{base} AND ExecutionStatus = 'Completed' AND CloseTime > '{since}'")),
        count(format!("{base} AND ExecutionStatus = 'Failed' AND CloseTime > '{since}'")),
        count(format!("{base} AND ExecutionStatus = 'TimedOut' AND CloseTime > '{since}'")),
        count(format!("{base} AND ExecutionStatus = 'Terminated' AND CloseTime > '{since}'")),
    )?;
    let db = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM analysis_runs WHERE status = 'QUEUED') AS "queued!",
             (SELECT count(*) FROM deepfake_analyses a JOIN analysis_runs r ON r.id = a.analysis_run_id
               WHERE a.status = 'PENDING' AND a.attempts >= 1
                 AND r.status IN ('PROCESSING', 'PARTIALLY_ANALYZED')) AS "delayed!""#
    )
    .fetch_one(&state.db)
    .await?;
    let temporal = &state.config.common.temporal;
    let inference_backlog =
        drishtiksha_common::temporal::activity_backlog(&client, &temporal.namespace, &temporal.inference_task_queue)
            .await
            .map_err(ApiError::unavailable)?;
    let pending = db.queued.min(open);
    let status = QueueStatus {
        inference_backlog,
        pending,
        active: (open - pending).max(0),
        completed,
        failed: failed + timed_out + terminated,
        delayed: db.delayed,
    };
    Ok(ok(status, "Processing queue status retrieved successfully."))
}

/// One pass of the run reconciler, now.
#[utoipa::path(
    post, path = "/check-stuck-runs", tag = TAG_MONITORING, summary = "Finalize stuck runs (ADMIN)",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses(
        (status = 200, description = "`Checked <n> runs and finalized <m> stuck runs.`", body = Success<PassReport>),
        (status = 403, description = "`Forbidden: administrator role required.`", body = ErrorBody),
        (status = 503, description = "Temporal (or the database) is unavailable", body = ErrorBody),
    ),
)]
async fn check_stuck_runs(State(state): State<AppState>, user: AuthUser) -> ApiResult<Envelope<PassReport>> {
    user.require_admin()?;
    let report = state.reconciler().await.map_err(ApiError::unavailable)?.run_pass().await?;
    let message = format!("Checked {} runs and finalized {} stuck runs.", report.checked, report.finalized);
    Ok(ok(PassReport::from(report), "").with_message(message))
}

/// Media whose status, or whose runs' statuses and counts, contradict their rows or workflows.
#[utoipa::path(
    get, path = "/verify-statuses", tag = TAG_MONITORING, summary = "Verify run and media statuses (ADMIN)",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses(
        (status = 200, description = "`Verified <total> media items: <correct> correct, <incorrect> incorrect.`", body = Success<Verification>),
        (status = 403, description = "`Forbidden: administrator role required.`", body = ErrorBody),
        (status = 503, description = "Temporal (or the database) is unavailable", body = ErrorBody),
    ),
)]
async fn verify_statuses(State(state): State<AppState>, user: AuthUser) -> ApiResult<Envelope<Verification>> {
    user.require_admin()?;
    let v = state.reconciler().await.map_err(ApiError::unavailable)?.verify().await?;
    let message = format!(
        "Verified {} media items: {} correct, {} incorrect.",
        v.total_media, v.correct_media, v.incorrect_media
    );
    Ok(ok(Verification::from(v), "").with_message(message))
}

/// Repairs what `verify-statuses` finds; never moves a terminal run to a non-terminal status.
#[utoipa::path(
    post, path = "/fix-statuses", tag = TAG_MONITORING, summary = "Repair run and media statuses (ADMIN)",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses(
        (status = 200, description = "`No status issues found.` or `Fixed <n> status issues, <m> failures.`", body = Success<FixReport>),
        (status = 403, description = "`Forbidden: administrator role required.`", body = ErrorBody),
        (status = 503, description = "Temporal (or the database) is unavailable", body = ErrorBody),
    ),
)]
async fn fix_statuses(State(state): State<AppState>, user: AuthUser) -> ApiResult<Envelope<FixReport>> {
    user.require_admin()?;
    let (fixed, failed) = state.reconciler().await.map_err(ApiError::unavailable)?.fix().await?;
    let message = if fixed == 0 && failed == 0 {
        "No status issues found.".to_string()
    } else {
        format!("Fixed {fixed} status issues, {failed} failures.")
    };
    Ok(ok(FixReport { fixed, failed }, "").with_message(message))
}

#[cfg(test)]
mod tests {
    use super::HealthStatus;

    /// Every status the ML client stores reads back as itself.
    #[test]
    fn stored_health_statuses_read_back() {
        for status in ["running", "degraded", "error", "starting"] {
            let stored = drishtiksha_ml::health_status(&serde_json::json!({ "status": status }));
            let read = HealthStatus::of_stored(stored);
            assert_eq!(serde_json::to_value(read).ok(), Some(serde_json::json!(stored)), "{status}");
        }
        assert_eq!(HealthStatus::of_stored("garbage"), HealthStatus::Unknown);
    }
}
