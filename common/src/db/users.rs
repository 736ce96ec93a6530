//! Accounts.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::model::UserRole;

/// An account (§3.1); the password hash stays in [`UserRow`].
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: UserRole,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user: User,
    pub password_hash: String,
}

pub const EMAIL_UNIQUE: &str = "users_email_key";

pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: &'a str,
}

pub async fn insert(db: impl PgExecutor<'_>, u: NewUser<'_>) -> Result<User, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (id, email, first_name, last_name, password_hash)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, first_name, last_name, role AS "role: UserRole", is_active, created_at, updated_at"#,
        u.id,
        u.email,
        u.first_name,
        u.last_name,
        u.password_hash
    )
    .fetch_one(db)
    .await
}

pub async fn find_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"SELECT id, email, first_name, last_name, role AS "role: UserRole", is_active, created_at, updated_at
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn find_with_hash_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, email, first_name, last_name, role AS "role: UserRole", is_active, created_at, updated_at,
                  password_hash
           FROM users WHERE email = $1"#,
        email
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| UserRow {
        user: User {
            id: r.id,
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            role: r.role,
            is_active: r.is_active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
        password_hash: r.password_hash,
    }))
}

pub async fn password_hash(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", id).fetch_optional(db).await
}

pub async fn update_names(
    db: impl PgExecutor<'_>,
    id: Uuid,
    first_name: Option<&str>,
    last_name: Option<&str>,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"UPDATE users SET first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name)
           WHERE id = $1
           RETURNING id, email, first_name, last_name, role AS "role: UserRole", is_active, created_at, updated_at"#,
        id,
        first_name,
        last_name
    )
    .fetch_optional(db)
    .await
}

pub async fn set_password_hash(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE users SET password_hash = $2 WHERE id = $1", id, hash).execute(db).await?;
    Ok(())
}
