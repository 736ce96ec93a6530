//! `/api/v1/auth`: signup, login, logout, profile, password change.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use drishtiksha_common::db::{self, tokens, users};

use super::password::{self, Verified};
use super::{AuthUser, COOKIE_NAME, TokenSource, VerifiedToken, token_from_headers};
use crate::envelope::{Envelope, Success, ok, with_status};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Field, JsonBody, Lines};
use crate::openapi::{Null, TAG_AUTH};
use crate::ratelimit::{self, AttemptLimiter, ClientIp};
use crate::state::AppState;
use crate::views;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(get_profile, update_profile))
        .routes(routes!(change_password))
}

#[derive(Serialize, ToSchema)]
struct AuthResponse {
    user: views::User,
    /// HS256 JWT with claims `userId`, `email`, `role`, `iat`, `exp`.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VySWQiOiIzZmE4In0.c2lnbmF0dXJl")]
    token: String,
}

// The request bodies: what the handlers deserialize and the OpenAPI document shows. Every field
// is a `Field`, so that each problem gets the contract's own message from the validation.

/// `POST /auth/signup`. Email is trimmed and lower-cased; names are trimmed.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "email": "ada@example.com", "password": "correct-horse", "firstName": "Ada", "lastName": "Lovelace"
}))]
struct SignupRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, format = Email, max_length = 254)]
    email: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    password: Field<String>,
    #[serde(default)]
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*[^\s\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F][^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    first_name: Field<String>,
    #[serde(default)]
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*[^\s\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F][^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    last_name: Field<String>,
}

/// `POST /auth/login`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct-horse"}))]
struct LoginRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, format = Email, max_length = 254)]
    email: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    password: Field<String>,
}

/// `PUT /auth/profile`: any other key is refused (`Field '<key>' cannot be updated.`); `{}` changes nothing.
// `deny_unknown_fields` is for the document (`additionalProperties: false`); deserializing goes
// through `ProfileFields`, which keeps the other keys for their messages.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, from = "ProfileFields")]
#[schema(example = json!({"firstName": "Ada", "lastName": "King"}))]
struct UpdateProfileRequest {
    #[schema(
        value_type = Option<String>,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*[^\s\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F][^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    first_name: Field<String>,
    #[schema(
        value_type = Option<String>,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*[^\s\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F][^\u0000-\u0008\u000A-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]*$"
    )]
    last_name: Field<String>,
    /// Keys other than the two names, in the order sent.
    #[schema(ignore)]
    other_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFields {
    #[serde(default)]
    first_name: Field<String>,
    #[serde(default)]
    last_name: Field<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

impl From<ProfileFields> for UpdateProfileRequest {
    fn from(f: ProfileFields) -> Self {
        Self { first_name: f.first_name, last_name: f.last_name, other_keys: f.other.keys().cloned().collect() }
    }
}

/// `PUT /auth/profile/password`. `confirmPassword` is accepted and ignored.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "currentPassword": "correct-horse", "newPassword": "battery-staple", "confirmPassword": "battery-staple"
}))]
struct ChangePasswordRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    current_password: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    new_password: Field<String>,
    /// Accepted and not checked: the client's own confirmation.
    #[serde(default, rename = "confirmPassword")]
    #[schema(value_type = Option<String>)]
    _confirm_password: Field<Value>,
}

/// Trimmed, lower-cased email if its syntax is acceptable.
pub fn parse_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    (local_ok && domain_ok).then_some(email)
}

fn check_new_password(pw: Option<&str>, errors: &mut Vec<String>) {
    let n = pw.map(|p| p.chars().count()).unwrap_or(0);
    if n < 8 {
        errors.push("Password must be at least 8 characters long".to_string());
    } else if n > 128 {
        errors.push("Password must be at most 128 characters long".to_string());
    }
}

/// A trimmed name; `label` is "First name" / "Last name".
fn check_name(
    v: Result<Option<String>, crate::extract::NotAString>,
    label: &str,
    required: bool,
    errors: &mut Vec<String>,
) -> Option<String> {
    match v {
        Ok(Some(s)) => match crate::extract::clean_text(&s, Lines::One) {
            None => {
                errors.push(format!("{label} contains an invalid character"));
                None
            }
            Some(t) if t.is_empty() => {
                errors.push(format!("{label} is required"));
                None
            }
            Some(t) if t.chars().count() > 100 => {
                errors.push(format!("{label} must be at most 100 characters"));
                None
            }
            Some(t) => Some(t),
        },
        Ok(None) if !required => None,
        _ => {
            errors.push(format!("{label} is required"));
            None
        }
    }
}

/// Creates a `USER` account (no cookie is set). Signups that pass validation are limited per IP
/// (`SIGNUP_RATE_LIMIT_MAX` per hour, 20 by default).
#[utoipa::path(
    post, path = "/signup", tag = TAG_AUTH, summary = "Sign up",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "`User created successfully`", body = Success<AuthResponse>),
        (status = 409, description = "`User with this email already exists`", body = ErrorBody),
    ),
)]
async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    JsonBody(body): JsonBody<SignupRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let email = body.email.value().and_then(|e| parse_email(&e));
    if email.is_none() {
        errors.push("Invalid email address".to_string());
    }
    let pw = body.password.value();
    check_new_password(pw.as_deref(), &mut errors);
    let first = check_name(body.first_name.text(), "First name", true, &mut errors);
    let last = check_name(body.last_name.text(), "Last name", true, &mut errors);
    let (Some(email), Some(pw), Some(first), Some(last), true) = (email, pw, first, last, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };

    // Each signup costs a password hash: limited per address.
    let verdict = ratelimit::signup(&state, &ip).await;
    if let Some(rejection) = verdict.rejection() {
        return Ok(verdict.decorate(rejection));
    }
    let hash = password::hash(pw).await?;
    let new = users::NewUser {
        id: Uuid::new_v4(),
        email: &email,
        first_name: &first,
        last_name: &last,
        password_hash: &hash,
    };
    let user = match users::insert(&state.db, new).await {
        Ok(u) => u,
        Err(e) if db::is_unique_violation(&e, users::EMAIL_UNIQUE) => {
            return Err(ApiError::conflict("User with this email already exists"));
        }
        Err(e) => return Err(e.into()),
    };
    let (token, _) = state.jwt.issue(user.id, &user.email, user.role)?;
    tracing::info!(user.id = %user.id, "account created");
    Ok(verdict.decorate(
        with_status(StatusCode::CREATED, AuthResponse { user: user.into(), token }, "User created successfully")
            .into_response(),
    ))
}

fn http_date(ts: DateTime<Utc>) -> String {
    ts.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn auth_cookie(state: &AppState, token: &str, exp: i64) -> String {
    let expires = DateTime::<Utc>::from_timestamp(exp, 0).unwrap_or_else(Utc::now);
    let secure = if state.config.cookie_secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={token}; Path=/; Expires={}; HttpOnly; SameSite=Lax{secure}", http_date(expires))
}

/// Answers a token and sets the `authToken` cookie. Failed attempts are limited to 10 per 10 minutes
/// per IP and e-mail; once exceeded, even a correct password gets 429.
#[utoipa::path(
    post, path = "/login", tag = TAG_AUTH, summary = "Log in",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "`Login successful`", body = Success<AuthResponse>,
            headers(("Set-Cookie" = String, description = "`authToken=<JWT>; Path=/; Expires=…; HttpOnly; SameSite=Lax`"))),
        (status = 401, description = "`Invalid email or password`", body = ErrorBody),
    ),
)]
async fn login(State(state): State<AppState>, ip: ClientIp, JsonBody(body): JsonBody<LoginRequest>) -> Response {
    let email_raw = body.email.text().ok().flatten().unwrap_or_default();
    let limiter = AttemptLimiter::login(&state, &ip, &email_raw);
    let verdict = limiter.reserve().await;
    if let Some(rejection) = verdict.rejection() {
        return verdict.decorate(rejection);
    }
    let resp = match login_inner(&state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // A failure keeps its reserved attempt; a success gives it back.
    let verdict = if resp.status().as_u16() >= 400 { verdict } else { limiter.release(verdict).await };
    verdict.decorate(resp)
}

async fn login_inner(state: &AppState, body: LoginRequest) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let email = body.email.value().and_then(|e| parse_email(&e));
    if email.is_none() {
        errors.push("A valid email is required".to_string());
    }
    let pw = body.password.value().filter(|p| !p.is_empty());
    if pw.is_none() {
        errors.push("Password is required".to_string());
    }
    let (Some(email), Some(pw)) = (email, pw) else {
        return Err(ApiError::validation(errors));
    };

    let invalid = || ApiError::unauthorized("Invalid email or password");
    let row = users::find_with_hash_by_email(&state.db, &email).await?;
    let Some(row) = row else {
        // Same cost as a wrong password.
        password::verify(pw, password::DUMMY_HASH.clone()).await?;
        return Err(invalid());
    };
    let verified = password::verify(pw.clone(), row.password_hash.clone()).await?;
    if verified == Verified::No || !row.user.is_active {
        return Err(invalid());
    }
    if verified == Verified::YesLegacy {
        match password::hash(pw).await {
            Ok(h) => {
                if let Err(e) = users::set_password_hash(&state.db, row.user.id, &h).await {
                    tracing::warn!(user.id = %row.user.id, error = %e, "legacy password hash not upgraded");
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "legacy password hash not upgraded"),
        }
    }
    let user = row.user;
    // Not before the cut-off of a password change made within the last second.
    let iat = Utc::now().timestamp().max(tokens::tokens_valid_from(&state.db, user.id).await?);
    let (token, claims) = state.jwt.issue_at(user.id, &user.email, user.role, iat)?;
    let cookie = auth_cookie(state, &token, claims.exp);
    let mut resp = ok(AuthResponse { user: user.into(), token }, "Login successful").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

/// Clears the cookie and revokes the token the request carries (bearer or cookie), if it is valid:
/// later requests with it get 401. Other tokens of the user stay valid.
#[utoipa::path(
    post, path = "/logout", tag = TAG_AUTH, summary = "Log out",
    responses(
        (status = 200, description = "`Logout successful`", body = Success<Null>,
            headers(("Set-Cookie" = String, description = "`authToken=; …; Max-Age=0`"))),
    ),
)]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some((token, _)) = token_from_headers(&headers)
        && let Ok(verified) = state.jwt.verify_token(&token)
    {
        let expires = DateTime::<Utc>::from_timestamp(verified.exp, 0).unwrap_or_else(Utc::now);
        tokens::revoke(&state.db, &VerifiedToken::hash_of(&token), verified.user_id, expires).await?;
    }
    let secure = if state.config.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
    );
    let mut resp = ok(Value::Null, "Logout successful").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(
    get, path = "/profile", tag = TAG_AUTH, summary = "The caller's profile",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    responses((status = 200, description = "`Profile retrieved successfully`", body = Success<views::User>)),
)]
async fn get_profile(user: AuthUser) -> Response {
    ok(views::User::from(user.0), "Profile retrieved successfully").into_response()
}

#[utoipa::path(
    put, path = "/profile", tag = TAG_AUTH, summary = "Change the caller's names",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    request_body = UpdateProfileRequest,
    responses((status = 200, description = "`Profile updated successfully`", body = Success<views::User>)),
)]
async fn update_profile(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<UpdateProfileRequest>,
) -> ApiResult<Envelope<views::User>> {
    let mut errors: Vec<String> = body.other_keys.iter().map(|k| format!("Field '{k}' cannot be updated.")).collect();
    let first = check_name(body.first_name.text(), "First name", false, &mut errors);
    let last = check_name(body.last_name.text(), "Last name", false, &mut errors);
    // An explicit null for a name is not an update of it, but not an error either.
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if first.is_none() && last.is_none() {
        return Ok(ok(views::User::from(user.0), "Profile updated successfully"));
    }
    let updated = users::update_names(&state.db, user.id(), first.as_deref(), last.as_deref())
        .await?
        .ok_or_else(|| ApiError::unauthorized("Invalid access token or user is inactive."))?;
    Ok(ok(views::User::from(updated), "Profile updated successfully"))
}

#[derive(Serialize, ToSchema)]
struct PasswordChangedResponse {
    /// A fresh token: every token issued before the change is revoked.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VySWQiOiIzZmE4In0.c2lnbmF0dXJl")]
    token: String,
}

/// A wrong current password is a 400 (`Current password is incorrect`), never a 401; guesses are
/// limited like logins (10 per 10 minutes, per user). Every token issued before the change is
/// revoked, on every device; the answer carries a fresh one (also set as the cookie when the
/// request came with the cookie).
#[utoipa::path(
    put, path = "/profile/password", tag = TAG_AUTH, summary = "Change the caller's password",
    security(("bearerAuth" = []), ("cookieAuth" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 200, description = "`Password updated successfully`", body = Success<PasswordChangedResponse>)),
)]
async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let current = body.current_password.value().filter(|p| !p.is_empty());
    if current.is_none() {
        errors.push("Current password is required".to_string());
    }
    let new_pw = body.new_password.value();
    check_new_password(new_pw.as_deref(), &mut errors);
    let (Some(current), Some(new_pw), true) = (current, new_pw, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    // Guesses of the current password are limited like logins, per user.
    let limiter = AttemptLimiter::password_change(&state, user.id());
    let verdict = limiter.reserve().await;
    if let Some(rejection) = verdict.rejection() {
        return Ok(verdict.decorate(rejection));
    }
    let stored = users::password_hash(&state.db, user.id())
        .await?
        .ok_or_else(|| ApiError::unauthorized("Invalid access token or user is inactive."))?;
    if password::verify(current, stored).await? == Verified::No {
        let wrong = ApiError::new(StatusCode::BAD_REQUEST, "Current password is incorrect");
        return Ok(verdict.decorate(wrong.into_response()));
    }
    limiter.release(verdict).await;
    let hash = password::hash(new_pw).await?;
    // Tokens carry whole seconds: the cut-off is the next second, so that every token issued up
    // to now (this one included) falls before it, and the fresh token is issued at it.
    let valid_from = Utc::now().timestamp() + 1;
    if !tokens::change_password(&state.db, user.id(), &hash, valid_from).await? {
        return Err(ApiError::unauthorized("Invalid access token or user is inactive."));
    }
    tracing::info!(user.id = %user.id(), "password changed");
    let (token, claims) = state.jwt.issue_at(user.id(), &user.0.email, user.0.role, valid_from)?;
    let from_cookie = matches!(token_from_headers(&headers), Some((_, TokenSource::Cookie)));
    let cookie = from_cookie.then(|| auth_cookie(&state, &token, claims.exp));
    let mut resp = ok(PasswordChangedResponse { token }, "Password updated successfully").into_response();
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::parse_email;

    #[test]
    fn emails_are_trimmed_lower_cased_and_checked() {
        assert_eq!(parse_email("  Ada@Example.COM "), Some("ada@example.com".to_string()));
        assert_eq!(parse_email("a.b+c@sub.example.io"), Some("a.b+c@sub.example.io".to_string()));
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "ada@-x.com", "a..b@x.com"] {
            assert_eq!(parse_email(bad), None, "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(parse_email(&long), None);
    }
}
