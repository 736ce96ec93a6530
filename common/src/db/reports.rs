//! Lookups of the PDF report (`docs/contract.md` §4.5): which media an owned run belongs to.

use sqlx::PgExecutor;
use uuid::Uuid;

/// The media id of a run whose media belongs to `user_id`; `None` when the run is missing or the
/// media is another user's (the two are indistinguishable to the caller).
pub async fn owned_run_media_id(
    db: impl PgExecutor<'_>,
    run_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT r.media_id FROM analysis_runs r JOIN media m ON m.id = r.media_id WHERE r.id = $1 AND m.user_id = $2",
        run_id,
        user_id
    )
    .fetch_optional(db)
    .await
}
