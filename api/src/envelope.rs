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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a, T> {
    status_code: u16,
    data: &'a T,
    message: &'a str,
    success: bool,
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        let body = Body { status_code: self.status.as_u16(), data: &self.data, message: &self.message, success: true };
        (self.status, Json(body)).into_response()
    }
}

pub fn ok<T: Serialize>(data: T, message: &'static str) -> Envelope<T> {
    Envelope { status: StatusCode::OK, data, message: message.into() }
}

pub fn with_status<T: Serialize>(status: StatusCode, data: T, message: &'static str) -> Envelope<T> {
    Envelope { status, data, message: message.into() }
}
