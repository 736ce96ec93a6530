//! The error responses of §7.1, one variant per row the stand-in can produce.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::catalogue::MediaType;

/// An error answer with exactly the contract's status and body.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// Missing or wrong `X-API-Key`.
    Unauthorized,
    /// No `media` part (or not a multipart form at all).
    MissingMedia,
    /// `media` sent as a plain text field; carries the (truncated) text.
    MediaNotFile(String),
    /// The multipart body could not be parsed.
    MalformedBody,
    EmptyFile,
    /// Carries the part filename.
    UnknownMediaType(String),
    /// Unknown or not-loaded model.
    ModelUnavailable(String),
    ModelLacksType {
        model: String,
        media: MediaType,
    },
    NoModelForType(MediaType),
    MediaProcessing {
        reason: String,
        correlation_id: String,
    },
    Inference {
        primary: String,
        fallback: String,
        correlation_id: String,
    },
    Internal {
        correlation_id: String,
    },
    /// 429 with `Retry-After: 1` (stand-in only).
    RateLimited,
    NotFound,
    MethodNotAllowed,
    /// `PUT /__standin/catalogue` with an unusable catalogue.
    InvalidCatalogue(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MissingMedia
            | Self::MediaNotFile(_)
            | Self::ModelUnavailable(_)
            | Self::ModelLacksType { .. }
            | Self::NoModelForType(_)
            | Self::MediaProcessing { .. }
            | Self::InvalidCatalogue(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedBody | Self::EmptyFile => StatusCode::BAD_REQUEST,
            Self::UnknownMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Inference { .. } | Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            Self::Unauthorized => json!({"detail": "Invalid or missing API Key"}),
            Self::MissingMedia => json!({"detail": [
                {"type": "missing", "loc": ["body", "media"], "msg": "Field required", "input": null}
            ]}),
            Self::MediaNotFile(input) => json!({"detail": [
                {"type": "value_error", "loc": ["body", "media"],
                 "msg": "Value error, Expected UploadFile, received: <class 'str'>", "input": input}
            ]}),
            Self::MalformedBody => json!({"detail": "There was an error parsing the body"}),
            Self::EmptyFile => json!({"detail": "Uploaded media file is empty."}),
            Self::UnknownMediaType(name) => {
                json!({"detail": format!("Could not determine media type for file '{name}'.")})
            }
            Self::ModelUnavailable(model) => {
                json!({"detail": format!("Requested model '{model}' is not active or available.")})
            }
            Self::ModelLacksType { model, media } => json!({"detail": format!(
                "The selected model '{model}' does not support media of type '{}'.",
                media.upper()
            )}),
            Self::NoModelForType(media) => json!({"detail": format!(
                "No active models found that can process media of type '{}'.",
                media.upper()
            )}),
            Self::MediaProcessing { reason, correlation_id } => json!({"detail": {
                "error": "Media Processing Error",
                "message": format!("Media could not be processed. Reason: {reason}"),
                "correlation_id": correlation_id,
            }}),
            Self::Inference { primary, fallback, correlation_id } => json!({"detail": {
                "error": "Inference Error",
                "message": "Model inference failed and all fallbacks exhausted.",
                "primary_error": primary,
                "fallback_error": fallback,
                "correlation_id": correlation_id,
            }}),
            Self::Internal { correlation_id } => json!({"detail": {
                "error": "Internal Server Error",
                "message": "An unknown server error occurred.",
                "correlation_id": correlation_id,
            }}),
            Self::RateLimited => json!({"detail": "Too many requests"}),
            Self::NotFound => json!({"detail": "Not Found"}),
            Self::MethodNotAllowed => json!({"detail": "Method Not Allowed"}),
            Self::InvalidCatalogue(msg) => json!({"detail": msg}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if self == Self::RateLimited {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
