//! Streaming read of the `/analyze` form (§5): the `media` part is hashed, scanned for markers
//! and counted chunk by chunk; only its first [`HEAD_LEN`] bytes are kept (image dimensions).

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use sha2::{Digest, Sha256};

use crate::failure::Marker;
use crate::image::HEAD_LEN;
use crate::scan::MarkerScanner;

/// Text fields longer than this are truncated (they are ids and model names).
const MAX_TEXT: usize = 64 * 1024;

/// What is kept of the uploaded file.
#[derive(Debug, Clone)]
pub struct MediaUpload {
    /// The part filename as sent (the media type comes only from its extension).
    pub filename: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// `STANDIN:` markers, in file order.
    pub markers: Vec<Marker>,
    /// The first bytes of the file.
    pub head: Vec<u8>,
}

/// The `media` field: a file part, or (a client error) a plain text field.
#[derive(Debug, Clone)]
pub enum MediaField {
    File(MediaUpload),
    Text(String),
}

/// The fields of the `/analyze` form the stand-in uses.
#[derive(Debug, Clone, Default)]
pub struct Form {
    pub media: Option<MediaField>,
    pub model: Option<String>,
    pub media_id: Option<String>,
    pub user_id: Option<String>,
}

/// Reads the whole form; unknown fields and repeated `media` parts are skipped unread.
pub async fn read_form(mut multipart: Multipart) -> Result<Form, MultipartError> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await? {
        match field.name().unwrap_or_default() {
            "media" if form.media.is_none() => {
                form.media = Some(match field.file_name().map(str::to_owned) {
                    Some(filename) => MediaField::File(read_file(field, filename).await?),
                    None => MediaField::Text(read_text(field).await?),
                });
            }
            "model" => form.model = Some(read_text(field).await?),
            "mediaId" => form.media_id = Some(read_text(field).await?),
            "userId" => form.user_id = Some(read_text(field).await?),
            _ => {}
        }
    }
    Ok(form)
}

async fn read_file(mut field: Field<'_>, filename: String) -> Result<MediaUpload, MultipartError> {
    let mut hasher = Sha256::new();
    let mut scanner = MarkerScanner::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await? {
        hasher.update(&chunk);
        scanner.feed(&chunk);
        if head.len() < HEAD_LEN {
            let take = (HEAD_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        size += chunk.len() as u64;
    }
    Ok(MediaUpload { filename, size, sha256: hasher.finalize().into(), markers: scanner.finish(), head })
}

async fn read_text(mut field: Field<'_>) -> Result<String, MultipartError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        let take = (MAX_TEXT - bytes.len()).min(chunk.len());
        bytes.extend_from_slice(&chunk[..take]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
