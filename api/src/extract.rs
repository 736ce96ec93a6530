//! Extractors that answer in the contract's envelope: JSON bodies (§1.1, §1.4) and UUID path ids.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;

/// JSON bodies are limited to 64 kB (65 536 bytes).
pub const JSON_LIMIT: usize = 65_536;

/// A JSON object body. Non-object JSON is answered as a validation failure by the handlers,
/// which read fields one by one to produce the contract's messages.
pub struct JsonBody(pub Map<String, Value>);

pub fn is_json_content_type(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else { return false };
    let mime = v.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

pub fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json."));
        }
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > JSON_LIMIT as u64) {
            return Err(too_large());
        }
        let body: Body = req.into_body();
        let bytes = axum::body::to_bytes(body, JSON_LIMIT).await.map_err(|e| {
            if is_length_limit(&e) {
                too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "Malformed JSON in request body.")
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::validation_one("Request body must be a JSON object")),
            Err(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "Malformed JSON in request body.")),
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A body field of the wrong JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAString;

/// Reads a string field; `Err(NotAString)` when present but not a string.
pub fn str_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, NotAString> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(NotAString),
    }
}

/// Whether text can be stored: PostgreSQL `text` cannot hold NUL characters, so a value with one
/// is refused as invalid input instead of failing the write.
pub fn is_storable_text(s: &str) -> bool {
    !s.contains('\0')
}

/// Parses a path id; anything that is not a UUID is a validation failure with `message`.
pub fn parse_id(raw: &str, message: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::validation_one(message))
}

/// `:id` of media routes.
pub struct MediaId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for MediaId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(params) =
            axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::validation_one("Invalid media id"))?;
        let raw = params.get("id").map(String::as_str).unwrap_or("");
        parse_id(raw, "Invalid media id").map(Self)
    }
}
