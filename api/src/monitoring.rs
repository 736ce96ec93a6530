//! `/api/v1/monitoring` (§4.4): the ML server's status and history, the processing queue from
//! Temporal visibility, and the ADMIN-only maintenance endpoints backed by the run reconciler.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use drishtiksha_activities::ml::{MlError, MlErrorKind, cached_stats};
use drishtiksha_common::temporal::WORKFLOW_TYPE;

use crate::auth::AuthUser;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/server-status", get(get_server_status))
        .route("/server-history", get(get_server_history))
        .route("/queue-status", get(get_queue_status))
        .route("/check-stuck-runs", post(check_stuck_runs))
        .route("/verify-statuses", get(verify_statuses))
        .route("/fix-statuses", post(fix_statuses))
}

fn ml_error_response(e: &MlError) -> ApiError {
    let status = match (e.kind, e.status) {
        (MlErrorKind::Unavailable, _) | (_, Some(503)) => StatusCode::SERVICE_UNAVAILABLE,
        (MlErrorKind::Timeout, _) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, e.status_message())
}

async fn get_server_status(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Response> {
    match cached_stats(&state.ml, &state.redis, &state.db).await {
        Ok(stats) => Ok(ok(stats, "Server status retrieved successfully").into_response()),
        Err(e) => Err(ml_error_response(&e)),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerHealth {
    id: Uuid,
    status: String,
    response_time_ms: i32,
    stats_payload: Option<Value>,
    #[serde(with = "drishtiksha_common::time::ts")]
    checked_at: DateTime<Utc>,
}

async fn get_server_history(
    State(state): State<AppState>,
    _user: AuthUser,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let limit = match q.get("limit") {
        None => 50,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::validation_one("limit must be an integer between 1 and 500"))?,
    };
    let rows = sqlx::query_as!(
        ServerHealth,
        "SELECT id, status, response_time_ms, stats_payload, checked_at
         FROM server_health ORDER BY checked_at DESC LIMIT $1",
        limit
    )
    .fetch_all(&state.db)
    .await?;
    Ok(ok(rows, "Server health history retrieved successfully").into_response())
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    pub pending: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub delayed: i64,
}

async fn get_queue_status(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Response> {
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
    let pending = db.queued.min(open);
    let status = QueueStatus {
        pending,
        active: (open - pending).max(0),
        completed,
        failed: failed + timed_out + terminated,
        delayed: db.delayed,
    };
    Ok(ok(status, "Processing queue status retrieved successfully.").into_response())
}

async fn check_stuck_runs(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    user.require_admin()?;
    let report = state.reconciler().await.map_err(ApiError::unavailable)?.run_pass().await?;
    let message = format!("Checked {} runs and finalized {} stuck runs.", report.checked, report.finalized);
    Ok(crate::envelope::ok(json!({"checked": report.checked, "finalized": report.finalized}), "")
        .with_message(message)
        .into_response())
}

async fn verify_statuses(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    user.require_admin()?;
    let v = state.reconciler().await.map_err(ApiError::unavailable)?.verify().await?;
    let message = format!(
        "Verified {} media items: {} correct, {} incorrect.",
        v.total_media, v.correct_media, v.incorrect_media
    );
    Ok(ok(v, "").with_message(message).into_response())
}

async fn fix_statuses(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    user.require_admin()?;
    let (fixed, failed) = state.reconciler().await.map_err(ApiError::unavailable)?.fix().await?;
    let message = if fixed == 0 && failed == 0 {
        "No status issues found.".to_string()
    } else {
        format!("Fixed {fixed} status issues, {failed} failures.")
    };
    Ok(ok(json!({"fixed": fixed, "failed": failed}), "").with_message(message).into_response())
}
