//! The records of media, their runs and per-model results, as the queries return them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{AnalysisStatus, MediaType, RunStatus};

/// The owner as embedded in media (§3.1: these four fields only).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaUser {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

/// A media object (§3.2). `user` and `analysis_runs` are present only when loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub id: Uuid,
    /// Original client file name, path components stripped.
    pub filename: String,
    /// The URL stored at upload (the api serves a current one).
    pub url: Option<String>,
    /// Storage key, e.g. `videos/<id>.mp4`.
    pub storage_key: String,
    /// Canonical MIME type of the stored file.
    pub mimetype: String,
    /// Size in bytes.
    pub size: i64,
    pub description: Option<String>,
    /// Mirrors the status of the latest run.
    pub status: RunStatus,
    pub media_type: MediaType,
    /// Videos: whether an audio track was found; `null` before probing, if probing failed, and for
    /// audio and images.
    pub has_audio: Option<bool>,
    /// Probe summary (`format`, `video`, `audio`, `streams`); `null` before probing, if probing
    /// failed, and for images.
    pub metadata: Option<Value>,
    /// Owner.
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The run with the highest `runNumber`.
    pub latest_analysis_run_id: Option<Uuid>,
    /// The owner; only in the list, the detail, the re-run answer and `media_update`.
    pub user: Option<MediaUser>,
    /// Runs, `runNumber` descending; only where the media is shown with its runs (the list: the
    /// latest run only).
    pub analysis_runs: Option<Vec<Run>>,
}

/// An analysis run (§3.3) with its analyses. The workflow id is not part of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: Uuid,
    pub media_id: Uuid,
    pub run_number: i32,
    pub status: RunStatus,
    pub total_models: i32,
    pub completed_count: i32,
    pub failed_count: i32,
    /// Run-level reason, e.g. `No compatible models available for AUDIO`.
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the run reaches a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    pub analyses: Vec<Analysis>,
}

/// One model's result within a run (§3.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub id: Uuid,
    pub analysis_run_id: Uuid,
    /// The model that was requested.
    pub model_name: String,
    /// The model that actually answered, when the ML server fell back to another one (`null`:
    /// the requested model itself).
    pub model_used: Option<String>,
    pub status: AnalysisStatus,
    /// `REAL` or `FAKE` once completed, `N/A` otherwise.
    pub prediction: String,
    pub confidence: f64,
    pub error_message: Option<String>,
    /// Seconds, from the ML result.
    pub processing_time: Option<f64>,
    /// `video`, `audio` or `image`, from the ML result.
    pub media_type: Option<String>,
    /// The ML server's `data` object (completed), bounded as [`crate::payload`] describes (the full
    /// answer: `GET /media/{id}/analyses/{analysisId}/result`), or `{ error, attempts, retryCount }` (failed).
    pub result_payload: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the api needs to start and cancel a run's workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHandle {
    pub id: Uuid,
    pub run_number: i32,
    pub status: RunStatus,
    pub workflow_id: String,
}

/// A media row and its first run, created together by an upload.
pub struct NewUpload<'a> {
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub filename: &'a str,
    pub storage_key: &'a str,
    pub url: &'a str,
    pub mimetype: &'a str,
    pub size: i64,
    pub description: Option<&'a str>,
    pub media_type: MediaType,
    pub run_id: Uuid,
    pub workflow_id: &'a str,
}
