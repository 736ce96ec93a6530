//! The run state transitions of `db::runs` against a real database: idempotent steps, counts and
//! statuses kept in one transaction, terminal runs that never move.

use drishtiksha_common::db::runs::{self, AttemptStart, Finalization, ModelResult};
use drishtiksha_common::{AnalysisStatus, RunStatus, workflow};
use drishtiksha_testkit::fresh_database;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

struct Run {
    media_id: Uuid,
    run_id: Uuid,
}

async fn new_run(pool: &PgPool, media_id: Option<Uuid>, run_number: i32) -> Run {
    let media_id = match media_id {
        Some(id) => id,
        None => {
            let user_id = Uuid::new_v4();
            let media_id = Uuid::new_v4();
            sqlx::query!(
                "INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, $2, 'A', 'B', 'x')",
                user_id,
                format!("{}@example.com", user_id.simple())
            )
            .execute(pool)
            .await
            .expect("user");
            sqlx::query!(
                r#"INSERT INTO media (id, user_id, filename, storage_key, mimetype, size, media_type)
                   VALUES ($1, $2, 'a.png', $3, 'image/png', 1, 'IMAGE')"#,
                media_id,
                user_id,
                format!("images/{media_id}.png")
            )
            .execute(pool)
            .await
            .expect("media");
            media_id
        }
    };
    let run_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO analysis_runs (id, media_id, run_number, workflow_id) VALUES ($1, $2, $3, $4)",
        run_id,
        media_id,
        run_number,
        workflow::workflow_id(media_id, run_number)
    )
    .execute(pool)
    .await
    .expect("run");
    Run { media_id, run_id }
}

fn result(prediction: &str) -> ModelResult {
    ModelResult {
        model_used: None,
        prediction: prediction.to_string(),
        confidence: 0.75,
        processing_time: Some(0.5),
        media_type: Some("image".to_string()),
        payload: json!({"prediction": prediction, "confidence": 0.75}),
    }
}

async fn statuses(pool: &PgPool, run: &Run) -> (RunStatus, RunStatus, i32, i32) {
    let r = sqlx::query!(
        r#"SELECT r.status AS "run: RunStatus", m.status AS "media: RunStatus", r.completed_count, r.failed_count
           FROM analysis_runs r JOIN media m ON m.id = r.media_id WHERE r.id = $1"#,
        run.run_id
    )
    .fetch_one(pool)
    .await
    .expect("statuses");
    (r.run, r.media, r.completed_count, r.failed_count)
}

fn models(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn starting_a_run_twice_creates_each_model_row_once() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    runs::start(&pool, run.run_id, &models(&["A", "B"])).await.expect("start").expect("open run");
    runs::start(&pool, run.run_id, &models(&["A", "B"])).await.expect("start again").expect("open run");

    let n =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM deepfake_analyses WHERE analysis_run_id = $1"#, run.run_id)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(n, 2);
    assert_eq!(statuses(&pool, &run).await, (RunStatus::Processing, RunStatus::Processing, 0, 0));
}

#[tokio::test]
async fn the_first_completed_model_makes_the_run_partially_analyzed_and_counts_follow_the_rows() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    runs::start(&pool, run.run_id, &models(&["A", "B", "C"])).await.expect("start");
    assert!(matches!(
        runs::begin_attempt(&pool, run.run_id, "A", 1).await.expect("attempt"),
        AttemptStart::Running { .. }
    ));
    let id = runs::complete_model(&pool, run.run_id, "A", 1, &result("FAKE")).await.expect("complete");
    assert_eq!(statuses(&pool, &run).await, (RunStatus::PartiallyAnalyzed, RunStatus::PartiallyAnalyzed, 1, 0));

    // A retry of the same step updates the same row.
    let again = runs::complete_model(&pool, run.run_id, "A", 2, &result("FAKE")).await.expect("complete again");
    assert_eq!(id, again);
    assert!(matches!(
        runs::begin_attempt(&pool, run.run_id, "A", 3).await.expect("attempt"),
        AttemptStart::AlreadyCompleted { .. }
    ));

    runs::begin_attempt(&pool, run.run_id, "B", 1).await.expect("attempt");
    assert!(runs::await_retry(&pool, run.run_id, "B").await.expect("retry"));
    let failed = runs::fail_model(&pool, run.run_id, "B", "boom", None).await.expect("fail").expect("row failed");
    assert_eq!(failed.attempts, 1);
    assert_eq!(runs::fail_model(&pool, run.run_id, "B", "boom", None).await.expect("fail again"), None);
    assert_eq!(statuses(&pool, &run).await, (RunStatus::PartiallyAnalyzed, RunStatus::PartiallyAnalyzed, 1, 1));
}

#[tokio::test]
async fn a_run_whose_first_completed_model_is_its_last_goes_from_processing_to_analyzed() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    runs::start(&pool, run.run_id, &models(&["A"])).await.expect("start");
    runs::begin_attempt(&pool, run.run_id, "A", 1).await.expect("attempt");
    runs::complete_model(&pool, run.run_id, "A", 1, &result("REAL")).await.expect("complete");
    assert_eq!(statuses(&pool, &run).await, (RunStatus::Processing, RunStatus::Processing, 1, 0));
    runs::finalize(&pool, run.run_id, Finalization::Finish { error: None }).await.expect("finalize");
    assert_eq!(statuses(&pool, &run).await.0, RunStatus::Analyzed);
}

#[tokio::test]
async fn finalizing_applies_the_usual_rule_once_and_a_terminal_run_never_moves() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    runs::start(&pool, run.run_id, &models(&["A", "B"])).await.expect("start");
    runs::complete_model(&pool, run.run_id, "A", 1, &result("REAL")).await.expect("complete");

    let f = runs::finalize(&pool, run.run_id, Finalization::Finish { error: Some("gave up".to_string()) })
        .await
        .expect("finalize")
        .expect("finalized");
    assert_eq!((f.status, f.total_models, f.completed, f.failed, f.pending), (RunStatus::Analyzed, 2, 1, 1, 0));
    assert_eq!(f.error_message.as_deref(), Some("gave up"));
    let row = sqlx::query!(
        r#"SELECT status AS "status: AnalysisStatus", error_message, result_payload FROM deepfake_analyses
           WHERE analysis_run_id = $1 AND model_name = 'B'"#,
        run.run_id
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(row.status, AnalysisStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("gave up"));
    assert_eq!(row.result_payload, Some(json!({"error": "gave up", "attempts": 0, "retryCount": 0})));

    assert_eq!(runs::finalize(&pool, run.run_id, Finalization::Cancel).await.expect("again"), None);
    assert_eq!(runs::complete_model(&pool, run.run_id, "B", 2, &result("FAKE")).await.expect("late result"), None);
    assert_eq!(runs::begin_attempt(&pool, run.run_id, "B", 2).await.expect("late attempt"), AttemptStart::Closed);
    assert_eq!(statuses(&pool, &run).await, (RunStatus::Analyzed, RunStatus::Analyzed, 1, 1));
}

#[tokio::test]
async fn cancelling_keeps_finished_rows_and_cancels_the_unfinished_ones() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    runs::start(&pool, run.run_id, &models(&["A", "B"])).await.expect("start");
    runs::complete_model(&pool, run.run_id, "A", 1, &result("REAL")).await.expect("complete");
    runs::begin_attempt(&pool, run.run_id, "B", 1).await.expect("attempt");

    let f = runs::finalize(&pool, run.run_id, Finalization::Cancel).await.expect("cancel").expect("finalized");
    assert_eq!((f.status, f.completed, f.failed, f.pending), (RunStatus::Cancelled, 1, 0, 1));
    assert_eq!(f.error_message.as_deref(), Some("Analysis cancelled"));
    let rows = sqlx::query!(
        r#"SELECT model_name, status AS "status: AnalysisStatus", error_message FROM deepfake_analyses
           WHERE analysis_run_id = $1 ORDER BY model_name"#,
        run.run_id
    )
    .fetch_all(&pool)
    .await
    .expect("rows");
    assert_eq!(rows[0].status, AnalysisStatus::Completed);
    assert_eq!(rows[1].status, AnalysisStatus::Cancelled);
    assert_eq!(rows[1].error_message.as_deref(), Some("Analysis cancelled"));
    assert_eq!(statuses(&pool, &run).await.1, RunStatus::Cancelled);
}

#[tokio::test]
async fn an_older_run_does_not_overwrite_the_status_of_its_media() {
    let (_, pool) = fresh_database().await.expect("db");
    let old = new_run(&pool, None, 1).await;
    runs::finalize(&pool, old.run_id, Finalization::Finish { error: None }).await.expect("finalize");
    let new = new_run(&pool, Some(old.media_id), 2).await;
    runs::start(&pool, new.run_id, &models(&["A"])).await.expect("start");

    // A late write on the old run is refused (terminal); the media follows the newest run.
    assert_eq!(runs::finalize(&pool, old.run_id, Finalization::Cancel).await.expect("late"), None);
    let media = sqlx::query!(
        r#"SELECT status AS "status: RunStatus", latest_analysis_run_id FROM media WHERE id = $1"#,
        old.media_id
    )
    .fetch_one(&pool)
    .await
    .expect("media");
    assert_eq!(media.status, RunStatus::Processing);
    assert_eq!(media.latest_analysis_run_id, Some(new.run_id));
}

#[tokio::test]
async fn steps_of_a_deleted_run_write_nothing() {
    let (_, pool) = fresh_database().await.expect("db");
    let run = new_run(&pool, None, 1).await;
    sqlx::query!("DELETE FROM media WHERE id = $1", run.media_id).execute(&pool).await.expect("delete");

    assert_eq!(runs::context(&pool, run.run_id).await.expect("context"), None);
    assert_eq!(runs::start(&pool, run.run_id, &models(&["A"])).await.expect("start"), None);
    assert_eq!(runs::complete_model(&pool, run.run_id, "A", 1, &result("FAKE")).await.expect("complete"), None);
    assert_eq!(runs::finalize(&pool, run.run_id, Finalization::Cancel).await.expect("finalize"), None);
}
