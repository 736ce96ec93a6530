//! `POST /api/v1/media`: a multipart upload streamed into storage (§5), then the media row, run #1
//! and the workflow start (§4.3).
//!
//! Problems are reported in the order of the contract's table (§5.1). Problems known when a part
//! starts (an unexpected file) end the request at once, the size limit ends it as soon as it is
//! exceeded, and the rest are decided once the body has been read. A file is only written when
//! its name and type are acceptable; whatever was written is removed on every error path.
//!
//! Nothing is read without a bound (see [`super::multipart`]): the whole body, each part's headers,
//! and each text field. A text field past its bound ends the request at once: a description longer
//! than any 500 characters can be is refused then, before the parts after it are seen.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use multer::{Field, Multipart};
use serde_json::json;
use tracing::instrument;
use uuid::Uuid;

use drishtiksha_common::db::media::{self as db_media, Media, NewUpload};
use drishtiksha_common::events::ProgressMessage;
use drishtiksha_common::model::{AcceptedType, accepted_type, extension_of, normalise_mime};
use drishtiksha_common::storage::Upload;
use drishtiksha_common::workflow::workflow_id;

use super::analysis::{self, RunToStart};
use super::multipart::{BodyProblem, UploadBody};
use super::sniff;
use crate::auth::AuthUser;
use crate::envelope::{Success, with_status};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Lines, clean_text};
use crate::openapi::TAG_MEDIA;
use crate::state::AppState;
use crate::views;

const FILE_FIELD: &str = "media";
const MAX_FILENAME_BYTES: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// A description longer than this many bytes has more than 500 characters whatever its encoding.
const DESCRIPTION_BYTE_CAP: usize = MAX_DESCRIPTION_CHARS * 4;
/// Longest text field that is read and ignored.
const IGNORED_FIELD_LIMIT: usize = 64 * 1024;

fn file_required() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "A file is required for upload.")
}

fn unexpected_file(field: &str) -> ApiError {
    ApiError::validation_one(format!("Unexpected file field '{field}'. Upload one file in the 'media' field."))
}

/// A description or file name with a character that cannot be stored (NUL).
pub const INVALID_DESCRIPTION: &str = "Description contains an invalid character";
const INVALID_FILENAME: &str = "Filename contains an invalid character.";

fn description_too_long() -> ApiError {
    ApiError::validation_one(format!("Description must be at most {MAX_DESCRIPTION_CHARS} characters"))
}

/// A body that cannot be read: too large for the upload limit, or malformed (§5.1).
fn body_problem(e: &multer::Error, limit: u64) -> ApiError {
    match BodyProblem::of(e) {
        BodyProblem::TooLarge => too_large(limit),
        BodyProblem::Malformed => {
            tracing::debug!(error = %e, "malformed multipart body");
            file_required()
        }
    }
}

fn filename_too_long() -> ApiError {
    ApiError::validation_one("Filename is too long.")
}

/// `N` of the 413 message: the limit in MiB, with decimals only when it is not a whole number.
fn limit_in_mb(limit: u64) -> String {
    const MIB: u64 = 1_048_576;
    if limit.is_multiple_of(MIB) {
        (limit / MIB).to_string()
    } else {
        let mb = format!("{:.2}", limit as f64 / MIB as f64);
        mb.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("File too large. The maximum size is {} MB.", limit_in_mb(limit)),
    )
}

/// The client's file name without any path components (`../../etc/passwd.png` → `passwd.png`).
pub fn strip_path(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The bytes of the `media` part on their way into storage (only when name and type are
/// acceptable; otherwise they are just counted, so the size rule still applies).
struct Stored {
    upload: Upload,
    key: String,
    accepted: AcceptedType,
}

/// The `media` part as received.
struct ReceivedFile {
    filename: String,
    declared_mime: String,
    size: u64,
    /// The first bytes, for the content check.
    head: Vec<u8>,
    stored: Option<Stored>,
}

impl ReceivedFile {
    async fn discard(self) {
        if let Some(stored) = self.stored {
            stored.upload.abort().await;
        }
    }
}

/// The multipart body of an upload, as read part by part: the file is streamed into storage while
/// it arrives, so `media` holds where it went, not its bytes.
#[derive(Default, utoipa::ToSchema)]
pub struct UploadMediaRequest {
    /// Exactly one file. Its declared type must be one of the accepted ones (`video/mp4`,
    /// `video/webm`, `video/quicktime`, `video/x-msvideo`, `video/x-matroska`, `image/jpeg`,
    /// `image/png`, `image/webp`, `image/gif`, `audio/mpeg`, `audio/wav`, `audio/ogg`, `audio/mp4`
    /// and their aliases) and the file name's extension must match it.
    #[schema(value_type = String, required = true, format = Binary, content_media_type = "application/octet-stream")]
    media: Option<ReceivedFile>,
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u000C\u000E-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    description: Option<String>,
    /// A description past its bound, noticed while it arrived.
    #[schema(ignore)]
    description_too_long: bool,
}

impl UploadMediaRequest {
    async fn discard(self) {
        if let Some(f) = self.media {
            f.discard().await;
        }
    }
}

/// An upload that passed every rule: the file is stored under `key`.
struct Accepted {
    upload: Upload,
    key: String,
    accepted: AcceptedType,
    filename: String,
    description: Option<String>,
}

/// Stores the file as uploaded, creates the media and run #1, and starts the analysis.
#[utoipa::path(
    post, path = "/", tag = TAG_MEDIA, summary = "Upload a file and start its first analysis run",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    request_body(content = UploadMediaRequest, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "`Media uploaded and successfully queued for its first analysis run.` (the media without `user` and `analysisRuns`)", body = Success<views::Media>),
        (status = 400, description = "`A file is required for upload.`, or `Validation failed` (unexpected file field, empty file, file name too long, description too long, `File content does not match its type '<mime>'.` when the file does not start like one of its declared type)", body = ErrorBody),
        (status = 413, description = "`File too large. The maximum size is <N> MB.`, or `Request body too large.` (a text field other than `description` over 64 kB)", body = ErrorBody),
        (status = 415, description = "`Unsupported file type: '<mime>'. …` or `File extension '<ext>' does not match MIME type '<mime>'.`", body = ErrorBody),
        (status = 503, description = "A dependency the upload needs (database, storage) is unavailable; nothing of the upload is kept. (When only Temporal is away the upload is still accepted: 202, its run QUEUED and started once Temporal is back.)", body = ErrorBody),
    ),
)]
#[instrument(skip_all, fields(user.id = %user.id()))]
pub async fn upload_media(
    State(state): State<AppState>,
    user: AuthUser,
    UploadBody(multipart): UploadBody,
) -> ApiResult<Response> {
    let multipart = multipart.map_err(|problem| match problem {
        BodyProblem::TooLarge => too_large(state.config.max_upload_bytes),
        BodyProblem::Malformed => file_required(),
    })?;
    let media_id = Uuid::new_v4();
    let accepted = receive(&state, multipart, media_id).await?;
    // From here on the work completes even if the client goes away, so a stored file never
    // outlives a failed insert and a committed run always gets its start attempt.
    let user_id = user.id();
    tokio::spawn(async move { persist_and_start(state, user_id, media_id, accepted).await })
        .await
        .map_err(ApiError::internal)?
}

/// Reads the whole body, applying §5.1; on success the file is still pending in storage.
async fn receive(state: &AppState, mut multipart: Multipart<'static>, media_id: Uuid) -> ApiResult<Accepted> {
    let limit = state.config.max_upload_bytes;
    let mut received = UploadMediaRequest::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                received.discard().await;
                return Err(body_problem(&e, limit));
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        // Browsers send an empty `filename=""` part for a file input left empty: that is no file.
        let file_name = field.file_name().filter(|n| !n.is_empty()).map(str::to_string);
        let step = match file_name {
            Some(_) if name != FILE_FIELD || received.media.is_some() => Err(unexpected_file(&name)),
            Some(raw) => receive_file(state, field, &raw, media_id, limit, &mut received).await,
            None if name == "description" => receive_description(field, limit, &mut received).await,
            None => drain(field, limit).await,
        };
        if let Err(e) = step {
            received.discard().await;
            return Err(e);
        }
    }
    decide(received).await
}

/// The rules that need the whole body, in the order of §5.1.
async fn decide(received: UploadMediaRequest) -> ApiResult<Accepted> {
    let problem = match &received.media {
        None => Some(file_required()),
        Some(f) if f.size == 0 => Some(ApiError::validation_one("Uploaded file is empty.")),
        Some(f) if f.filename.len() > MAX_FILENAME_BYTES => Some(filename_too_long()),
        Some(f) if clean_text(&f.filename, Lines::One).is_none() => Some(ApiError::validation_one(INVALID_FILENAME)),
        Some(_) if received.description_too_long => Some(description_too_long()),
        Some(_) if received.description.as_deref().is_some_and(|d| clean_text(d, Lines::Many).is_none()) => {
            Some(ApiError::validation_one(INVALID_DESCRIPTION))
        }
        Some(f) => match accepted_type(&f.declared_mime) {
            None => Some(unsupported_type(&f.declared_mime)),
            Some(t) if !t.extensions.contains(&extension_of(&f.filename).as_str()) => {
                Some(extension_mismatch(&f.filename, &f.declared_mime))
            }
            Some(t) if !sniff::content_matches(t.canonical_mime, &f.head) => {
                Some(ApiError::validation_one(content_mismatch(t.canonical_mime)))
            }
            Some(_) => None,
        },
    };
    if let Some(problem) = problem {
        received.discard().await;
        return Err(problem);
    }
    let UploadMediaRequest { media: file, description, .. } = received;
    let Some(file) = file else { return Err(file_required()) };
    match file.stored {
        Some(Stored { upload, key, accepted }) => Ok(Accepted {
            upload,
            key,
            accepted,
            filename: file.filename,
            description: description.and_then(|d| clean_text(&d, Lines::Many)).filter(|d| !d.is_empty()),
        }),
        // Only parts with an acceptable name and type are stored, and those pass every rule above.
        None => Err(ApiError::internal(anyhow::anyhow!("accepted upload was not stored"))),
    }
}

/// The file does not start like a file of its declared type.
fn content_mismatch(mime: &str) -> String {
    format!("File content does not match its type '{mime}'.")
}

fn unsupported_type(declared: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Unsupported file type: '{}'. Please upload a valid video, image, or audio file.",
            normalise_mime(declared)
        ),
    )
}

fn extension_mismatch(filename: &str, declared: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("File extension '{}' does not match MIME type '{}'.", extension_of(filename), normalise_mime(declared)),
    )
}

async fn receive_file(
    state: &AppState,
    mut field: Field<'static>,
    raw_name: &str,
    media_id: Uuid,
    limit: u64,
    received: &mut UploadMediaRequest,
) -> ApiResult<()> {
    // Stored NFC-normalised and trimmed; a name with a refused character is kept as sent, and
    // refused once the body has been read.
    let filename = clean_text(strip_path(raw_name), Lines::One).unwrap_or_else(|| strip_path(raw_name).to_string());
    let declared_mime = field.content_type().map_or("application/octet-stream".to_string(), |m| m.to_string());
    let ext = extension_of(&filename);
    let storable = accepted_type(&declared_mime).filter(|t| {
        filename.len() <= MAX_FILENAME_BYTES
            && clean_text(&filename, Lines::One).is_some()
            && t.extensions.contains(&ext.as_str())
    });
    let stored = match storable {
        Some(accepted) => {
            let key = format!("{}/{media_id}{ext}", accepted.media_type.storage_folder());
            let upload = state.storage.begin_upload(&key, accepted.canonical_mime).await.map_err(ApiError::internal)?;
            Some(Stored { upload, key, accepted })
        }
        None => None,
    };
    let description_rejected = received.description_too_long;
    let file = received.media.insert(ReceivedFile { filename, declared_mime, size: 0, head: Vec::new(), stored });
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "upload body ended early");
                return Err(body_problem(&e, limit));
            }
        };
        file.size += chunk.len() as u64;
        let wanted = sniff::HEAD_BYTES.saturating_sub(file.head.len()).min(chunk.len());
        file.head.extend_from_slice(&chunk[..wanted]);
        if file.size > limit {
            // Problems that rank above the size limit and are already known still win.
            if file.filename.len() > MAX_FILENAME_BYTES {
                return Err(filename_too_long());
            }
            if description_rejected {
                return Err(description_too_long());
            }
            return Err(too_large(limit));
        }
        if let Some(stored) = &mut file.stored {
            stored.upload.write(&chunk).await.map_err(ApiError::internal)?;
        }
    }
}

/// Reads a description; one longer than any 500 characters can be ends the request at once.
async fn receive_description(
    mut field: Field<'static>,
    limit: u64,
    received: &mut UploadMediaRequest,
) -> ApiResult<()> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > DESCRIPTION_BYTE_CAP {
                    return Err(description_too_long());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(body_problem(&e, limit)),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    received.description_too_long = text.chars().count() > MAX_DESCRIPTION_CHARS;
    received.description = Some(text);
    Ok(())
}

/// Other text fields are ignored, up to [`IGNORED_FIELD_LIMIT`] bytes each.
async fn drain(mut field: Field<'static>, limit: u64) -> ApiResult<()> {
    let mut size = 0;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len();
                if size > IGNORED_FIELD_LIMIT {
                    return Err(crate::extract::too_large());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(body_problem(&e, limit)),
        }
    }
}

async fn remove_stored(state: &AppState, key: &str) {
    if let Err(del) = state.storage.delete(key).await {
        tracing::error!(storage.key = %key, error = %del, "stored file of a failed upload could not be removed");
    }
}

/// Makes the file visible, inserts media + run #1 in one transaction, announces the upload and
/// starts the workflow.
async fn persist_and_start(state: AppState, user_id: Uuid, media_id: Uuid, accepted: Accepted) -> ApiResult<Response> {
    let Accepted { upload, key, accepted, filename, description } = accepted;
    let size = upload.finish().await.map_err(ApiError::internal)?;
    let run_id = Uuid::new_v4();
    let workflow_id = workflow_id(media_id, 1);
    let url = match state.storage.public_url(&key, &state.config.common.public_base_url).await {
        Ok(url) => url,
        Err(e) => {
            remove_stored(&state, &key).await;
            return Err(ApiError::internal(e));
        }
    };
    let new = NewUpload {
        media_id,
        user_id,
        filename: &filename,
        storage_key: &key,
        url: &url,
        mimetype: accepted.canonical_mime,
        size: i64::try_from(size).map_err(ApiError::internal)?,
        description: description.as_deref(),
        media_type: accepted.media_type,
        run_id,
        workflow_id: &workflow_id,
    };
    let media = match insert(&state, &new).await {
        Ok(media) => media,
        Err(e) => {
            remove_stored(&state, &key).await;
            return Err(e.into());
        }
    };
    tracing::info!(media.id = %media_id, run.id = %run_id, size, "media uploaded");

    state
        .events
        .publish(&ProgressMessage::backend(
            media_id,
            user_id,
            "MEDIA_UPLOADED",
            format!("Media \"{filename}\" uploaded and queued for analysis"),
            json!({
                "filename": filename,
                "mediaType": media.media_type,
                "status": "QUEUED",
                "runId": run_id,
                "runNumber": 1,
            }),
        ))
        .await;

    let run =
        RunToStart { run_id, media_id, user_id, run_number: 1, workflow_id, media_type: media.media_type, filename };
    analysis::start_or_queue(&state, run).await;
    Ok(with_status(
        StatusCode::ACCEPTED,
        views::Media::from(media),
        "Media uploaded and successfully queued for its first analysis run.",
    )
    .into_response())
}

async fn insert(state: &AppState, new: &NewUpload<'_>) -> Result<Media, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let media = db_media::insert_upload(&mut tx, new).await?;
    tx.commit().await?;
    drishtiksha_common::metrics::UPLOADS.inc();
    drishtiksha_common::metrics::UPLOAD_BYTES.inc_by(u64::try_from(media.size).unwrap_or(0));
    Ok(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_stripped_from_file_names() {
        assert_eq!(strip_path("../../etc/passwd.png"), "passwd.png");
        assert_eq!(strip_path("C:\\Users\\ada\\clip.mp4"), "clip.mp4");
        assert_eq!(strip_path("clip.mp4"), "clip.mp4");
        assert_eq!(strip_path("dir/"), "");
    }

    #[test]
    fn the_limit_is_shown_in_whole_megabytes_when_possible() {
        assert_eq!(limit_in_mb(157_286_400), "150");
        assert_eq!(limit_in_mb(1_048_576), "1");
        assert_eq!(limit_in_mb(1_572_864), "1.5");
    }
}
