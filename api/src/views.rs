//! The API's views of the database's records: the objects REST answers and Socket.IO events show
//! (§3), with their OpenAPI schemas. The records themselves (`drishtiksha_common::db`) carry no
//! wire format of their own; everything the contract fixes about names, formats and which fields
//! appear where is decided here.

use chrono::{DateTime, Utc};
use drishtiksha_common::db::media as records;
use drishtiksha_common::db::users as user_records;
use drishtiksha_common::{model, reconcile};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum UserRole {
    User,
    Admin,
}

/// Status of an analysis run; media status mirrors the status of the media's latest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Queued,
    Processing,
    PartiallyAnalyzed,
    Analyzed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AnalysisStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MediaType {
    Video,
    Image,
    Audio,
}

impl From<model::UserRole> for UserRole {
    fn from(r: model::UserRole) -> Self {
        match r {
            model::UserRole::User => Self::User,
            model::UserRole::Admin => Self::Admin,
        }
    }
}

impl From<model::RunStatus> for RunStatus {
    fn from(s: model::RunStatus) -> Self {
        match s {
            model::RunStatus::Queued => Self::Queued,
            model::RunStatus::Processing => Self::Processing,
            model::RunStatus::PartiallyAnalyzed => Self::PartiallyAnalyzed,
            model::RunStatus::Analyzed => Self::Analyzed,
            model::RunStatus::Failed => Self::Failed,
            model::RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<model::AnalysisStatus> for AnalysisStatus {
    fn from(s: model::AnalysisStatus) -> Self {
        match s {
            model::AnalysisStatus::Pending => Self::Pending,
            model::AnalysisStatus::Running => Self::Running,
            model::AnalysisStatus::Completed => Self::Completed,
            model::AnalysisStatus::Failed => Self::Failed,
            model::AnalysisStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<model::MediaType> for MediaType {
    fn from(t: model::MediaType) -> Self {
        match t {
            model::MediaType::Video => Self::Video,
            model::MediaType::Image => Self::Image,
            model::MediaType::Audio => Self::Audio,
        }
    }
}

/// A user as the contract shows it (§3.1).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "email": "ada@example.com", "firstName": "Ada",
    "lastName": "Lovelace", "role": "USER", "isActive": true,
    "createdAt": "2025-10-12T03:41:49.123Z", "updatedAt": "2025-10-12T03:41:49.123Z"
}))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: UserRole,
    pub is_active: bool,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub updated_at: DateTime<Utc>,
}

/// The owner as embedded in media (§3.1: these four fields only).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaUser {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

/// A media object (§3.2). `user` and `analysis_runs` are serialized only when loaded.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "8c0e7a52-1c2b-4d7e-9a55-0f6f1d2c3b4a", "filename": "interview.mp4",
    "url": "http://localhost:3000/media/videos/8c0e7a52-1c2b-4d7e-9a55-0f6f1d2c3b4a.mp4",
    "publicId": "videos/8c0e7a52-1c2b-4d7e-9a55-0f6f1d2c3b4a.mp4", "mimetype": "video/mp4", "size": 5242880,
    "description": "demo", "status": "QUEUED", "mediaType": "VIDEO", "hasAudio": null, "metadata": null,
    "userId": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "createdAt": "2025-10-12T03:41:49.123Z", "updatedAt": "2025-10-12T03:41:49.123Z",
    "latestAnalysisRunId": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
}))]
pub struct Media {
    pub id: Uuid,
    /// Original client file name, path components stripped.
    pub filename: String,
    /// Where the file can be fetched.
    pub url: String,
    /// Storage key, e.g. `videos/<id>.mp4`.
    // The contract's name for it is `publicId`.
    #[serde(rename = "publicId")]
    pub storage_key: String,
    /// Canonical MIME type of the stored file.
    pub mimetype: String,
    /// Size in bytes.
    pub size: i64,
    #[schema(required = true, max_length = 500)]
    pub description: Option<String>,
    /// Mirrors the status of the latest run.
    pub status: RunStatus,
    pub media_type: MediaType,
    /// Videos: whether an audio track was found; `null` before probing, if probing failed, and for
    /// audio and images.
    #[schema(required = true)]
    pub has_audio: Option<bool>,
    /// Probe summary (`format`, `video`, `audio`, `streams`); `null` before probing, if probing
    /// failed, and for images.
    #[schema(required = true, value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Owner.
    pub user_id: Uuid,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub updated_at: DateTime<Utc>,
    /// The run with the highest `runNumber`.
    #[schema(required = true)]
    pub latest_analysis_run_id: Option<Uuid>,
    /// The owner; only in the list, the detail, the re-run answer and `media_update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = MediaUser)]
    pub user: Option<MediaUser>,
    /// Runs, `runNumber` descending; only where the media is shown with its runs (the list: the
    /// latest run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Run>)]
    pub analysis_runs: Option<Vec<Run>>,
}

/// An analysis run (§3.3) with its analyses. The workflow id is not part of the contract.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", "mediaId": "8c0e7a52-1c2b-4d7e-9a55-0f6f1d2c3b4a",
    "runNumber": 1, "status": "ANALYZED", "totalModels": 1, "completedCount": 1, "failedCount": 0,
    "errorMessage": null, "createdAt": "2025-10-12T03:41:49.123Z", "updatedAt": "2025-10-12T03:42:31.002Z",
    "completedAt": "2025-10-12T03:42:31.002Z", "analyses": []
}))]
pub struct Run {
    pub id: Uuid,
    pub media_id: Uuid,
    pub run_number: i32,
    pub status: RunStatus,
    pub total_models: i32,
    pub completed_count: i32,
    pub failed_count: i32,
    /// Run-level reason, e.g. `No compatible models available for AUDIO`.
    #[schema(required = true)]
    pub error_message: Option<String>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub updated_at: DateTime<Utc>,
    /// Set when the run reaches a terminal status.
    #[serde(with = "drishtiksha_common::time::ts_opt")]
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    pub analyses: Vec<Analysis>,
}

/// One model's result within a run (§3.4).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70", "analysisRunId": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
    "modelName": "SIGLIP-LSTM-V4", "status": "COMPLETED", "prediction": "FAKE", "confidence": 0.8731,
    "errorMessage": null, "processingTime": 41.27, "mediaType": "video",
    "resultPayload": { "prediction": "FAKE", "confidence": 0.8731, "processing_time": 41.27, "media_type": "video" },
    "createdAt": "2025-10-12T03:41:50.001Z", "updatedAt": "2025-10-12T03:42:31.002Z"
}))]
pub struct Analysis {
    pub id: Uuid,
    pub analysis_run_id: Uuid,
    /// The model that was requested.
    pub model_name: String,
    /// The model that actually answered, when the ML server fell back to another one (`null`:
    /// the requested model itself).
    #[schema(required = true, example = json!(null))]
    pub model_used: Option<String>,
    pub status: AnalysisStatus,
    /// `REAL` or `FAKE` once completed, `N/A` otherwise.
    #[schema(example = "FAKE")]
    pub prediction: String,
    pub confidence: f64,
    #[schema(required = true)]
    pub error_message: Option<String>,
    /// Seconds, from the ML result.
    #[schema(required = true)]
    pub processing_time: Option<f64>,
    /// `video`, `audio` or `image`, from the ML result.
    #[schema(required = true)]
    pub media_type: Option<String>,
    /// The ML server's `data` object (completed), bounded as `drishtiksha_common::payload` describes (the full
    /// answer: `GET /media/{id}/analyses/{analysisId}/result`), or `{ error, attempts, retryCount }` (failed).
    #[schema(required = true, value_type = Option<Object>)]
    pub result_payload: Option<Value>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "drishtiksha_common::time::ts")]
    pub updated_at: DateTime<Utc>,
}

impl From<user_records::User> for User {
    fn from(u: user_records::User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            role: u.role.into(),
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<records::MediaUser> for MediaUser {
    fn from(u: records::MediaUser) -> Self {
        Self { id: u.id, first_name: u.first_name, last_name: u.last_name, email: u.email }
    }
}

impl From<records::Media> for Media {
    /// The media with its stored `url`; [`crate::state::AppState::view`] sets the URL as it is
    /// served now.
    fn from(m: records::Media) -> Self {
        Self {
            id: m.id,
            filename: m.filename,
            url: m.url.unwrap_or_default(),
            storage_key: m.storage_key,
            mimetype: m.mimetype,
            size: m.size,
            description: m.description,
            status: m.status.into(),
            media_type: m.media_type.into(),
            has_audio: m.has_audio,
            metadata: m.metadata,
            user_id: m.user_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
            latest_analysis_run_id: m.latest_analysis_run_id,
            user: m.user.map(MediaUser::from),
            analysis_runs: m.analysis_runs.map(|runs| runs.into_iter().map(Run::from).collect()),
        }
    }
}

impl From<records::Run> for Run {
    fn from(r: records::Run) -> Self {
        Self {
            id: r.id,
            media_id: r.media_id,
            run_number: r.run_number,
            status: r.status.into(),
            total_models: r.total_models,
            completed_count: r.completed_count,
            failed_count: r.failed_count,
            error_message: r.error_message,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            analyses: r.analyses.into_iter().map(Analysis::from).collect(),
        }
    }
}

impl From<records::Analysis> for Analysis {
    fn from(a: records::Analysis) -> Self {
        Self {
            id: a.id,
            analysis_run_id: a.analysis_run_id,
            model_name: a.model_name,
            model_used: a.model_used,
            status: a.status.into(),
            prediction: a.prediction,
            confidence: a.confidence,
            error_message: a.error_message,
            processing_time: a.processing_time,
            media_type: a.media_type,
            result_payload: a.result_payload,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// What one reconciler pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PassReport {
    pub checked: usize,
    pub finalized: usize,
    /// QUEUED runs whose workflow was started by this pass.
    pub started: usize,
}

impl From<reconcile::PassReport> for PassReport {
    fn from(r: reconcile::PassReport) -> Self {
        Self { checked: r.checked, finalized: r.finalized, started: r.started }
    }
}

/// One finding of `verify-statuses`.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusIssue {
    pub media_id: Uuid,
    pub filename: String,
    #[schema(required = true)]
    pub run_id: Option<Uuid>,
    pub issue: String,
    #[schema(required = true)]
    pub current_run_status: Option<RunStatus>,
    #[schema(required = true)]
    pub expected_run_status: Option<RunStatus>,
    pub current_media_status: RunStatus,
    pub expected_media_status: RunStatus,
    #[schema(required = true)]
    pub analyses: Option<AnalysisCounts>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
pub struct AnalysisCounts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub pending: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub total_media: i64,
    pub correct_media: i64,
    pub incorrect_media: i64,
    pub issues: Vec<StatusIssue>,
}

impl From<reconcile::Verification> for Verification {
    fn from(v: reconcile::Verification) -> Self {
        Self {
            total_media: v.total_media,
            correct_media: v.correct_media,
            incorrect_media: v.incorrect_media,
            issues: v
                .issues
                .into_iter()
                .map(|i| StatusIssue {
                    media_id: i.media_id,
                    filename: i.filename,
                    run_id: i.run_id,
                    issue: i.issue,
                    current_run_status: i.current_run_status.map(RunStatus::from),
                    expected_run_status: i.expected_run_status.map(RunStatus::from),
                    current_media_status: i.current_media_status.into(),
                    expected_media_status: i.expected_media_status.into(),
                    analyses: i.analyses.map(|a| AnalysisCounts {
                        total: a.total,
                        completed: a.completed,
                        failed: a.failed,
                        pending: a.pending,
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view's enum is written exactly as the record's enum is stored and published.
    #[test]
    fn enums_serialize_as_the_domain_does() {
        fn same<D: Serialize + Copy, V: Serialize + From<D>>(values: &[D]) {
            for &d in values {
                assert_eq!(serde_json::to_value(d).ok(), serde_json::to_value(V::from(d)).ok());
            }
        }
        use model::{AnalysisStatus as A, MediaType as M, RunStatus as R, UserRole as U};
        same::<U, UserRole>(&[U::User, U::Admin]);
        same::<R, RunStatus>(&[R::Queued, R::Processing, R::PartiallyAnalyzed, R::Analyzed, R::Failed, R::Cancelled]);
        same::<A, AnalysisStatus>(&[A::Pending, A::Running, A::Completed, A::Failed, A::Cancelled]);
        same::<M, MediaType>(&[M::Video, M::Image, M::Audio]);
    }
}
