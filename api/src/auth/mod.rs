//! Accounts (§4.2) and the credentials rules every authenticated route shares (§2.1).

pub mod jwt;
pub mod password;
mod routes;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;

use drishtiksha_common::UserRole;
use drishtiksha_common::db::tokens;
use drishtiksha_common::db::users::User;

use crate::error::ApiError;
use crate::state::AppState;

pub use jwt::VerifiedToken;
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
    token_from_headers(&parts.headers).map(|(token, _)| token)
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Bearer,
    Cookie,
}

/// The bearer token, else the `authToken` cookie, and which of the two it was.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<(String, TokenSource)> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case("bearer ").then(|| rest.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    match bearer {
        Some(t) => Some((t, TokenSource::Bearer)),
        None => cookie_token(headers).map(|t| (t, TokenSource::Cookie)),
    }
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

/// Why a token does not authenticate, once its signature and expiry are good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Revoked by a logout or a password change.
    Revoked,
    /// The user is missing or inactive.
    NoUser,
}

/// Loads the active user of a verified token, refusing revoked tokens (one query).
pub async fn load_session(state: &AppState, token: &str) -> Result<Result<User, SessionError>, ApiError> {
    let verified = state.jwt.verify_token(token).map_err(|e| ApiError::unauthorized(e.message()))?;
    let hash = VerifiedToken::hash_of(token);
    Ok(match tokens::find_session(&state.db, verified.user_id, &hash, verified.iat).await? {
        Some(s) if s.revoked => Err(SessionError::Revoked),
        Some(s) if s.user.is_active => Ok(s.user),
        _ => Err(SessionError::NoUser),
    })
}

/// Checks a token and loads its active user.
pub async fn authenticate(state: &AppState, token: Option<&str>) -> Result<User, ApiError> {
    let token = token.ok_or_else(|| ApiError::unauthorized("Unauthorized: Access token is required."))?;
    match load_session(state, token).await? {
        Ok(user) => Ok(user),
        Err(SessionError::Revoked) => Err(ApiError::unauthorized(jwt::TokenError::Invalid.message())),
        Err(SessionError::NoUser) => Err(ApiError::unauthorized("Invalid access token or user is inactive.")),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts);
        authenticate(state, token.as_deref()).await.map(AuthUser)
    }
}
