//! The one error type of the api: every error response is the contract's envelope (§1.3).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const INTERNAL_MESSAGE: &str = "An unexpected internal server error occurred.";
pub const UNAVAILABLE_MESSAGE: &str = "Service temporarily unavailable. Please try again.";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
    pub headers: Option<Box<HeaderMap>>,
    /// Logged once when the response is built; never shown to the client.
    pub source: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: Vec::new(), headers: None, source: None }
    }

    pub fn validation(errors: Vec<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Validation failed").with_errors(errors)
    }

    pub fn validation_one(error: impl Into<String>) -> Self {
        Self::validation(vec![error.into()])
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden: administrator role required.")
    }

    pub fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let mut err = Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE);
        err.source = Some(e.into());
        err
    }

    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE);
        err.source = Some(e.into());
        err
    }

    pub fn with_errors(mut self, errors: Vec<String>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_with(Default::default).insert(name, value);
        self
    }
}

/// Database errors: an unreachable database is a 503, anything else a 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => Self::unavailable(e),
            other => Self::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

/// The body of every error response (§1.3); also its schema in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "statusCode": 400, "success": false, "message": "Validation failed",
    "errors": ["Password must be at least 8 characters long"]
}))]
pub struct ErrorBody {
    /// Equals the HTTP status.
    pub status_code: u16,
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// One entry per problem; `[]` when there is nothing to add.
    pub errors: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source
            && self.status.is_server_error()
        {
            tracing::error!(status = self.status.as_u16(), error = %format!("{source:#}"), "request failed");
        }
        let body =
            ErrorBody { status_code: self.status.as_u16(), success: false, message: self.message, errors: self.errors };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(headers) = self.headers {
            resp.headers_mut().extend(*headers);
        }
        resp
    }
}
