//! Repairs behind `fix-statuses`: recomputation from the analysis rows. They never move a run out
//! of a terminal status.

use sqlx::PgPool;
use uuid::Uuid;

/// Recomputes a terminal run's counts and status from its rows (CANCELLED stays CANCELLED;
/// otherwise ANALYZED iff any row completed) and mirrors the status on its media when it is the
/// latest run. False when the run is missing or not terminal.
pub async fn recompute_terminal(db: &PgPool, run_id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let updated = sqlx::query!(
        r#"UPDATE analysis_runs r
           SET completed_count = c.completed, failed_count = c.failed,
               status = CASE WHEN r.status = 'CANCELLED' THEN r.status
                             WHEN c.completed > 0 THEN 'ANALYZED'::run_status
                             ELSE 'FAILED'::run_status END,
               completed_at = COALESCE(r.completed_at, now())
           FROM (SELECT count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed,
                        count(*) FILTER (WHERE status = 'FAILED')::int AS failed
                 FROM deepfake_analyses WHERE analysis_run_id = $1) c
           WHERE r.id = $1 AND r.status IN ('ANALYZED', 'FAILED', 'CANCELLED')
           RETURNING r.media_id"#,
        run_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = updated else { return Ok(false) };
    sync_media_status_in(&mut tx, row.media_id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Sets a media's status to its latest run's. False when nothing needed changing.
pub async fn sync_media_status(db: &PgPool, media_id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let changed = sync_media_status_in(&mut tx, media_id).await?;
    tx.commit().await?;
    Ok(changed)
}

async fn sync_media_status_in(tx: &mut sqlx::PgConnection, media_id: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        r#"UPDATE media m SET status = r.status, latest_analysis_run_id = r.id
           FROM (SELECT id, status FROM analysis_runs WHERE media_id = $1 ORDER BY run_number DESC LIMIT 1) r
           WHERE m.id = $1 AND (m.status <> r.status OR m.latest_analysis_run_id IS DISTINCT FROM r.id)"#,
        media_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(result.rows_affected() > 0)
}
