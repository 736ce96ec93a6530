//! The full result of one analysis, as the ML server returned it, and the cleanup of a media's
//! kept answers and copied artifacts.
//!
//! Responses elsewhere carry a bounded `resultPayload` (`drishtiksha_common::payload`); this is the
//! one place the whole answer (full-resolution heatmap included) can be read.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::Row;
use tracing::instrument;
use uuid::Uuid;

use drishtiksha_common::storage::StorageError;
use drishtiksha_common::storage::{result_key, results_prefix};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{MediaId, parse_id};
use crate::openapi::TAG_MEDIA;
use crate::state::AppState;

/// 404 of the result route.
pub const RESULT_NOT_FOUND: &str = "Analysis result not found or you do not have permission.";

/// Which copy a result response comes from (`X-Result-Source`).
const SOURCE_HEADER: &str = "x-result-source";

/// The ML server's whole `/analyze` response for one completed analysis, byte for byte (not
/// enveloped: `{ success, model_used, timestamp, data }` exactly as received). Results recorded
/// before answers were kept are rebuilt from the stored row (`X-Result-Source: row`).
#[utoipa::path(
    get, path = "/{id}/analyses/{analysisId}/result", tag = TAG_MEDIA,
    summary = "The full, unbounded result of one analysis as the ML server returned it",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id"), ("analysisId" = Uuid, Path, description = "Analysis id")),
    responses(
        (status = 200, description = "The ML server's response body, unchanged (may be tens of MB)",
         content_type = "application/json", body = Object,
         headers(("X-Result-Source" = String, description = "`ml-server` (the kept answer) or `row` (rebuilt from the stored row)"))),
        (status = 400, description = "`Validation failed`: `Invalid media id` / `Invalid analysis id`", body = ErrorBody),
        (status = 404, description = "`Analysis result not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn get_analysis_result(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let analysis_id =
        parse_id(params.get("analysisId").map(String::as_str).unwrap_or_default(), "Invalid analysis id")?;
    let row = sqlx::query(
        "SELECT a.analysis_run_id, a.model_name, a.model_used
         FROM deepfake_analyses a JOIN analysis_runs r ON r.id = a.analysis_run_id JOIN media m ON m.id = r.media_id
         WHERE a.id = $1 AND m.id = $2 AND m.user_id = $3 AND a.status = 'COMPLETED'",
    )
    .bind(analysis_id)
    .bind(id)
    .bind(user.id())
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found(RESULT_NOT_FOUND))?;
    let run_id: Uuid = row.try_get("analysis_run_id")?;
    let model: String = row.try_get("model_name")?;
    match state.storage.open(&result_key(run_id, &model)).await {
        Ok((len, stream)) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (header::CONTENT_LENGTH, HeaderValue::from(len)),
                (header::HeaderName::from_static(SOURCE_HEADER), HeaderValue::from_static("ml-server")),
            ],
            Body::from_stream(stream),
        )
            .into_response()),
        Err(StorageError::NotFound) => {
            let model_used: Option<String> = row.try_get("model_used")?;
            let payload: Option<Value> =
                sqlx::query_scalar("SELECT result_payload FROM deepfake_analyses WHERE id = $1")
                    .bind(analysis_id)
                    .fetch_one(&state.db)
                    .await?;
            let body = json!({
                "success": true,
                "model_used": model_used.unwrap_or(model),
                "timestamp": null,
                "data": payload,
            });
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (header::HeaderName::from_static(SOURCE_HEADER), HeaderValue::from_static("row")),
                ],
                body.to_string(),
            )
                .into_response())
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Removes the kept answers and copied artifacts of `runs` (best effort: a leftover is logged, the
/// delete itself has already happened).
pub async fn delete_run_objects(state: &AppState, runs: &[Uuid]) {
    // Copied artifacts live inside the run's results folder.
    for run in runs {
        if let Err(e) = state.storage.delete_prefix(&results_prefix(*run)).await {
            tracing::warn!(run.id = %run, error = %e, "stored results of a deleted media not removed");
        }
    }
}
