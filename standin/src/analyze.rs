//! `POST /analyze` (§5, §6) with the stand-in's simulated inference (§9.4–§9.7).
//!
//! Check order of §5: API key (401) → form (422 list) → empty file (400) → extension (415) →
//! model (422) → failure triggers → simulated inference.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::Instant;

use crate::catalogue::{Catalogue, MediaType, ModelEntry};
use crate::conn::ConnKill;
use crate::error::ApiError;
use crate::failure::{self, FailureMode};
use crate::simulate::{self, Event, round4};
use crate::state::{AppState, Failure, LogEntry};
use crate::upload::{self, MediaField, MediaUpload};
use crate::{CorrelationId, timestamp};

/// The media type named by `filename`'s extension (§9.2), if recognised.
pub fn media_type_of(filename: &str, strict: bool) -> Option<MediaType> {
    let (_, ext) = filename.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    let known = match ext.as_str() {
        "mp4" | "mov" | "avi" | "webm" | "mpeg" | "mpg" => Some(MediaType::Video),
        "mp3" | "wav" | "aac" | "opus" => Some(MediaType::Audio),
        "jpg" | "jpeg" | "png" | "gif" | "bmp" | "tif" | "tiff" => Some(MediaType::Image),
        _ => None,
    };
    known.or(match (strict, ext.as_str()) {
        (false, "mkv" | "m4v") => Some(MediaType::Video),
        (false, "m4a" | "ogg" | "flac") => Some(MediaType::Audio),
        (false, "webp") => Some(MediaType::Image),
        _ => None,
    })
}

fn select_model<'c>(
    catalogue: &'c Catalogue,
    requested: Option<&str>,
    media: MediaType,
) -> Result<&'c ModelEntry, ApiError> {
    match requested.map(str::trim).filter(|m| !m.is_empty()) {
        Some(name) => {
            let entry = catalogue.loaded(name).ok_or_else(|| ApiError::ModelUnavailable(name.to_owned()))?;
            if entry.supports(media) {
                Ok(entry)
            } else {
                Err(ApiError::ModelLacksType { model: name.to_owned(), media })
            }
        }
        None => catalogue.auto_select(media).ok_or(ApiError::NoModelForType(media)),
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Where a call's progress events go, and the §9.6 rule for whether one is sent.
struct Progress<'a> {
    state: &'a AppState,
    media_id: Option<&'a str>,
    user_id: Option<&'a str>,
    model: &'a str,
}

impl Progress<'_> {
    fn send(&self, event: &Event, processing_time: f64) {
        let Some(media_id) = self.media_id else {
            return;
        };
        if event.needs_user && self.user_id.is_none() {
            return;
        }
        self.state.publisher.publish(event.payload(media_id, self.user_id, self.model, processing_time));
    }

    /// Sends the first `count` of `events`, spread evenly over `latency` from `start`: event j
    /// of n at `latency × j / (n − 1)` (a single event at `latency`).
    async fn run(&self, events: &[Event], count: usize, latency: Duration, start: Instant) {
        let n = events.len();
        for (j, event) in events.iter().enumerate().take(count) {
            let at = if n <= 1 { latency } else { latency.mul_f64(j as f64 / (n - 1) as f64) };
            if start.elapsed() < at {
                tokio::time::sleep_until(start + at).await;
            }
            self.send(event, round4(start.elapsed().as_secs_f64()));
        }
    }
}

/// Marks a logged call `cancelled` if its handler is dropped (client disconnect) before the end.
struct CancelGuard<'a> {
    state: &'a AppState,
    seq: u64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.update_log(self.seq, None, "cancelled");
        }
    }
}

/// `POST /analyze`.
pub async fn analyze(
    State(state): State<Arc<AppState>>,
    axum::Extension(correlation): axum::Extension<CorrelationId>,
    request: Request,
) -> Response {
    let kill = request.extensions().get::<ConnectInfo<ConnKill>>().map(|c| c.0.clone());
    let mut entry = LogEntry { at: timestamp(), ..LogEntry::default() };
    let reject = |mut entry: LogEntry, error: ApiError| {
        let status = error.status().as_u16();
        entry.status = Some(status);
        entry.outcome = status.to_string();
        tracing::info!(status, model = ?entry.model, "analyze rejected");
        state.log(entry);
        error.into_response()
    };

    if !state.authorized(request.headers()) {
        return reject(entry, ApiError::Unauthorized);
    }
    let Ok(multipart) = Multipart::from_request(request, &()).await else {
        // Not a multipart form: FastAPI reports the required file as missing.
        return reject(entry, ApiError::MissingMedia);
    };
    let form = match upload::read_form(multipart).await {
        Ok(form) => form,
        Err(e) => {
            tracing::debug!(error = %e, "malformed multipart body");
            return reject(entry, ApiError::MalformedBody);
        }
    };
    entry.model = form.model.clone();
    entry.media_id = form.media_id.clone();
    entry.user_id = form.user_id.clone();
    let upload = match form.media {
        Some(MediaField::File(upload)) => upload,
        Some(MediaField::Text(text)) => return reject(entry, ApiError::MediaNotFile(text)),
        None => return reject(entry, ApiError::MissingMedia),
    };
    entry.filename = Some(upload.filename.clone());
    entry.size = Some(upload.size);
    entry.sha256 = Some(hex::encode(upload.sha256));
    if upload.size == 0 {
        return reject(entry, ApiError::EmptyFile);
    }
    let Some(media) = media_type_of(&upload.filename, state.config.strict_extensions) else {
        let name = upload.filename.clone();
        return reject(entry, ApiError::UnknownMediaType(name));
    };
    let catalogue = state.catalogue();
    let model = match select_model(&catalogue, form.model.as_deref(), media) {
        Ok(model) => model,
        Err(e) => return reject(entry, e),
    };
    entry.model = Some(model.name.clone());
    let progress = Progress {
        state: &state,
        media_id: non_empty(&form.media_id),
        user_id: non_empty(&form.user_id),
        model: &model.name,
    };

    match state.decide_failure(&upload, model) {
        None => {
            entry.status = Some(200);
            entry.outcome = "ok".into();
            let seq = state.log(entry);
            let mut guard = CancelGuard { state: &state, seq, armed: true };
            let response = succeed(&state, &progress, model, media, &upload).await;
            guard.armed = false;
            response
        }
        Some(failure) => {
            let call = FailedCall { model, media, upload: &upload, correlation_id: correlation.0, kill };
            fail(&state, &progress, call, failure, entry).await
        }
    }
}

async fn succeed(
    state: &AppState,
    progress: &Progress<'_>,
    model: &ModelEntry,
    media: MediaType,
    upload: &MediaUpload,
) -> Response {
    let start = Instant::now();
    let latency = model.latency.mul_f64(state.config.latency_scale);
    let verdict = failure::verdict_for(&upload.markers, &model.name);
    let mut sim = simulate::simulate(&upload.sha256, model, media, verdict, &upload.head);
    let events = simulate::schedule(model.profile, &model.name, &sim);
    progress.run(&events, events.len(), latency, start).await;
    if start.elapsed() < latency {
        tokio::time::sleep_until(start + latency).await;
    }
    let processing_time = round4(start.elapsed().as_secs_f64());
    sim.data.insert("processing_time".into(), json!(processing_time));
    state.count_inference(&model.name);
    tracing::info!(
        model = %model.name,
        prediction = sim.prediction,
        confidence = sim.confidence,
        size = upload.size,
        "analyze ok (simulated)"
    );
    Json(json!({
        "success": true,
        "model_used": model.name,
        "timestamp": timestamp(),
        "data": sim.data,
    }))
    .into_response()
}

/// What a failing call needs besides the shared state.
struct FailedCall<'a> {
    model: &'a ModelEntry,
    media: MediaType,
    upload: &'a MediaUpload,
    correlation_id: String,
    kill: Option<ConnKill>,
}

async fn fail(
    state: &AppState,
    progress: &Progress<'_>,
    call: FailedCall<'_>,
    failure: Failure,
    mut entry: LogEntry,
) -> Response {
    let FailedCall { model, media, upload, correlation_id, kill } = call;
    tracing::info!(model = %model.name, outcome = %failure.outcome, "analyze fails (simulated)");
    let error_event = |text: &str| {
        if let Some(event) = simulate::failure_event(model.profile, text) {
            progress.send(&event, 0.0);
        }
    };
    let error = match failure.mode {
        FailureMode::MediaProcessing => {
            let reason = "simulated media processing error".to_owned();
            error_event(&reason);
            ApiError::MediaProcessing { reason, correlation_id }
        }
        FailureMode::Internal | FailureMode::Flaky(_) => {
            error_event("simulated internal server error");
            ApiError::Internal { correlation_id }
        }
        FailureMode::Inference => {
            let primary = format!("simulated inference failure in model '{}'", model.name);
            error_event(&primary);
            ApiError::Inference { primary, fallback: "No fallback models available".into(), correlation_id }
        }
        FailureMode::RateLimited => ApiError::RateLimited,
        FailureMode::Hang => {
            entry.outcome = failure.outcome;
            state.log(entry);
            let start = Instant::now();
            let latency = model.latency.mul_f64(state.config.latency_scale);
            let verdict = failure::verdict_for(&upload.markers, &model.name);
            let sim = simulate::simulate(&upload.sha256, model, media, verdict, &upload.head);
            let events = simulate::schedule(model.profile, &model.name, &sim);
            progress.run(&events, events.len() / 2, latency, start).await;
            return std::future::pending().await;
        }
        FailureMode::Drop => {
            entry.outcome = failure.outcome;
            state.log(entry);
            match kill {
                Some(kill) => kill.kill(),
                None => tracing::warn!("drop requested without a killable connection; hanging"),
            }
            return std::future::pending().await;
        }
    };
    entry.status = Some(error.status().as_u16());
    entry.outcome = failure.outcome;
    state.log(entry);
    error.into_response()
}
