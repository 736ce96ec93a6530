//! From one channel message to the Socket.IO events of §7.5.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use uuid::Uuid;

use drishtiksha_common::db::media;
use drishtiksha_common::time::format_ts;

use super::outbox::{Events, Message, ProgressKey};
use super::user_rooms;
use crate::state::AppState;

/// The run a media's ML messages belong to, learnt from the backend's own messages.
#[derive(Clone, Copy)]
struct RunRef {
    run_id: Uuid,
    run_number: Option<i64>,
}

pub struct Relay {
    io: SocketIo,
    state: AppState,
    runs: HashMap<String, RunRef>,
}

const MAX_TRACKED_MEDIA: usize = 10_000;

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Relay {
    pub fn new(io: SocketIo, state: AppState) -> Self {
        Self { io, state, runs: HashMap::new() }
    }

    pub async fn handle(&mut self, payload: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(payload) else {
            tracing::warn!("progress message dropped: not JSON");
            return;
        };
        let (Some(media_id), Some(user_id), Some(event)) = (
            str_of(&msg, "media_id").filter(|s| !s.is_empty()),
            str_of(&msg, "user_id").filter(|s| !s.is_empty()),
            str_of(&msg, "event"),
        ) else {
            tracing::warn!("progress message dropped: media_id, user_id or event missing");
            return;
        };
        let data = msg.get("data").cloned().unwrap_or(Value::Null);
        let backend_run = str_of(&data, "runId").and_then(|r| Uuid::parse_str(r).ok());
        if let Some(run_id) = backend_run {
            self.remember(media_id, run_id, data.get("runNumber").and_then(Value::as_i64));
        }

        let rooms = user_rooms(user_id);
        // An instance with no socket of this user has nothing to do.
        let sockets = self.io.to(rooms.clone()).sockets();
        if sockets.is_empty() {
            return;
        }
        let mut events: Events = Vec::with_capacity(3);
        let progress = json!({
            "mediaId": media_id,
            "userId": user_id,
            "event": event,
            "message": msg.get("message").cloned().unwrap_or(Value::Null),
            "data": data,
            "timestamp": format_ts(&Utc::now()),
        });
        events.push(("progress_update", progress.into()));

        let model = str_of(&data, "model_name");
        match (event, backend_run) {
            ("MEDIA_UPLOADED", Some(run_id)) => {
                let payload = json!({
                    "userId": user_id, "mediaId": media_id,
                    "filename": data.get("filename"), "status": "QUEUED", "mediaType": data.get("mediaType"),
                    "analysisRunId": run_id, "runNumber": data.get("runNumber"),
                });
                events.push(("media_uploaded", payload.into()));
            }
            ("ANALYSIS_STARTED", Some(run_id)) => {
                let run_number = self.run_number(media_id, run_id).await;
                let payload = json!({
                    "userId": user_id, "mediaId": media_id, "analysisRunId": run_id, "runNumber": run_number,
                    "modelName": model, "attempt": data.get("attempt"),
                });
                events.push(("analysis_started", payload.into()));
            }
            ("ANALYSIS_COMPLETED", Some(run_id)) => {
                let payload = json!({
                    "userId": user_id, "mediaId": media_id, "analysisRunId": run_id,
                    "analysisId": data.get("analysisId"), "modelName": model,
                    "prediction": data.get("prediction"), "confidence": data.get("confidence"),
                });
                events.push(("analysis_completed", payload.into()));
            }
            (_, Some(run_id)) if data.get("finalStatus").is_some() => {
                let payload = json!({
                    "userId": user_id, "mediaId": media_id, "analysisRunId": run_id,
                    "runNumber": data.get("runNumber"), "finalStatus": data.get("finalStatus"),
                    "totalModels": data.get("totalAnalyses"), "completedCount": data.get("completedAnalyses"),
                    "failedCount": data.get("failedAnalyses"), "errorMessage": data.get("errorMessage"),
                });
                events.push(("run_finalized", payload.into()));
                self.runs.remove(media_id);
                if let Some(media) = self.media_update(media_id).await {
                    events.push(("media_update", media.into()));
                }
            }
            ("ANALYSIS_FAILED", Some(run_id)) if model.is_some() => {
                let error = data.get("error_message").cloned().unwrap_or(Value::Null);
                let failed = json!({
                    "userId": user_id, "mediaId": media_id, "analysisRunId": run_id, "modelName": model, "error": error,
                });
                events.push(("analysis_failed", failed.into()));
                let processing = json!({
                    "mediaId": media_id, "filename": data.get("filename"), "runId": run_id,
                    "modelName": model, "error": error,
                });
                events.push(("processing_error", processing.into()));
            }
            (_, None) => {
                if let (Some(model), Some(progress), Some(total)) = (
                    model,
                    data.get("progress").and_then(Value::as_f64),
                    data.get("total").and_then(Value::as_f64).filter(|t| *t > 0.0),
                ) && let Some(run_id) = self.active_run(media_id).await
                {
                    let percent = (100.0 * progress / total).round().clamp(0.0, 100.0) as i64;
                    let payload = json!({
                        "userId": user_id, "mediaId": media_id, "analysisRunId": run_id,
                        "modelName": model, "progress": percent,
                    });
                    events.push(("analysis_progress", payload.into()));
                }
            }
            _ => {}
        }
        // ML progress (no runId) of one model: the kind of message the outboxes may coalesce.
        let progress = match model {
            Some(m) if backend_run.is_none() && event.ends_with("_PROGRESS") => {
                Some(ProgressKey { media_id: media_id.to_string(), model: m.to_string() })
            }
            _ => None,
        };
        let message = Message { event: event.to_string(), media_id: media_id.to_string(), progress, events };
        self.state.sockets.deliver(&sockets, message);
    }

    /// The media as `GET /media/:id` serves it, read now (after the event).
    async fn media_update(&self, media_id: &str) -> Option<Value> {
        let id = Uuid::parse_str(media_id).ok()?;
        match media::load_full(&self.state.db, id, None).await {
            Ok(Some(m)) => match serde_json::to_value(self.state.view(m).await) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "media_update not serialised");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(media.id = %id, error = %e, "media_update not sent: media not readable");
                None
            }
        }
    }

    fn remember(&mut self, media_id: &str, run_id: Uuid, run_number: Option<i64>) {
        if self.runs.len() >= MAX_TRACKED_MEDIA && !self.runs.contains_key(media_id) {
            self.runs.clear();
        }
        let entry = self.runs.entry(media_id.to_string()).or_insert(RunRef { run_id, run_number });
        if entry.run_id != run_id {
            *entry = RunRef { run_id, run_number };
        } else if run_number.is_some() {
            entry.run_number = run_number;
        }
    }

    async fn run_number(&mut self, media_id: &str, run_id: Uuid) -> Option<i64> {
        if let Some(n) = self.runs.get(media_id).filter(|r| r.run_id == run_id).and_then(|r| r.run_number) {
            return Some(n);
        }
        let n = sqlx::query_scalar!("SELECT run_number FROM analysis_runs WHERE id = $1", run_id)
            .fetch_optional(&self.state.db)
            .await
            .ok()
            .flatten()
            .map(i64::from);
        if n.is_some() {
            self.remember(media_id, run_id, n);
        }
        n
    }

    /// ML messages carry no run id: the media's only non-terminal run.
    async fn active_run(&mut self, media_id: &str) -> Option<Uuid> {
        if let Some(r) = self.runs.get(media_id) {
            return Some(r.run_id);
        }
        let id = Uuid::parse_str(media_id).ok()?;
        let run = media::active_runs(&self.state.db, id).await.ok()?.into_iter().next()?;
        self.remember(media_id, run.id, Some(i64::from(run.run_number)));
        Some(run.id)
    }
}
