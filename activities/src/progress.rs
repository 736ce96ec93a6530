//! The backend's per-run progress events (`docs/contract.md` §7.2). Every `data` carries `runId`, and the
//! per-model ones `model_name`; `timestamp` is added by [`ProgressMessage::backend`].

use drishtiksha_common::db::runs::RunContext;
use drishtiksha_common::events::ProgressMessage;
use serde_json::json;
use uuid::Uuid;

fn message(run: &RunContext, event: &str, text: String, data: serde_json::Value) -> ProgressMessage {
    ProgressMessage::backend(run.media_id, run.user_id, event, text, data)
}

pub fn processing_started(run: &RunContext) -> ProgressMessage {
    message(
        run,
        "PROCESSING_STARTED",
        format!("Starting analysis of \"{}\"", run.filename),
        json!({ "model_name": "Backend Worker", "filename": run.filename, "mediaType": run.media_type,
                "runId": run.run_id, "runNumber": run.run_number }),
    )
}

pub fn analysis_queued(run: &RunContext, model: &str) -> ProgressMessage {
    message(
        run,
        "ANALYSIS_QUEUED",
        format!("{model} queued for analysis"),
        json!({ "model_name": model, "progress": 0, "total": 100, "phase": "QUEUED", "filename": run.filename,
                "runId": run.run_id, "runNumber": run.run_number }),
    )
}

pub fn analysis_started(run: &RunContext, model: &str, attempt: i32) -> ProgressMessage {
    message(
        run,
        "ANALYSIS_STARTED",
        format!("Starting {model} analysis of \"{}\" (attempt {attempt})", run.filename),
        json!({ "model_name": model, "filename": run.filename, "runId": run.run_id, "phase": "analyzing",
                "attempt": attempt }),
    )
}

pub fn analysis_retrying(run: &RunContext, model: &str, attempt: i32, error: &str) -> ProgressMessage {
    message(
        run,
        "ANALYSIS_RETRYING",
        format!("{model} attempt {attempt} failed; retrying"),
        json!({ "model_name": model, "filename": run.filename, "runId": run.run_id, "phase": "retrying",
                "attempt": attempt, "error_message": error }),
    )
}

pub struct Completed<'a> {
    pub analysis_id: Uuid,
    pub prediction: &'a str,
    pub confidence: f64,
    pub processing_time: Option<f64>,
}

pub fn analysis_completed(run: &RunContext, model: &str, c: Completed<'_>) -> ProgressMessage {
    message(
        run,
        "ANALYSIS_COMPLETED",
        format!("Completed {model} analysis for \"{}\"", run.filename),
        json!({ "model_name": model, "filename": run.filename, "runId": run.run_id, "analysisId": c.analysis_id,
                "prediction": c.prediction, "confidence": c.confidence, "processingTime": c.processing_time,
                "phase": "completed" }),
    )
}

pub fn analysis_failed(
    run: &RunContext,
    model: &str,
    analysis_id: Uuid,
    error: &str,
    attempts: i32,
) -> ProgressMessage {
    message(
        run,
        "ANALYSIS_FAILED",
        format!("{model} analysis failed for \"{}\"", run.filename),
        json!({ "model_name": model, "filename": run.filename, "runId": run.run_id, "analysisId": analysis_id,
                "error_message": error, "attempts": attempts, "phase": "failed" }),
    )
}
