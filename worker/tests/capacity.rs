//! Inference capacity against a stand-in that behaves like one GPU: model calls never exceed the
//! ML server's capacity whatever the number of workers, one user's backlog does not hold up
//! another user, and the ML server's own retries and fallbacks are not paid for twice.

mod support;

use std::time::Duration;

use drishtiksha_common::{AnalysisStatus, RunStatus};
use drishtiksha_standin::catalogue::{Catalogue, Format};
use drishtiksha_testkit::eventually;
use drishtiksha_worker::spawn_worker;
use support::{Kind, Pipeline, standin_config, standin_json, standin_with, successful_calls};
use uuid::Uuid;

const THREE_IMAGE_MODELS: &str = r#"[
  {"name": "IMG-A", "isImage": true, "profile": "image-generic", "latency_ms": 300},
  {"name": "IMG-B", "isImage": true, "profile": "image-generic", "latency_ms": 300},
  {"name": "IMG-C", "isImage": true, "profile": "image-generic", "latency_ms": 300}
]"#;

async fn capacity(p: &Pipeline) -> serde_json::Value {
    standin_json(&p.standin.as_ref().expect("stand-in").url, "/__standin/capacity").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_exceed_the_ml_servers_capacity() {
    // A GPU of two inferences that fails (out of memory) any call beyond them.
    let mut config = standin_with(&["--capacity", "2", "--over-capacity", "fail"]);
    config.catalogue = Catalogue::parse(THREE_IMAGE_MODELS, Format::Json).expect("catalogue");
    let mut p = Pipeline::new(Some(config)).await;
    p.set("ML_CAPACITY", "2");
    // One worker serves the workflows and the ML server's capacity; a second one only
    // orchestrates (one inference worker per ML server).
    p.start_worker().await;
    let mut second = p.worker_config();
    second.role = drishtiksha_common::config::WorkerRole::Orchestration;
    let second = tokio::task::spawn_blocking(move || spawn_worker(second)).await.expect("thread").expect("worker");

    let mut runs = Vec::new();
    for _ in 0..20 {
        runs.push(p.analyse(Kind::Image, "").await);
    }
    for run in &runs {
        let row = p.finished_run(run.run_id).await;
        assert_eq!(row.status, RunStatus::Analyzed);
        assert_eq!((row.completed_count, row.failed_count), (3, 0));
        for a in p.analyses(run.run_id).await {
            assert_eq!((a.status, a.attempts), (AnalysisStatus::Completed, 1));
        }
    }
    let gpu = capacity(&p).await;
    assert_eq!(gpu["peakInFlight"], 2, "the ML server ran at most its capacity, and used all of it: {gpu}");
    assert_eq!(gpu["refusedForCapacity"], 0, "no call was refused for capacity: {gpu}");
    assert_eq!(gpu["served"], 60);
    tokio::task::spawn_blocking(move || second.shutdown()).await.expect("thread").expect("second worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_backlog_does_not_hold_up_another_users_upload() {
    let mut config = standin_with(&["--capacity", "2"]);
    config.catalogue = Catalogue::parse(
        r#"[{"name": "IMG-ONLY", "isImage": true, "profile": "image-generic", "latency_ms": 1000}]"#,
        Format::Json,
    )
    .expect("catalogue");
    let mut p = Pipeline::new(Some(config)).await;
    p.set("ML_CAPACITY", "2");
    p.start_worker().await;

    // User A uploads 30 items; once they wait for the GPU, user B uploads one.
    let mut a_runs = Vec::new();
    for _ in 0..30 {
        a_runs.push(p.create_media(Kind::Image, "").await);
    }
    let user_b = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, first_name, last_name, password_hash) VALUES ($1, $2, 'Bo', 'B', 'x')")
        .bind(user_b)
        .bind(format!("{}@example.com", user_b.simple()))
        .execute(&p.pool)
        .await
        .expect("user B");
    p.user_id = user_b;
    let b_run = p.create_media(Kind::Image, "").await;
    for run in &a_runs {
        p.start(run).await;
    }
    eventually(Duration::from_secs(60), || async {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM deepfake_analyses WHERE status = 'PENDING'")
            .fetch_one(&p.pool)
            .await
            .unwrap_or(0);
        (waiting >= 20).then_some(())
    })
    .await
    .expect("A's backlog forms");
    p.start(&b_run).await;

    assert_eq!(p.finished_run(b_run.run_id).await.status, RunStatus::Analyzed);
    for run in &a_runs {
        assert_eq!(p.finished_run(run.run_id).await.status, RunStatus::Analyzed);
    }
    let finished_before_b: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM analysis_runs r JOIN media m ON m.id = r.media_id
         WHERE m.user_id <> $1 AND r.completed_at < (SELECT completed_at FROM analysis_runs WHERE id = $2)",
    )
    .bind(user_b)
    .bind(b_run.run_id)
    .fetch_one(&p.pool)
    .await
    .expect("order");
    assert!(
        finished_before_b < 10,
        "B's run finished after {finished_before_b} of A's 30 runs (bound: before A's 10th)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_answer_keeps_the_requested_models_row_and_names_the_model_used() {
    let mut p = Pipeline::new(Some(standin_config())).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Image, "STANDIN:fallback").await;
    assert_eq!(p.finished_run(run.run_id).await.status, RunStatus::Analyzed);
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT model_name, model_used, result_payload->>'note' FROM deepfake_analyses WHERE analysis_run_id = $1",
    )
    .bind(run.run_id)
    .fetch_all(&p.pool)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 1);
    let (requested, used, note) = &rows[0];
    assert_eq!(requested, "CROSS-EFFICIENT-VIT-IMG");
    let used = used.as_deref().expect("the fallback model is recorded");
    assert_ne!(used, requested);
    assert!(note.starts_with(&format!("Primary model '{requested}' failed. Used fallback model '{used}'.")), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_error_after_every_fallback_is_attempted_once() {
    let mut p = Pipeline::new(Some(standin_config())).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Image, "STANDIN:inference").await;
    let row = p.finished_run(run.run_id).await;
    assert_eq!(row.status, RunStatus::Failed);
    let analyses = p.analyses(run.run_id).await;
    assert_eq!(analyses[0].status, AnalysisStatus::Failed);
    assert_eq!(analyses[0].attempts, 1);
    assert_eq!(analyses[0].error_message.as_deref(), Some("Model inference failed and all fallbacks exhausted."));
    let standin = &p.standin.as_ref().expect("stand-in").url;
    let log = standin_json(standin, "/__standin/requests").await;
    let calls = log.as_array().expect("log").iter().filter(|e| e["mediaId"] == run.media_id.to_string()).count();
    assert_eq!(calls, 1, "the server's fallback chain is not run again");
    assert!(successful_calls(standin, run.media_id).await.is_empty());
}
