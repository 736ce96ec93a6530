//! `/api/v1/pdf` (§4.5): the analysis report of one run as a PDF download, rendered in-process.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tracing::instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use drishtiksha_common::db::{media as db_media, reports as db_reports};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::parse_id;
use crate::state::AppState;

use drishtiksha_pdf::{ReportInput, render_report, report_filename};

/// 404 of the report route (the run routes' wording).
pub const REPORT_NOT_FOUND: &str = "Analysis run not found or you do not have permission.";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download_report))
}

/// The report of one run, in any status, rendered on request. Not enveloped.
#[utoipa::path(
    get, path = "/report/run/{runId}", tag = crate::openapi::TAG_PDF, summary = "PDF report of an analysis run",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("runId" = uuid::Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "The report", content_type = "application/pdf", body = Vec<u8>,
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"Analysis_Report_<name>_<YYYY-MM-DD>.pdf\"`"),
                ("Cache-Control" = String, description = "`no-cache, no-store, must-revalidate`"),
            )),
        (status = 400, description = "`Validation failed`: `Invalid run id`", body = ErrorBody),
        (status = 404, description = "`Analysis run not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(user.id = %user.id()))]
pub async fn download_report(
    State(state): State<AppState>,
    user: AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let raw_id = raw_id.map(|Path(id)| id).unwrap_or_default();
    let run_id = parse_id(&raw_id, "Invalid run id")?;
    let not_found = || ApiError::not_found(REPORT_NOT_FOUND);
    let media_id = db_reports::owned_run_media_id(&state.db, run_id, user.id()).await?.ok_or_else(not_found)?;
    // Both reads repeat the ownership check, so a media deleted meanwhile is a 404 as well.
    let media = db_media::find_owned(&state.db, media_id, user.id()).await?.ok_or_else(not_found)?;
    let run = db_media::find_run(&state.db, media_id, run_id, user.id()).await?.ok_or_else(not_found)?;

    let input = ReportInput { media, run, generated_at: Utc::now() };
    let filename = report_filename(&input.media.filename, input.generated_at);
    // Layout, subsetting and compression are CPU work: keep them off the async workers.
    let pdf = tokio::task::spawn_blocking(move || render_report(&input)).await.map_err(ApiError::internal)?;

    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")).map_err(ApiError::internal)?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/pdf")),
        (header::CONTENT_DISPOSITION, disposition),
        (header::CONTENT_LENGTH, HeaderValue::from(pdf.len())),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
        (header::EXPIRES, HeaderValue::from_static("0")),
    ];
    Ok((StatusCode::OK, headers, Body::from(pdf)).into_response())
}
