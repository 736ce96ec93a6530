//! Token revocation (contract §4.2). A password change revokes every token issued before it (the
//! user's `tokens_valid_from` against the token's `iat`); a logout revokes the one token it was
//! called with (its SHA-256, kept until the token expires). Both are checked in the query that
//! loads the caller on every request, so revocation costs no extra round trip and cannot fail open.
//!
//! These queries are checked at run time (`sqlx::query`), not by the compile-time macros; the api's
//! auth tests run them against a migrated database.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::users::User;
use crate::model::UserRole;

/// The caller of a request: the user, and whether the token presented is revoked.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub revoked: bool,
}

/// Loads the user of a token with `iat` and SHA-256 `token_hash`, and whether it is revoked.
pub async fn find_session(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    token_hash: &[u8],
    iat: i64,
) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(
        r"SELECT id, email, first_name, last_name, role, is_active, created_at, updated_at,
                 ($3 < tokens_valid_from
                  OR EXISTS (SELECT 1 FROM revoked_tokens WHERE token_hash = $2)) AS revoked
          FROM users WHERE id = $1",
    )
    .bind(user_id)
    .bind(token_hash)
    .bind(iat)
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(Session {
            user: User {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                first_name: r.try_get("first_name")?,
                last_name: r.try_get("last_name")?,
                role: r.try_get::<UserRole, _>("role")?,
                is_active: r.try_get("is_active")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            },
            revoked: r.try_get("revoked")?,
        })
    })
    .transpose()
}

/// Revokes one token until `expires_at`, and forgets revocations of tokens that have expired.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r"WITH expired AS (DELETE FROM revoked_tokens WHERE expires_at < now())
          INSERT INTO revoked_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)
          ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Sets a new password hash and revokes every token issued before `valid_from` (epoch seconds).
/// Returns whether the user exists.
pub async fn change_password(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    password_hash: &str,
    valid_from: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET password_hash = $2, tokens_valid_from = GREATEST(tokens_valid_from, $3) WHERE id = $1",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(valid_from)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The earliest `iat` a token of the user may have (0 when no password change revoked any).
pub async fn tokens_valid_from(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT tokens_valid_from FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    Ok(v.unwrap_or(0))
}
