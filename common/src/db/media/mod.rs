//! Media, their analysis runs and per-model results (§3.2–§3.4), and the queries of the media
//! endpoints. The api's views of these records are in its `views` module.
//!
//! Ownership is part of every read and write that takes a `user_id`: media of other users are
//! indistinguishable from missing ones.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::model::{AnalysisStatus, MediaType, RunStatus};

mod records;

pub use records::{Analysis, Media, MediaUser, NewUpload, Run, RunHandle};

/// The partial unique index that allows one non-terminal run per media: violating it means a run
/// is already in progress.
pub const ONE_ACTIVE_RUN_PER_MEDIA: &str = "analysis_runs_one_active_per_media";
/// Two runs of one media raced for the same run number.
pub const RUN_NUMBER_UNIQUE: &str = "analysis_runs_media_id_run_number_key";

/// The [`MediaRow`] of a query record that selects the media columns (each `query!` record is a
/// type of its own). Moves only those fields out of `$r`.
macro_rules! media_row {
    ($r:ident) => {
        MediaRow {
            id: $r.id,
            filename: $r.filename,
            url: $r.url,
            storage_key: $r.storage_key,
            mimetype: $r.mimetype,
            size: $r.size,
            description: $r.description,
            status: $r.status,
            media_type: $r.media_type,
            has_audio: $r.has_audio,
            metadata: $r.metadata,
            user_id: $r.user_id,
            created_at: $r.created_at,
            updated_at: $r.updated_at,
            latest_analysis_run_id: $r.latest_analysis_run_id,
        }
    };
}

struct MediaRow {
    id: Uuid,
    filename: String,
    url: Option<String>,
    storage_key: String,
    mimetype: String,
    size: i64,
    description: Option<String>,
    status: RunStatus,
    media_type: MediaType,
    has_audio: Option<bool>,
    metadata: Option<Value>,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    latest_analysis_run_id: Option<Uuid>,
}

impl From<MediaRow> for Media {
    fn from(r: MediaRow) -> Self {
        Self {
            id: r.id,
            filename: r.filename,
            url: r.url,
            storage_key: r.storage_key,
            mimetype: r.mimetype,
            size: r.size,
            description: r.description,
            status: r.status,
            media_type: r.media_type,
            has_audio: r.has_audio,
            metadata: r.metadata,
            user_id: r.user_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            latest_analysis_run_id: r.latest_analysis_run_id,
            user: None,
            analysis_runs: None,
        }
    }
}

struct RunRow {
    id: Uuid,
    media_id: Uuid,
    run_number: i32,
    status: RunStatus,
    total_models: i32,
    completed_count: i32,
    failed_count: i32,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl RunRow {
    fn with_analyses(self, analyses: Vec<Analysis>) -> Run {
        Run {
            id: self.id,
            media_id: self.media_id,
            run_number: self.run_number,
            status: self.status,
            total_models: self.total_models,
            completed_count: self.completed_count,
            failed_count: self.failed_count,
            error_message: self.error_message,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed_at: self.completed_at,
            analyses,
        }
    }
}

/// Inserts the media row and its run #1 (both QUEUED). Call inside a transaction.
pub async fn insert_upload(conn: &mut PgConnection, new: &NewUpload<'_>) -> Result<Media, sqlx::Error> {
    let row = sqlx::query_as!(
        MediaRow,
        r#"INSERT INTO media (id, user_id, filename, storage_key, url, mimetype, size, description, media_type,
                              latest_analysis_run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           RETURNING id, filename, url, storage_key, mimetype, size, description, status AS "status: RunStatus",
                     media_type AS "media_type: MediaType", has_audio, metadata, user_id, created_at, updated_at,
                     latest_analysis_run_id"#,
        new.media_id,
        new.user_id,
        new.filename,
        new.storage_key,
        new.url,
        new.mimetype,
        new.size,
        new.description,
        new.media_type as MediaType,
        new.run_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, 1, $3)",
        new.run_id,
        new.media_id,
        new.workflow_id,
    )
    .execute(&mut *conn)
    .await?;
    Ok(row.into())
}

/// Creates the next run of an owned media (`max(runNumber) + 1`, QUEUED) and points the media at
/// it. `Ok(None)` when the media is missing or not the caller's. A run already in progress makes
/// the insert violate [`ONE_ACTIVE_RUN_PER_MEDIA`]; the caller maps that to a 409. Call inside a
/// transaction: the media row is locked so concurrent re-runs of one media queue up here.
/// Locks the runs of an owned media. Lock order: a media's runs, then the media, as every run write
/// does (`runs.rs`, which locks the run and then mirrors its status on the media).
async fn lock_runs(conn: &mut PgConnection, media_id: Uuid, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT r.id FROM analysis_runs r JOIN media m ON m.id = r.media_id
         WHERE r.media_id = $1 AND m.user_id = $2 ORDER BY r.run_number FOR UPDATE OF r",
        media_id,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert_next_run(
    conn: &mut PgConnection,
    media_id: Uuid,
    user_id: Uuid,
    run_id: Uuid,
    workflow_id_of: impl FnOnce(i32) -> String,
) -> Result<Option<RunHandle>, sqlx::Error> {
    // Inserting while a worker transaction updates the active run would make each wait for the
    // other in the one-active-run index (a deadlock); with the runs locked first, the insert waits
    // for that transaction and then meets the active run as a plain unique violation (409).
    lock_runs(conn, media_id, user_id).await?;
    let locked =
        sqlx::query_scalar!("SELECT id FROM media WHERE id = $1 AND user_id = $2 FOR UPDATE", media_id, user_id)
            .fetch_optional(&mut *conn)
            .await?;
    if locked.is_none() {
        return Ok(None);
    }
    let run_number = sqlx::query_scalar!(
        r#"SELECT COALESCE(MAX(run_number), 0) + 1 AS "n!" FROM analysis_runs WHERE media_id = $1"#,
        media_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let workflow_id = workflow_id_of(run_number);
    sqlx::query!(
        "INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, $3, $4)",
        run_id,
        media_id,
        run_number,
        workflow_id,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("UPDATE media SET status = 'QUEUED', latest_analysis_run_id = $2 WHERE id = $1", media_id, run_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(RunHandle { id: run_id, run_number, status: RunStatus::Queued, workflow_id }))
}

/// An owned media without relations.
pub async fn find_owned(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> Result<Option<Media>, sqlx::Error> {
    let row = sqlx::query_as!(
        MediaRow,
        r#"SELECT id, filename, url, storage_key, mimetype, size, description, status AS "status: RunStatus",
                  media_type AS "media_type: MediaType", has_audio, metadata, user_id, created_at, updated_at,
                  latest_analysis_run_id
           FROM media WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Media::from))
}

/// The full media object (with `user`, all runs `runNumber` DESC, each with its analyses), as
/// `GET /media/:id` and the `media_update` event show it. `owner` restricts it to one user.
pub async fn load_full(db: &sqlx::PgPool, id: Uuid, owner: Option<Uuid>) -> Result<Option<Media>, sqlx::Error> {
    // One snapshot: the media's status and its runs' statuses are read as of the same moment.
    let mut tx = snapshot(db).await?;
    let row = sqlx::query!(
        r#"SELECT m.id, m.filename, m.url, m.storage_key, m.mimetype, m.size, m.description,
                  m.status AS "status: RunStatus", m.media_type AS "media_type: MediaType", m.has_audio, m.metadata,
                  m.user_id, m.created_at, m.updated_at, m.latest_analysis_run_id,
                  u.first_name, u.last_name, u.email
           FROM media m JOIN users u ON u.id = m.user_id
           WHERE m.id = $1 AND ($2::uuid IS NULL OR m.user_id = $2)"#,
        id,
        owner
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let user = MediaUser { id: r.user_id, first_name: r.first_name, last_name: r.last_name, email: r.email };
    let mut media = Media::from(media_row!(r));
    let runs = sqlx::query_as!(
        RunRow,
        r#"SELECT id, media_id, run_number, status AS "status: RunStatus", total_models, completed_count,
                  failed_count, error_message, created_at, updated_at, completed_at
           FROM analysis_runs WHERE media_id = $1 ORDER BY run_number DESC"#,
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    media.user = Some(user);
    media.analysis_runs = Some(attach_analyses(&mut tx, runs).await?);
    tx.commit().await?;
    Ok(Some(media))
}

/// The caller's media, `createdAt` DESC (ties: `id` DESC), each with `user` and its latest run.
pub async fn list_for_user(db: &sqlx::PgPool, user_id: Uuid) -> Result<Vec<Media>, sqlx::Error> {
    let mut tx = snapshot(db).await?;
    let rows = sqlx::query!(
        r#"SELECT m.id, m.filename, m.url, m.storage_key, m.mimetype, m.size, m.description,
                  m.status AS "status: RunStatus", m.media_type AS "media_type: MediaType", m.has_audio, m.metadata,
                  m.user_id, m.created_at, m.updated_at, m.latest_analysis_run_id,
                  u.first_name, u.last_name, u.email
           FROM media m JOIN users u ON u.id = m.user_id
           WHERE m.user_id = $1
           ORDER BY m.created_at DESC, m.id DESC"#,
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let latest_runs = sqlx::query_as!(
        RunRow,
        r#"SELECT DISTINCT ON (r.media_id)
                  r.id, r.media_id, r.run_number, r.status AS "status: RunStatus", r.total_models, r.completed_count,
                  r.failed_count, r.error_message, r.created_at, r.updated_at, r.completed_at
           FROM analysis_runs r JOIN media m ON m.id = r.media_id
           WHERE m.user_id = $1
           ORDER BY r.media_id, r.run_number DESC"#,
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut latest: std::collections::HashMap<Uuid, Run> =
        attach_analyses(&mut tx, latest_runs).await?.into_iter().map(|run| (run.media_id, run)).collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let runs = latest.remove(&r.id).into_iter().collect();
            let mut media = Media::from(media_row!(r));
            media.user =
                Some(MediaUser { id: r.user_id, first_name: r.first_name, last_name: r.last_name, email: r.email });
            media.analysis_runs = Some(runs);
            media
        })
        .collect())
}

/// A read-only transaction whose reads all see one snapshot of the database, so that a media's
/// status, its runs and their analyses are consistent with each other.
async fn snapshot(db: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}

/// Loads the analyses of `runs` (ordered `createdAt` ASC, then `modelName` ASC), keeping the
/// order of `runs`.
async fn attach_analyses(db: &mut sqlx::PgConnection, runs: Vec<RunRow>) -> Result<Vec<Run>, sqlx::Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    let analyses = sqlx::query_as!(
        Analysis,
        r#"SELECT id, analysis_run_id, model_name, model_used, status AS "status: AnalysisStatus", prediction,
                  confidence, error_message, processing_time, media_type, result_payload, created_at, updated_at
           FROM deepfake_analyses WHERE analysis_run_id = ANY($1)
           ORDER BY created_at ASC, model_name ASC"#,
        &ids
    )
    .fetch_all(&mut *db)
    .await?;
    let mut by_run: std::collections::HashMap<Uuid, Vec<Analysis>> = std::collections::HashMap::new();
    for mut a in analyses {
        // Rows written before payloads were bounded at write time.
        if let Some(p) = a.result_payload.as_mut() {
            crate::payload::bound(p);
        }
        by_run.entry(a.analysis_run_id).or_default().push(a);
    }
    Ok(runs
        .into_iter()
        .map(|r| {
            let analyses = by_run.remove(&r.id).unwrap_or_default();
            r.with_analyses(analyses)
        })
        .collect())
}

/// One run of an owned media, with its analyses; `None` when the run does not exist, belongs to
/// another media, or the media is not the caller's.
pub async fn find_run(
    db: &sqlx::PgPool,
    media_id: Uuid,
    run_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Run>, sqlx::Error> {
    let mut tx = snapshot(db).await?;
    let row = sqlx::query_as!(
        RunRow,
        r#"SELECT r.id, r.media_id, r.run_number, r.status AS "status: RunStatus", r.total_models, r.completed_count,
                  r.failed_count, r.error_message, r.created_at, r.updated_at, r.completed_at
           FROM analysis_runs r JOIN media m ON m.id = r.media_id
           WHERE r.id = $1 AND r.media_id = $2 AND m.user_id = $3"#,
        run_id,
        media_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(attach_analyses(&mut tx, vec![row]).await?.pop())
}

/// The workflow handle of one run of an owned media.
pub async fn find_run_handle(
    db: impl PgExecutor<'_>,
    media_id: Uuid,
    run_id: Uuid,
    user_id: Uuid,
) -> Result<Option<RunHandle>, sqlx::Error> {
    sqlx::query_as!(
        RunHandle,
        r#"SELECT r.id, r.run_number, r.status AS "status: RunStatus", r.workflow_id
           FROM analysis_runs r JOIN media m ON m.id = r.media_id
           WHERE r.id = $1 AND r.media_id = $2 AND m.user_id = $3"#,
        run_id,
        media_id,
        user_id
    )
    .fetch_optional(db)
    .await
}

/// Runs of a media that are still QUEUED, PROCESSING or PARTIALLY_ANALYZED.
pub async fn active_runs(db: impl PgExecutor<'_>, media_id: Uuid) -> Result<Vec<RunHandle>, sqlx::Error> {
    sqlx::query_as!(
        RunHandle,
        r#"SELECT id, run_number, status AS "status: RunStatus", workflow_id
           FROM analysis_runs
           WHERE media_id = $1 AND status IN ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED')
           ORDER BY run_number"#,
        media_id
    )
    .fetch_all(db)
    .await
}

/// Sets (or clears, with `None`) the description of an owned media; `None` when not found.
pub async fn update_description(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    description: Option<&str>,
) -> Result<Option<Media>, sqlx::Error> {
    let row = sqlx::query_as!(
        MediaRow,
        r#"UPDATE media SET description = $3 WHERE id = $1 AND user_id = $2
           RETURNING id, filename, url, storage_key, mimetype, size, description, status AS "status: RunStatus",
                     media_type AS "media_type: MediaType", has_audio, metadata, user_id, created_at, updated_at,
                     latest_analysis_run_id"#,
        id,
        user_id,
        description
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Media::from))
}

/// Deletes an owned media (its runs and analyses cascade); returns its storage key.
pub async fn delete_owned(db: &sqlx::PgPool, id: Uuid, user_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // The cascade locks the media and then its runs, the reverse of a worker's run write.
    lock_runs(&mut tx, id, user_id).await?;
    let key =
        sqlx::query_scalar!("DELETE FROM media WHERE id = $1 AND user_id = $2 RETURNING storage_key", id, user_id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(key)
}

/// The stored MIME of the media kept under `storage_key`, if any.
pub async fn mimetype_by_storage_key(
    db: impl PgExecutor<'_>,
    storage_key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT mimetype FROM media WHERE storage_key = $1", storage_key).fetch_optional(db).await
}
