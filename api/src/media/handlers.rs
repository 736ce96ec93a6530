//! Reading, editing, deleting media, re-running and cancelling their analysis runs (§4.3).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::views::{self, Media, Run};
use drishtiksha_common::db::{self, media as db_media};
use drishtiksha_common::workflow::{Cancelled, workflow_id};

use super::analysis::{self, RunToStart};
use super::upload::{INVALID_DESCRIPTION, MAX_DESCRIPTION_CHARS};
use super::{MEDIA_NOT_FOUND, RUN_NOT_FOUND};
use crate::auth::AuthUser;
use crate::envelope::{Envelope, Success, ok, with_status};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Field, JsonBody, Lines, MediaId, clean_text, parse_id};
use crate::openapi::{Empty, TAG_MEDIA};
use crate::state::AppState;

/// How long a delete waits for the workflows it cancelled to close.
const DELETE_WAIT: Duration = Duration::from_secs(5);
const DELETE_POLL: Duration = Duration::from_millis(100);

fn media_not_found() -> ApiError {
    ApiError::not_found(MEDIA_NOT_FOUND)
}

fn run_not_found() -> ApiError {
    ApiError::not_found(RUN_NOT_FOUND)
}

/// `PATCH /media/{id}`: only `description` may be changed (`null` clears it, `{}` changes nothing);
/// any other key is refused (`Field '<key>' cannot be updated.`).
// `deny_unknown_fields` is for the document (`additionalProperties: false`); deserializing goes
// through `MediaFields`, which keeps the other keys for their messages.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields, from = "MediaFields")]
#[schema(example = json!({"description": "Interview, second take"}))]
pub struct UpdateMediaRequest {
    #[schema(
        value_type = Option<String>,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u000C\u000E-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    description: Field<String>,
    /// Keys other than `description`, in the order sent.
    #[schema(ignore)]
    other_keys: Vec<String>,
}

#[derive(serde::Deserialize)]
struct MediaFields {
    #[serde(default)]
    description: Field<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

impl From<MediaFields> for UpdateMediaRequest {
    fn from(f: MediaFields) -> Self {
        Self { description: f.description, other_keys: f.other.keys().cloned().collect() }
    }
}

/// The caller's media, newest first, each with its owner and its latest run (with analyses).
#[utoipa::path(
    get, path = "/", tag = TAG_MEDIA, summary = "List the caller's media",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses((status = 200, description = "`Success`", body = Success<Vec<Media>>)),
)]
#[instrument(skip_all, fields(user.id = %user.id()))]
pub async fn list_media(State(state): State<AppState>, user: AuthUser) -> ApiResult<Envelope<Vec<Media>>> {
    let media = state.views(db_media::list_for_user(&state.db, user.id()).await?).await;
    Ok(ok(media, "Success"))
}

/// The media with its owner and all its runs (`runNumber` descending), each with its analyses.
#[utoipa::path(
    get, path = "/{id}", tag = TAG_MEDIA, summary = "One media with all its runs",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "`Success`", body = Success<Media>),
        (status = 400, description = "`Validation failed`: `Invalid media id`", body = ErrorBody),
        (status = 404, description = "`Media not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn get_media(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
) -> ApiResult<Envelope<Media>> {
    let media = db_media::load_full(&state.db, id, Some(user.id())).await?.ok_or_else(media_not_found)?;
    let media = state.view(media).await;
    Ok(ok(media, "Success"))
}

/// Order of checks: id (400) → ownership (404) → body (400), so the body is read last.
#[utoipa::path(
    patch, path = "/{id}", tag = TAG_MEDIA, summary = "Change a media's description",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id")),
    request_body = UpdateMediaRequest,
    responses(
        (status = 200, description = "`Media updated successfully.` (the media without relations)", body = Success<Media>),
        (status = 404, description = "`Media not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn update_media(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
    req: Request,
) -> ApiResult<Response> {
    let current = db_media::find_owned(&state.db, id, user.id()).await?.ok_or_else(media_not_found)?;
    let JsonBody(body) = JsonBody::<UpdateMediaRequest>::from_request(req, &state).await?;
    let mut errors = Vec::new();
    let description: Option<Option<String>> = match body.description {
        Field::Missing => None,
        Field::Null => Some(None),
        Field::Value(s) if s.chars().count() > MAX_DESCRIPTION_CHARS => {
            errors.push(format!("Description must be at most {MAX_DESCRIPTION_CHARS} characters"));
            None
        }
        Field::Value(s) => match clean_text(&s, Lines::Many) {
            Some(clean) => Some(Some(clean)),
            None => {
                errors.push(INVALID_DESCRIPTION.to_string());
                None
            }
        },
        Field::WrongType => {
            errors.push("Description must be a string or null".to_string());
            None
        }
    };
    errors.extend(body.other_keys.iter().map(|k| format!("Field '{k}' cannot be updated.")));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let media = match description {
        None => current,
        Some(d) => {
            db_media::update_description(&state.db, id, user.id(), d.as_deref()).await?.ok_or_else(media_not_found)?
        }
    };
    let media = state.view(media).await;
    Ok(ok(media, "Media updated successfully.").into_response())
}

/// Cancels the media's active runs, waits briefly for their workflows to close, then deletes the
/// rows and the file.
#[utoipa::path(
    delete, path = "/{id}", tag = TAG_MEDIA, summary = "Delete a media, its runs and its file",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "`Media deleted successfully.`", body = Success<Empty>),
        (status = 400, description = "`Validation failed`: `Invalid media id`", body = ErrorBody),
        (status = 404, description = "`Media not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn delete_media(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
) -> ApiResult<Envelope<Empty>> {
    db_media::find_owned(&state.db, id, user.id()).await?.ok_or_else(media_not_found)?;
    let active = db_media::active_runs(&state.db, id).await?;
    if !active.is_empty() {
        for run in &active {
            // The rows go either way; a workflow that outlives its media finds nothing to write.
            let cancelled = match analysis::cancel(&state, &run.workflow_id, "Media deleted").await {
                Ok(Cancelled::NoWorkflow) => {
                    analysis::cancel_unstarted(&state, run.id, &run.workflow_id, "Media deleted").await
                }
                other => other.map(|_| ()),
            };
            if let Err(e) = cancelled {
                tracing::warn!(run.id = %run.id, error = %format!("{e:#}"), "workflow of a deleted media not cancelled");
            }
        }
        let deadline = Instant::now() + DELETE_WAIT;
        while Instant::now() < deadline && !db_media::active_runs(&state.db, id).await?.is_empty() {
            tokio::time::sleep(DELETE_POLL).await;
        }
    }
    let runs: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM analysis_runs WHERE media_id = $1").bind(id).fetch_all(&state.db).await?;
    let Some(key) = db_media::delete_owned(&state.db, id, user.id()).await? else {
        return Err(media_not_found());
    };
    if let Err(e) = state.storage.delete(&key).await {
        tracing::warn!(storage.key = %key, error = %e, "file of a deleted media not removed");
    }
    super::results::delete_run_objects(&state, &runs).await;
    tracing::info!(runs.cancelled = active.len(), "media deleted");
    Ok(ok(Empty {}, "Media deleted successfully."))
}

/// Creates run `max(runNumber) + 1` and starts its workflow. No body.
#[utoipa::path(
    post, path = "/{id}/analyze", tag = TAG_MEDIA, summary = "Re-run the analysis of a media",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id")),
    responses(
        (status = 202, description = "`A new analysis run has been successfully queued for this media.` (the media with its owner and all runs, the new one first)", body = Success<Media>),
        (status = 400, description = "`Validation failed`: `Invalid media id`", body = ErrorBody),
        (status = 404, description = "`Media not found or you do not have permission.`", body = ErrorBody),
        (status = 409, description = "`An analysis run is already in progress for this media.`", body = ErrorBody),
        (status = 503, description = "The database is unavailable. (When only Temporal is away the run is still queued: 202, started once Temporal is back.)", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn rerun_analysis(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
) -> ApiResult<Envelope<Media>> {
    let run_id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    let created = db_media::insert_next_run(&mut tx, id, user.id(), run_id, |n| workflow_id(id, n)).await;
    let run = match created {
        Ok(Some(run)) => run,
        Ok(None) => return Err(media_not_found()),
        Err(e)
            if db::is_unique_violation(&e, db_media::ONE_ACTIVE_RUN_PER_MEDIA)
                || db::is_unique_violation(&e, db_media::RUN_NUMBER_UNIQUE) =>
        {
            return Err(ApiError::conflict("An analysis run is already in progress for this media."));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    let media = db_media::find_owned(&state.db, id, user.id()).await?.ok_or_else(media_not_found)?;
    tracing::info!(run.id = %run.id, run.number = run.run_number, "analysis re-run queued");

    let start = RunToStart {
        run_id: run.id,
        media_id: id,
        user_id: user.id(),
        run_number: run.run_number,
        workflow_id: run.workflow_id.clone(),
        media_type: media.media_type,
        filename: media.filename.clone(),
    };
    analysis::start_or_queue(&state, start).await;
    let media = db_media::load_full(&state.db, id, Some(user.id())).await?.ok_or_else(media_not_found)?;
    let media = state.view(media).await;
    Ok(with_status(StatusCode::ACCEPTED, media, "A new analysis run has been successfully queued for this media."))
}

/// `:runId` of the run routes (checked after the media id).
fn run_id_param(params: &HashMap<String, String>) -> &str {
    params.get("runId").map(String::as_str).unwrap_or_default()
}

#[utoipa::path(
    get, path = "/{id}/runs/{runId}", tag = TAG_MEDIA, summary = "One analysis run with its analyses",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id"), ("runId" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "`Analysis run retrieved successfully.`", body = Success<Run>),
        (status = 400, description = "`Validation failed`: `Invalid media id` / `Invalid run id`", body = ErrorBody),
        (status = 404, description = "`Analysis run not found or you do not have permission.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn get_run(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Envelope<Run>> {
    let run_id = parse_id(run_id_param(&params), "Invalid run id")?;
    let run = db_media::find_run(&state.db, id, run_id, user.id()).await?.ok_or_else(run_not_found)?;
    Ok(ok(views::Run::from(run), "Analysis run retrieved successfully."))
}

/// Requests cancellation; the run becomes CANCELLED when its workflow has wound down (§6.4).
#[utoipa::path(
    post, path = "/{id}/runs/{runId}/cancel", tag = TAG_MEDIA, summary = "Cancel an analysis run",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    params(("id" = Uuid, Path, description = "Media id"), ("runId" = Uuid, Path, description = "Run id")),
    responses(
        (status = 202, description = "`Cancellation requested for this analysis run.` (the run as currently stored; it becomes `CANCELLED` asynchronously)", body = Success<Run>),
        (status = 400, description = "`Validation failed`: `Invalid media id` / `Invalid run id`", body = ErrorBody),
        (status = 404, description = "`Analysis run not found or you do not have permission.`", body = ErrorBody),
        (status = 409, description = "`Analysis run has already finished.`", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(media.id = %id))]
pub async fn cancel_run(
    State(state): State<AppState>,
    user: AuthUser,
    MediaId(id): MediaId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Envelope<Run>> {
    let run_id = parse_id(run_id_param(&params), "Invalid run id")?;
    let handle = db_media::find_run_handle(&state.db, id, run_id, user.id()).await?.ok_or_else(run_not_found)?;
    if handle.status.is_terminal() {
        return Err(ApiError::conflict("Analysis run has already finished."));
    }
    let reason = "Cancelled by the user";
    let outcome = analysis::cancel(&state, &handle.workflow_id, reason).await.map_err(ApiError::unavailable)?;
    if outcome == Cancelled::NoWorkflow {
        analysis::cancel_unstarted(&state, run_id, &handle.workflow_id, reason).await.map_err(ApiError::unavailable)?;
    }
    tracing::info!(run.id = %run_id, "run cancellation requested");
    let run = db_media::find_run(&state.db, id, run_id, user.id()).await?.ok_or_else(run_not_found)?;
    Ok(with_status(StatusCode::ACCEPTED, views::Run::from(run), "Cancellation requested for this analysis run."))
}
