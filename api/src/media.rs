//! `/api/v1/media` (§4.3: uploads, media, runs) and the files under `/media/` (§4.6).

mod analysis;
mod files;
mod handlers;
mod upload;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;

pub use files::serve_file;
pub use handlers::{cancel_run, delete_media, get_media, get_run, list_media, rerun_analysis, update_media};
pub use upload::upload_media;

/// 404 of every media route.
pub const MEDIA_NOT_FOUND: &str = "Media not found or you do not have permission.";
/// 404 of the run routes.
pub const RUN_NOT_FOUND: &str = "Analysis run not found or you do not have permission.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            // Uploads are streamed to storage and bounded by MAX_UPLOAD_BYTES, not by the JSON limit.
            post(upload_media).layer(DefaultBodyLimit::disable()).get(list_media),
        )
        .route("/{id}", get(get_media).patch(update_media).delete(delete_media))
        .route("/{id}/analyze", post(rerun_analysis))
        .route("/{id}/runs/{runId}", get(get_run))
        .route("/{id}/runs/{runId}/cancel", post(cancel_run))
}

pub fn files_router() -> Router<AppState> {
    Router::new().route("/media/{*key}", get(serve_file))
}
