//! The success envelope (§1.2): `{ statusCode, data, message, success }` in that order.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub struct Envelope<T> {
    pub status: StatusCode,
    pub data: T,
    pub message: std::borrow::Cow<'static, str>,
}

impl<T> Envelope<T> {
    /// A message composed at run time (counts in maintenance messages).
    pub fn with_message(mut self, message: String) -> Self {
        self.message = message.into();
        self
    }
}

/// The body of a success response; also its schema in the OpenAPI document (`Success_<data>`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Success<T> {
    /// Equals the HTTP status.
    #[schema(example = 200)]
    pub status_code: u16,
    pub data: T,
    /// The endpoint's success message.
    #[schema(example = "Success")]
    pub message: String,
    /// Always `true`.
    #[schema(example = true)]
    pub success: bool,
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        let body = Success {
            status_code: self.status.as_u16(),
            data: self.data,
            message: self.message.into_owned(),
            success: true,
        };
        (self.status, Json(body)).into_response()
    }
}

pub fn ok<T: Serialize>(data: T, message: &'static str) -> Envelope<T> {
    Envelope { status: StatusCode::OK, data, message: message.into() }
}

pub fn with_status<T: Serialize>(status: StatusCode, data: T, message: &'static str) -> Envelope<T> {
    Envelope { status, data, message: message.into() }
}
