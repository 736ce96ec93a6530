//! `POST /analyze` (§5, §6) with the stand-in's simulated inference (§9.4–§9.7).
//!
//! Check order of §5: API key (401) → form (422 list) → empty file (400) → extension (415) →
//! model (422) → failure triggers → simulated inference.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::Instant;

use crate::catalogue::{Catalogue, MediaType, ModelEntry};
use crate::conn::ConnKill;
use crate::error::ApiError;
use crate::failure::{self, FailureMode};
use crate::gpu::OverCapacity;
use crate::simulate::{self, Event, Outputs, SIMULATED_NOTE, round4};
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
#[derive(Clone, Copy)]
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
            let call = Inference { primary: model, used: model, media, upload: &upload, correlation_id: correlation.0 };
            infer(&state, &progress, call, entry).await
        }
        Some(Failure { mode: FailureMode::Fallback, outcome }) => match catalogue.fallback_for(&model.name, media) {
            Some(used) => {
                let call = Inference { primary: model, used, media, upload: &upload, correlation_id: correlation.0 };
                infer(&state, &progress, call, entry).await
            }
            // Nothing to fall back to: the real server's "fallbacks exhausted".
            None => {
                let call = FailedCall { model, media, upload: &upload, correlation_id: correlation.0, kill };
                fail(&state, &progress, call, Failure { mode: FailureMode::Inference, outcome }, entry).await
            }
        },
        Some(failure) => {
            let call = FailedCall { model, media, upload: &upload, correlation_id: correlation.0, kill };
            fail(&state, &progress, call, failure, entry).await
        }
    }
}

/// How long an over-capacity call runs before failing: the real server fails only once the
/// model tries to allocate on the full GPU.
const OUT_OF_MEMORY_DELAY: Duration = Duration::from_millis(50);

/// Heatmaps with more cells than this are written on a blocking thread.
const BLOCKING_BODY_CELLS: u64 = 64 * 1024;

/// A call that runs a simulated inference: `used` is `primary`, or the model a server-side
/// fallback (§6) turned to.
struct Inference<'a> {
    primary: &'a ModelEntry,
    used: &'a ModelEntry,
    media: MediaType,
    upload: &'a MediaUpload,
    correlation_id: String,
}

/// Runs the simulated inference in a slot of the simulated GPU (§9.5): events and latency only
/// once the call holds its slot; a disconnect, queued or running, frees it.
async fn infer(state: &AppState, progress: &Progress<'_>, call: Inference<'_>, mut entry: LogEntry) -> Response {
    let Inference { primary, used, media, upload, correlation_id } = call;
    let ready = state.gpu.try_acquire();
    if ready.is_err() && state.gpu.over_capacity() == OverCapacity::Fail {
        return refuse_for_capacity(state, correlation_id, entry).await;
    }
    let fallback = used.name != primary.name;
    entry.status = Some(200);
    entry.outcome = if fallback { FailureMode::Fallback.to_string() } else { "ok".into() };
    entry.model_used = Some(used.name.clone());
    let seq = state.log(entry);
    let mut guard = CancelGuard { state, seq, armed: true };
    let slot = match ready {
        Ok(slot) => slot,
        Err(_) => state.gpu.acquire().await,
    };

    let start = Instant::now();
    if fallback && let Some(event) = simulate::failure_event(primary.profile, &primary_error(primary)) {
        progress.send(&event, 0.0);
    }
    // A fallback model publishes under its own name (§8).
    let used_progress = Progress { model: &used.name, ..*progress };
    let latency = used.latency.mul_f64(state.config.latency_scale);
    let verdict = failure::verdict_for(&upload.markers, &used.name);
    let outputs = Outputs {
        full_heatmap: state.config.full_heatmaps || used.full_heatmap,
        per_frame_predictions: state.config.per_frame_predictions,
    };
    let mut sim = simulate::simulate(&upload.sha256, used, media, verdict, &upload.head, outputs);
    if fallback {
        let note =
            format!("Primary model '{}' failed. Used fallback model '{}'. | {SIMULATED_NOTE}", primary.name, used.name);
        sim.data.insert("note".into(), json!(note));
    }
    let events = simulate::schedule(used.profile, &used.name, &sim);
    used_progress.run(&events, events.len(), latency, start).await;
    if start.elapsed() < latency {
        tokio::time::sleep_until(start + latency).await;
    }
    let processing_time = round4(start.elapsed().as_secs_f64());
    sim.data.insert("processing_time".into(), json!(processing_time));
    state.count_inference(&used.name);
    slot.complete();
    guard.armed = false;
    tracing::info!(
        model = %primary.name,
        model_used = %used.name,
        prediction = sim.prediction,
        confidence = sim.confidence,
        size = upload.size,
        "analyze ok (simulated)"
    );
    let cells = sim.heatmap.as_ref().map_or(0, |h| u64::from(h.width()) * u64::from(h.height()));
    let (model_used, at) = (used.name.clone(), timestamp());
    let body = if cells > BLOCKING_BODY_CELLS {
        match tokio::task::spawn_blocking(move || sim.success_body(&model_used, &at)).await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the result body");
                return ApiError::Internal { correlation_id }.into_response();
            }
        }
    } else {
        sim.success_body(&model_used, &at)
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn primary_error(model: &ModelEntry) -> String {
    format!("simulated inference failure in model '{}'", model.name)
}

/// Fails a call that found every slot taken, as a CUDA out-of-memory error does on the real
/// server: a 500 Inference Error after a short delay, without progress events.
async fn refuse_for_capacity(state: &AppState, correlation_id: String, mut entry: LogEntry) -> Response {
    state.gpu.refuse();
    let capacity = state.gpu.capacity().unwrap_or_default();
    tracing::info!(model = ?entry.model, capacity, "analyze refused: simulated GPU out of memory");
    entry.status = Some(500);
    entry.outcome = "over-capacity".into();
    state.log(entry);
    tokio::time::sleep(OUT_OF_MEMORY_DELAY).await;
    let oom = format!(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 is running {capacity} of {capacity} simulated \
         concurrent inferences (ML stand-in capacity)."
    );
    ApiError::Inference { primary: oom.clone(), fallback: oom, correlation_id }.into_response()
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
        FailureMode::Inference | FailureMode::Fallback => {
            let primary = primary_error(model);
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
            let sim = simulate::simulate(&upload.sha256, model, media, verdict, &upload.head, Outputs::default());
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
