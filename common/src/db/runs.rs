//! Analysis runs and their per-model rows: the state transitions of the analysis workflow
//! (`docs/contract.md` §3.6, §6).
//!
//! Every write that changes a run first locks the run row (`FOR UPDATE`) and gives up when the run
//! is missing or terminal, so retried or replayed steps never duplicate rows and a terminal run
//! never moves. Media status is written in the same transaction, and only while the run is the
//! media's latest.

use crate::messages;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::model::{AnalysisStatus, MediaType, RunStatus};

/// How a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalization {
    /// The usual rule: ANALYZED if ≥1 model COMPLETED, else FAILED. Unfinished rows (PENDING/RUNNING)
    /// become FAILED with `error` (when Some); the run's errorMessage = `error`.
    Finish { error: Option<String> },
    /// CANCELLED; unfinished rows CANCELLED "Analysis cancelled"; run errorMessage "Analysis cancelled".
    Cancel,
}

/// A run as it was finalized.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalizedRun {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub run_number: i32,
    pub filename: String,
    pub status: RunStatus,
    pub total_models: i32,
    pub completed: i64,
    pub failed: i64,
    pub pending: i64,
    pub error_message: Option<String>,
}

/// What the activities need to know about a run and its media.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    pub run_id: Uuid,
    pub run_number: i32,
    pub run_status: RunStatus,
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub filename: String,
    pub storage_key: String,
    pub media_type: MediaType,
    pub has_audio: Option<bool>,
}

/// Row counts of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub completed: i64,
    pub failed: i64,
    pub unfinished: i64,
}

/// Loads a run with its media; `None` when either is gone.
pub async fn context(pool: &PgPool, run_id: Uuid) -> Result<Option<RunContext>, sqlx::Error> {
    sqlx::query_as!(
        RunContext,
        r#"SELECT r.id AS run_id, r.run_number, r.status AS "run_status: RunStatus", m.id AS media_id,
                  m.user_id, m.filename, m.storage_key, m.media_type AS "media_type: MediaType", m.has_audio
           FROM analysis_runs r JOIN media m ON m.id = r.media_id
           WHERE r.id = $1"#,
        run_id
    )
    .fetch_optional(pool)
    .await
}

/// Stores the probe summary of a media file.
pub async fn store_probe(
    pool: &PgPool,
    media_id: Uuid,
    metadata: Option<&Value>,
    has_audio: Option<bool>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE media SET metadata = $2, has_audio = $3 WHERE id = $1", media_id, metadata, has_audio)
        .execute(pool)
        .await?;
    Ok(())
}

/// Locks a non-terminal run; `None` when it is missing or terminal.
async fn lock_open_run(conn: &mut PgConnection, run_id: Uuid) -> Result<Option<RunContext>, sqlx::Error> {
    let run = sqlx::query_as!(
        RunContext,
        r#"SELECT r.id AS run_id, r.run_number, r.status AS "run_status: RunStatus", m.id AS media_id,
                  m.user_id, m.filename, m.storage_key, m.media_type AS "media_type: MediaType", m.has_audio
           FROM analysis_runs r JOIN media m ON m.id = r.media_id
           WHERE r.id = $1
           FOR UPDATE OF r"#,
        run_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(run.filter(|r| !r.run_status.is_terminal()))
}

async fn counts(conn: &mut PgConnection, run_id: Uuid) -> Result<Counts, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'COMPLETED') AS "completed!",
                  count(*) FILTER (WHERE status = 'FAILED') AS "failed!",
                  count(*) FILTER (WHERE status IN ('PENDING', 'RUNNING')) AS "unfinished!"
           FROM deepfake_analyses WHERE analysis_run_id = $1"#,
        run_id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Counts { completed: row.completed, failed: row.failed, unfinished: row.unfinished })
}

/// Mirrors a run's status on its media while the run is the media's latest.
async fn mirror_on_media(conn: &mut PgConnection, run: &RunContext, status: RunStatus) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE media SET status = $2, latest_analysis_run_id = $3
           WHERE id = $1
             AND NOT EXISTS (SELECT 1 FROM analysis_runs o WHERE o.media_id = $1 AND o.run_number > $4)"#,
        run.media_id,
        status as RunStatus,
        run.run_id,
        run.run_number
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes current counts and the in-flight status (§3.6) of a run being analysed.
async fn refresh_in_flight(conn: &mut PgConnection, run: &RunContext) -> Result<RunStatus, sqlx::Error> {
    let c = counts(conn, run.run_id).await?;
    let status = RunStatus::in_flight_for(c.completed, c.unfinished, run.run_status);
    sqlx::query!(
        "UPDATE analysis_runs SET status = $2, completed_count = $3, failed_count = $4 WHERE id = $1",
        run.run_id,
        status as RunStatus,
        c.completed as i32,
        c.failed as i32
    )
    .execute(&mut *conn)
    .await?;
    mirror_on_media(conn, run, status).await?;
    Ok(status)
}

/// Step 3: run and media → PROCESSING, `totalModels`, one PENDING row per model (existing rows are
/// kept). `None` when the run is missing or terminal.
pub async fn start(pool: &PgPool, run_id: Uuid, models: &[String]) -> Result<Option<RunContext>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(run) = lock_open_run(&mut tx, run_id).await? else {
        return Ok(None);
    };
    for model in models {
        sqlx::query!(
            r#"INSERT INTO deepfake_analyses (id, analysis_run_id, model_name)
               VALUES ($1, $2, $3)
               ON CONFLICT ON CONSTRAINT deepfake_analyses_run_model_key DO NOTHING"#,
            Uuid::new_v4(),
            run_id,
            model
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!("UPDATE analysis_runs SET total_models = $2 WHERE id = $1", run_id, models.len() as i32)
        .execute(&mut *tx)
        .await?;
    refresh_in_flight(&mut tx, &run).await?;
    tx.commit().await?;
    Ok(Some(run))
}

/// What an attempt finds when it begins.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptStart {
    /// The row is RUNNING now, with `attempts` = the attempt number.
    Running { analysis_id: Uuid },
    /// An earlier attempt already completed this model (its result was recorded but not reported).
    AlreadyCompleted { analysis_id: Uuid, prediction: String, confidence: f64 },
    /// The run is missing, terminal, or the row is finished otherwise.
    Closed,
}

/// Marks a model's row RUNNING for `attempt` (1-based).
pub async fn begin_attempt(
    pool: &PgPool,
    run_id: Uuid,
    model: &str,
    attempt: i32,
) -> Result<AttemptStart, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if lock_open_run(&mut tx, run_id).await?.is_none() {
        return Ok(AttemptStart::Closed);
    }
    let row = sqlx::query!(
        r#"SELECT id, status AS "status: AnalysisStatus", prediction, confidence
           FROM deepfake_analyses WHERE analysis_run_id = $1 AND model_name = $2"#,
        run_id,
        model
    )
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match row {
        None => AttemptStart::Closed,
        Some(r) if r.status == AnalysisStatus::Completed => {
            AttemptStart::AlreadyCompleted { analysis_id: r.id, prediction: r.prediction, confidence: r.confidence }
        }
        Some(r) if r.status.is_finished() => AttemptStart::Closed,
        Some(r) => {
            sqlx::query!("UPDATE deepfake_analyses SET status = 'RUNNING', attempts = $2 WHERE id = $1", r.id, attempt)
                .execute(&mut *tx)
                .await?;
            AttemptStart::Running { analysis_id: r.id }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// A validated ML result, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResult {
    /// The model that produced the result when the ML server fell back to another one.
    pub model_used: Option<String>,
    pub prediction: String,
    pub confidence: f64,
    pub processing_time: Option<f64>,
    pub media_type: Option<String>,
    pub payload: Value,
}

/// Upserts a model's row COMPLETED and updates counts and run/media status in one transaction.
/// Returns the row id, or `None` when the run is missing or terminal.
pub async fn complete_model(
    pool: &PgPool,
    run_id: Uuid,
    model: &str,
    attempt: i32,
    result: &ModelResult,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(run) = lock_open_run(&mut tx, run_id).await? else {
        return Ok(None);
    };
    let id = sqlx::query_scalar!(
        r#"INSERT INTO deepfake_analyses (id, analysis_run_id, model_name, status, prediction, confidence,
                                          error_message, processing_time, media_type, result_payload, attempts,
                                          model_used)
           VALUES ($1, $2, $3, 'COMPLETED', $4, $5, NULL, $6, $7, $8, $9, $10)
           ON CONFLICT ON CONSTRAINT deepfake_analyses_run_model_key DO UPDATE
             SET status = 'COMPLETED', prediction = EXCLUDED.prediction, confidence = EXCLUDED.confidence,
                 error_message = NULL, processing_time = EXCLUDED.processing_time,
                 media_type = EXCLUDED.media_type, result_payload = EXCLUDED.result_payload,
                 attempts = GREATEST(deepfake_analyses.attempts, EXCLUDED.attempts), model_used = EXCLUDED.model_used
           RETURNING id"#,
        Uuid::new_v4(),
        run_id,
        model,
        result.prediction,
        result.confidence,
        result.processing_time,
        result.media_type,
        result.payload,
        attempt,
        result.model_used
    )
    .fetch_one(&mut *tx)
    .await?;
    refresh_in_flight(&mut tx, &run).await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// A retryable failure with attempts left: RUNNING → PENDING. False when nothing changed.
pub async fn await_retry(pool: &PgPool, run_id: Uuid, model: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE deepfake_analyses a SET status = 'PENDING'
           FROM analysis_runs r
           WHERE a.analysis_run_id = $1 AND a.model_name = $2 AND a.status = 'RUNNING'
             AND r.id = a.analysis_run_id AND r.status IN ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED')"#,
        run_id,
        model
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A model's row as it was failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedModel {
    pub analysis_id: Uuid,
    pub attempts: i32,
}

/// A final failure: the row FAILED with `message` and the `{error, attempts, retryCount}` payload;
/// counts and run/media status in the same transaction. `attempts`: the calls that reached the ML
/// server (`None` keeps the row's count, at least 1). `None` when the run is missing or terminal or
/// the row already finished.
pub async fn fail_model(
    pool: &PgPool,
    run_id: Uuid,
    model: &str,
    message: &str,
    attempts: Option<i32>,
) -> Result<Option<FailedModel>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(run) = lock_open_run(&mut tx, run_id).await? else {
        return Ok(None);
    };
    let row = sqlx::query!(
        r#"UPDATE deepfake_analyses
           SET status = 'FAILED', prediction = 'N/A', confidence = 0, error_message = $3,
               processing_time = NULL, media_type = NULL, attempts = COALESCE($4, GREATEST(attempts, 1)),
               result_payload = jsonb_build_object('error', $3::text,
                                                   'attempts', COALESCE($4, GREATEST(attempts, 1)),
                                                   'retryCount', GREATEST(COALESCE($4, GREATEST(attempts, 1)) - 1, 0))
           WHERE analysis_run_id = $1 AND model_name = $2 AND status IN ('PENDING', 'RUNNING')
           RETURNING id, attempts"#,
        run_id,
        model,
        message,
        attempts
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    refresh_in_flight(&mut tx, &run).await?;
    tx.commit().await?;
    Ok(Some(FailedModel { analysis_id: row.id, attempts: row.attempts }))
}

/// One transaction: run + media status (media only if this run is the media's latest), counts, completedAt,
/// latestAnalysisRunId. Returns None when the run is missing or already terminal (idempotent; terminal runs never move).
pub async fn finalize(pool: &PgPool, run_id: Uuid, how: Finalization) -> Result<Option<FinalizedRun>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(run) = lock_open_run(&mut tx, run_id).await? else {
        return Ok(None);
    };
    let error_message = match &how {
        Finalization::Cancel => {
            sqlx::query!(
                r#"UPDATE deepfake_analyses
                   SET status = 'CANCELLED', prediction = 'N/A', confidence = 0, error_message = $2,
                       processing_time = NULL, media_type = NULL, result_payload = NULL
                   WHERE analysis_run_id = $1 AND status IN ('PENDING', 'RUNNING')"#,
                run_id,
                messages::CANCELLED
            )
            .execute(&mut *tx)
            .await?;
            Some(messages::CANCELLED.to_string())
        }
        Finalization::Finish { error } => {
            let row_error = error.as_deref().unwrap_or(messages::UNFINISHED);
            sqlx::query!(
                r#"UPDATE deepfake_analyses
                   SET status = 'FAILED', prediction = 'N/A', confidence = 0, error_message = $2,
                       processing_time = NULL, media_type = NULL,
                       result_payload = jsonb_build_object('error', $2::text, 'attempts', attempts,
                                                           'retryCount', GREATEST(attempts - 1, 0))
                   WHERE analysis_run_id = $1 AND status IN ('PENDING', 'RUNNING')"#,
                run_id,
                row_error
            )
            .execute(&mut *tx)
            .await?;
            error.clone()
        }
    };
    let c = counts(&mut tx, run_id).await?;
    let status = match how {
        Finalization::Cancel => RunStatus::Cancelled,
        Finalization::Finish { .. } => RunStatus::final_for(c.completed),
    };
    let total_models = sqlx::query_scalar!(
        r#"UPDATE analysis_runs
           SET status = $2, completed_count = $3, failed_count = $4, error_message = $5, completed_at = now()
           WHERE id = $1
           RETURNING total_models"#,
        run_id,
        status as RunStatus,
        c.completed as i32,
        c.failed as i32,
        error_message
    )
    .fetch_one(&mut *tx)
    .await?;
    mirror_on_media(&mut tx, &run, status).await?;
    tx.commit().await?;
    Ok(Some(FinalizedRun {
        run_id,
        media_id: run.media_id,
        user_id: run.user_id,
        run_number: run.run_number,
        filename: run.filename,
        status,
        total_models,
        completed: c.completed,
        failed: c.failed,
        pending: (i64::from(total_models) - c.completed - c.failed).max(0),
        error_message,
    }))
}

/// A run's status and counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub status: RunStatus,
    pub total_models: i32,
    pub completed: i64,
    pub failed: i64,
}

pub async fn summary(pool: &PgPool, run_id: Uuid) -> Result<Option<RunSummary>, sqlx::Error> {
    sqlx::query_as!(
        RunSummary,
        r#"SELECT status AS "status: RunStatus", total_models, completed_count::bigint AS "completed!",
                  failed_count::bigint AS "failed!"
           FROM analysis_runs WHERE id = $1"#,
        run_id
    )
    .fetch_optional(pool)
    .await
}
