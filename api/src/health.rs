//! Liveness and readiness (§4.1): not enveloped, not rate-limited, no auth.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn alive() -> Response {
    Json(json!({"success": true, "message": "Drishtiksha Backend API is alive and running!"})).into_response()
}

async fn check<F, E>(fut: F) -> &'static str
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            "unavailable"
        }
        Err(_) => "unavailable",
    }
}

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
    let checks = json!({"postgres": postgres, "redis": redis, "temporal": temporal, "storage": storage});
    if [postgres, redis, temporal, storage].iter().all(|c| *c == "ok") {
        Json(json!({"success": true, "message": "Ready", "checks": checks})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"success": false, "message": "Not ready", "checks": checks})))
            .into_response()
    }
}
