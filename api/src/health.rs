//! Liveness and readiness (§4.1): not enveloped, not rate-limited, no auth.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::openapi::TAG_HEALTH;
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The liveness answer.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"success": true, "message": "Drishtiksha Backend API is alive and running!"}))]
pub struct Alive {
    pub success: bool,
    pub message: &'static str,
}

/// The readiness answer: `ok` or `unavailable` per dependency.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"success": true, "message": "Ready", "checks": {"postgres": "ok", "redis": "ok", "temporal": "ok", "storage": "ok"}}))]
pub struct Readiness {
    pub success: bool,
    /// `Ready` or `Not ready`.
    pub message: &'static str,
    pub checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    pub postgres: Check,
    pub redis: Check,
    pub temporal: Check,
    /// The media store: the local directory, or the S3 bucket.
    pub storage: Check,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Ok,
    Unavailable,
}

fn alive_body() -> Response {
    Json(Alive { success: true, message: "Drishtiksha Backend API is alive and running!" }).into_response()
}

/// `GET /`: liveness, for load balancers that probe the root.
#[utoipa::path(
    get, path = "/", tag = TAG_HEALTH, summary = "Liveness (root)",
    responses((status = 200, description = "Alive; checks nothing", body = Alive)),
)]
pub async fn root() -> Response {
    alive_body()
}

/// `GET /api/health`: liveness.
#[utoipa::path(
    get, path = "/api/health", tag = TAG_HEALTH, summary = "Liveness",
    responses((status = 200, description = "Alive; checks nothing", body = Alive)),
)]
pub async fn alive() -> Response {
    alive_body()
}

async fn check<F, E>(fut: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => Check::Ok,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Check::Unavailable
        }
        Err(_) => Check::Unavailable,
    }
}

/// `GET /api/ready`: Postgres, Redis, Temporal and the media store, 2 s each.
#[utoipa::path(
    get, path = "/api/ready", tag = TAG_HEALTH, summary = "Readiness",
    responses(
        (status = 200, description = "Every dependency answered", body = Readiness),
        (status = 503, description = "Some dependency is unavailable", body = Readiness,
            example = json!({"success": false, "message": "Not ready", "checks": {"postgres": "ok", "redis": "ok", "temporal": "unavailable", "storage": "ok"}})),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let postgres = check(async { sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db).await.map(|_| ()) });
    let redis = check(async {
        let mut conn = state.redis.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
    });
    let temporal = check(async {
        let client = state.temporal().await?;
        drishtiksha_common::temporal::ping(&client).await
    });
    let storage = check(state.storage.check());
    let (postgres, redis, temporal, storage) = tokio::join!(postgres, redis, temporal, storage);
    let checks = Checks { postgres, redis, temporal, storage };
    if [postgres, redis, temporal, storage].iter().all(|c| *c == Check::Ok) {
        Json(Readiness { success: true, message: "Ready", checks }).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { success: false, message: "Not ready", checks }))
            .into_response()
    }
}
