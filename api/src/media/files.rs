//! `GET|HEAD /media/<key>` (§4.6): regular files below the local storage root, streamed from disk,
//! with validators, conditional requests and single byte ranges.

use std::io::SeekFrom;
use std::path::Path as FsPath;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use drishtiksha_common::db::media as db_media;
use drishtiksha_common::model::extension_of;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

const READ_BUFFER: usize = 256 * 1024;

fn not_found() -> Response {
    ApiError::not_found("File not found.").into_response()
}

/// Files below the local storage root, with validators, conditional requests and single ranges.
/// URLs are capabilities: no authentication. `key` may contain `/` (`videos/<id>.mp4`).
#[utoipa::path(
    get, path = "/media/{key}", tag = crate::openapi::TAG_FILES, summary = "A stored file",
    params(
        ("key" = String, Path, description = "Storage key (`publicId`), e.g. `videos/<id>.mp4`"),
        ("Range" = Option<String>, Header, description = "A single byte range, e.g. `bytes=0-1023`"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy"),
    ),
    responses(
        (status = 200, description = "The file, with its stored MIME type", content_type = "*/*", body = Vec<u8>,
            headers(("ETag" = String), ("Last-Modified" = String), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range", content_type = "*/*", body = Vec<u8>,
            headers(("Content-Range" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "`File not found.`", body = ErrorBody),
        (status = 416, description = "Range not satisfiable", headers(("Content-Range" = String))),
        (status = 500, description = "The file could not be read", body = ErrorBody),
    ),
)]
pub async fn serve_file(
    State(state): State<AppState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(key)) = key else { return not_found() };
    match serve(&state, &key, &method, &headers).await {
        Ok(resp) => resp,
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `results/<runId>/artifacts/…`: an ML artifact copied into our storage (public by URL like the
/// media); the rest of `results/` (the kept ML answers) is served only through the owner's
/// result endpoint.
fn is_artifact_key(key: &str) -> bool {
    let mut parts = key.split('/');
    parts.next() == Some("results") && parts.next().is_some() && parts.next() == Some("artifacts")
}

async fn serve(state: &AppState, key: &str, method: &Method, headers: &HeaderMap) -> anyhow::Result<Response> {
    let artifact = is_artifact_key(key);
    if key.starts_with("results/") && !artifact {
        return Ok(not_found());
    }
    let Some(local) = state.storage.local() else {
        // Artifacts keep one stable URL here whatever the store; the object store serves the bytes.
        if artifact && state.storage.exists(key).await.unwrap_or(false) {
            let url = state.storage.public_url(key, &state.config.common.public_base_url).await?;
            return Ok(axum::response::Redirect::temporary(&url).into_response());
        }
        return Ok(not_found());
    };
    // Hidden names include uploads still being written (`.<name>.part`).
    if key.split('/').any(|segment| segment.starts_with('.')) {
        return Ok(not_found());
    }
    let Ok(path) = local.path_of(key) else { return Ok(not_found()) };
    // A symlink must not lead out of the root.
    let resolved = match tokio::fs::canonicalize(&path).await {
        Ok(p) if p.starts_with(local.root()) => p,
        Ok(_) => return Ok(not_found()),
        Err(e) if is_missing(&e) => return Ok(not_found()),
        Err(e) => return Err(e.into()),
    };
    let meta = match tokio::fs::metadata(&resolved).await {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(not_found()),
        Err(e) if is_missing(&e) => return Ok(not_found()),
        Err(e) => return Err(e.into()),
    };
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = etag_of(len, modified);
    let last_modified = http_date(modified);

    let content_type = match db_media::mimetype_by_storage_key(&state.db, key).await? {
        Some(mime) => mime,
        None => mime_by_extension(key).to_string(),
    };

    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::ETAG, HeaderValue::from_str(&etag)?);
    out.insert(header::LAST_MODIFIED, HeaderValue::from_str(&last_modified)?);

    if not_modified(headers, &etag, modified) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type)?);

    let range = if if_range_holds(headers, &etag, &last_modified) {
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, len))
    } else {
        None
    };
    let (status, start, count) = match range {
        None | Some(RangeSpec::Whole) => (StatusCode::OK, 0, len),
        Some(RangeSpec::Unsatisfiable) => {
            out.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}"))?);
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, out).into_response());
        }
        Some(RangeSpec::Bytes { start, end }) => {
            out.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))?);
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return Ok((status, out).into_response());
    }
    let mut file = match tokio::fs::File::open(&resolved).await {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return Ok(not_found()),
        Err(e) => return Err(e.into()),
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file.take(count), READ_BUFFER));
    Ok((status, out, body).into_response())
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
}

fn etag_of(len: u64, modified: SystemTime) -> String {
    let nanos = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("\"{len:x}-{nanos:x}\"")
}

fn http_date(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim()).ok().map(|d| d.with_timezone(&Utc))
}

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let ours = etag.trim_start_matches("W/");
        return inm.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    let Some(since) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(parse_http_date)
    else {
        return false;
    };
    DateTime::<Utc>::from(modified).timestamp() <= since.timestamp()
}

/// A range applies unless `If-Range` names another version.
fn if_range_holds(headers: &HeaderMap, etag: &str, last_modified: &str) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).map(str::trim) {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => v == last_modified,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Not a single byte range we serve partially (other unit, several ranges, bad syntax).
    Whole,
    Unsatisfiable,
    Bytes {
        start: u64,
        end: u64,
    },
}

fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeSpec::Whole };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeSpec::Whole };
    let (first, last) = (first.trim(), last.trim());
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => {
            if start >= len {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes { start, end: end.min(len - 1) }
            }
        }
        (Ok(start), Err(_)) if last.is_empty() => {
            if start >= len {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes { start, end: len - 1 }
            }
        }
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes { start: len.saturating_sub(suffix), end: len - 1 }
            }
        }
        _ => RangeSpec::Whole,
    }
}

/// Content types of files that are not uploads (e.g. `visualizations/…png`).
fn mime_by_extension(key: &str) -> &'static str {
    let name = FsPath::new(key).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match extension_of(name).as_str() {
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".gif" => "image/gif",
        ".webp" => "image/webp",
        ".svg" => "image/svg+xml",
        ".mp4" | ".m4v" => "video/mp4",
        ".webm" => "video/webm",
        ".mov" => "video/quicktime",
        ".avi" => "video/x-msvideo",
        ".mkv" => "video/x-matroska",
        ".mp3" | ".mpeg" => "audio/mpeg",
        ".wav" => "audio/wav",
        ".ogg" => "audio/ogg",
        ".m4a" => "audio/mp4",
        ".json" => "application/json",
        ".txt" => "text/plain; charset=utf-8",
        ".pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_parsed_and_clamped() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Bytes { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-200", 100), RangeSpec::Bytes { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=10-", 100), RangeSpec::Bytes { start: 10, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Bytes { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-200", 100), RangeSpec::Bytes { start: 0, end: 99 });
    }

    #[test]
    fn unsatisfiable_and_unsupported_ranges_are_told_apart() {
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=200-300", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Whole);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Whole);
    }

    #[test]
    fn http_dates_round_trip() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        let s = http_date(t);
        assert_eq!(s, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(&s).map(|d| d.timestamp()), Some(784_111_777));
    }
}
