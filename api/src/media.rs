//! `/api/v1/media` (§4.3: uploads, media, runs) and the files under `/media/` (§4.6).

mod analysis;
pub(crate) mod files;
mod handlers;
mod multipart;
pub(crate) mod results;
mod sniff;
mod upload;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use files::serve_file;
pub use handlers::{cancel_run, delete_media, get_media, get_run, list_media, rerun_analysis, update_media};
pub use upload::upload_media;

/// 404 of every media route.
pub const MEDIA_NOT_FOUND: &str = "Media not found or you do not have permission.";
/// 404 of the run routes.
pub const RUN_NOT_FOUND: &str = "Analysis run not found or you do not have permission.";

pub fn router() -> OpenApiRouter<AppState> {
    // Uploads are streamed to storage and bounded by MAX_UPLOAD_BYTES (plus a margin, see
    // `multipart`), not by the JSON limit.
    let (schemas, paths, upload) = routes!(upload::upload_media);
    OpenApiRouter::new()
        .routes((schemas, paths, upload.layer(DefaultBodyLimit::disable())))
        .routes(routes!(handlers::list_media))
        .routes(routes!(handlers::get_media, handlers::update_media, handlers::delete_media))
        .routes(routes!(handlers::rerun_analysis))
        .routes(routes!(handlers::get_run))
        .routes(routes!(handlers::cancel_run))
        .routes(routes!(results::get_analysis_result))
}

/// `/media/{*key}`: a wildcard, which OpenAPI paths cannot express; the document describes it as
/// `/media/{key}` (see `ApiDoc`), and the route-coverage test maps one to the other.
pub fn files_router() -> Router<AppState> {
    Router::new().route("/media/{*key}", get(serve_file))
}
