//! Accounts (§4.2) and the credentials rules every authenticated route shares (§2.1).

pub mod jwt;
pub mod password;
mod routes;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;

use drishtiksha_common::UserRole;
use drishtiksha_common::db::users::{self, User};

use crate::error::ApiError;
use crate::state::AppState;

pub use routes::router;

pub const COOKIE_NAME: &str = "authToken";

/// The authenticated caller, loaded from the database on every request.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

impl AuthUser {
    pub fn id(&self) -> uuid::Uuid {
        self.0.id
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.role == UserRole::Admin { Ok(()) } else { Err(ApiError::forbidden()) }
    }
}

/// The bearer token, else the `authToken` cookie.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case("bearer ").then(|| rest.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    bearer.or_else(|| cookie_token(&parts.headers))
}

fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Checks a token and loads its active user.
pub async fn authenticate(state: &AppState, token: Option<&str>) -> Result<User, ApiError> {
    let token = token.ok_or_else(|| ApiError::unauthorized("Unauthorized: Access token is required."))?;
    let user_id = state.jwt.verify(token).map_err(|e| ApiError::unauthorized(e.message()))?;
    match users::find_by_id(&state.db, user_id).await? {
        Some(u) if u.is_active => Ok(u),
        _ => Err(ApiError::unauthorized("Invalid access token or user is inactive.")),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts);
        authenticate(state, token.as_deref()).await.map(AuthUser)
    }
}
