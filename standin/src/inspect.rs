//! Stand-in-only inspection endpoints (§9.8), behind `X-API-Key`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};

use crate::catalogue::{Catalogue, Format};
use crate::error::ApiError;
use crate::gpu::CapacityReport;
use crate::state::{AppState, LogEntry};

/// `GET /__standin/requests`: the last 1 000 `/analyze` calls, oldest first.
pub async fn list_requests(State(state): State<Arc<AppState>>) -> Json<Vec<LogEntry>> {
    Json(state.log_entries())
}

/// `GET /__standin/capacity`: concurrency, queue and busy time of the simulated GPU.
pub async fn get_capacity(State(state): State<Arc<AppState>>) -> Json<CapacityReport> {
    Json(state.gpu.report())
}

/// `POST /__standin/reset`: clears the log and the flaky counters, reseeds the generator,
/// restarts the capacity figures.
pub async fn reset(State(state): State<Arc<AppState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

/// `PUT /__standin/catalogue`: replaces the catalogue (JSON or TOML, chosen by `Content-Type`,
/// else detected).
pub async fn replace_catalogue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, ApiError> {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let format = if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("toml") {
        Format::Toml
    } else {
        Format::Detect
    };
    let catalogue = Catalogue::parse(&body, format).map_err(|e| ApiError::InvalidCatalogue(e.to_string()))?;
    tracing::info!(models = catalogue.models().len(), "catalogue replaced");
    state.replace_catalogue(catalogue);
    Ok(StatusCode::NO_CONTENT)
}
