//! The runbook (`docs/operations.md`), command by command, with the real `temporal` CLI against a
//! dev server, a real worker and the ML stand-in; after each operation the database is checked.

mod support;

use std::process::Command;
use std::time::Duration;

use drishtiksha_common::RunStatus;
use drishtiksha_common::events::EventPublisher;
use drishtiksha_common::reconcile::Reconciler;
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_testkit::{eventually, temporal_cli};
use serde_json::Value;
use support::{Kind, Pipeline, standin_config};

/// Runs `temporal <args> --address … --namespace default`; returns stdout.
fn cli(p: &Pipeline, args: &[&str]) -> String {
    let out = Command::new(temporal_cli())
        .args(args)
        .args(["--address", &p.temporal_address, "--namespace", "default"])
        .output()
        .expect("temporal CLI runs");
    assert!(out.status.success(), "temporal {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn pipeline() -> Pipeline {
    let mut p = Pipeline::new(Some(standin_config())).await;
    p.start_worker().await;
    p
}

fn reconciler(p: &Pipeline) -> Reconciler {
    let events = EventPublisher::new(RedisHandle::new(&p.redis.url()).expect("redis url"), "media-progress-events");
    let mut r = Reconciler::new(p.pool.clone(), p.client().clone(), events);
    r.stale_after = Duration::ZERO;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_describe_and_query_show_a_run_as_the_runbook_says() {
    let p = pipeline().await;
    let run = p.analyse(Kind::Image, "").await;
    p.finished_run(run.run_id).await;

    // Lists by user and by media (visibility is eventually consistent).
    for query in [format!("UserId = '{}'", run.user_id), format!("MediaId = '{}'", run.media_id)] {
        eventually(Duration::from_secs(20), || async {
            cli(&p, &["workflow", "list", "--query", &query]).contains(&run.workflow_id).then_some(())
        })
        .await
        .expect("listed");
    }
    // What an operator sees (shown with `-- --nocapture`, and by `make bench`).
    println!("$ temporal workflow describe --workflow-id {}", run.workflow_id);
    println!("{}", cli(&p, &["workflow", "describe", "--workflow-id", &run.workflow_id]));
    println!("$ temporal workflow query --workflow-id {} --type progress", run.workflow_id);
    println!("{}", cli(&p, &["workflow", "query", "--workflow-id", &run.workflow_id, "--type", "progress"]));
    let describe = cli(&p, &["workflow", "describe", "--workflow-id", &run.workflow_id, "--output", "json"]);
    let v: Value = serde_json::from_str(&describe).expect("describe JSON");
    let text = v.to_string();
    assert!(text.contains("WORKFLOW_EXECUTION_STATUS_COMPLETED"), "{text}");
    assert!(text.contains("MediaAnalysisWorkflow"));
    assert!(text.contains(&run.media_id.to_string()), "search attributes carry the media id");

    let progress = cli(&p, &["workflow", "query", "--workflow-id", &run.workflow_id, "--type", "progress"]);
    assert!(progress.contains("CROSS-EFFICIENT-VIT-IMG") && progress.contains("COMPLETED"), "{progress}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_cancel_finalizes_the_run_cancelled() {
    let p = pipeline().await;
    let run = p.analyse(Kind::Image, "STANDIN:hang").await;
    eventually(Duration::from_secs(30), || async {
        let out = cli(&p, &["workflow", "query", "--workflow-id", &run.workflow_id, "--type", "progress"]);
        out.contains("RUNNING").then_some(())
    })
    .await
    .expect("model running");
    cli(&p, &["workflow", "cancel", "--workflow-id", &run.workflow_id]);
    let row = p.finished_run(run.run_id).await;
    assert_eq!(row.status, RunStatus::Cancelled);
    assert_eq!(row.error_message.as_deref(), Some("Analysis cancelled"));
    let analyses = p.analyses(run.run_id).await;
    assert!(analyses.iter().all(|a| a.status == drishtiksha_common::AnalysisStatus::Cancelled));
    assert_eq!(p.media_row(run.media_id).await.status, RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_terminate_is_reconciled_with_the_terminated_message() {
    let p = pipeline().await;
    let run = p.analyse(Kind::Image, "STANDIN:hang").await;
    eventually(Duration::from_secs(30), || async {
        (p.run_row(run.run_id).await.status == RunStatus::Processing).then_some(())
    })
    .await
    .expect("run processing");
    cli(&p, &["workflow", "terminate", "--workflow-id", &run.workflow_id, "--reason", "operator"]);
    let report = reconciler(&p).run_pass().await.expect("pass");
    assert_eq!(report.finalized, 1);
    let row = p.run_row(run.run_id).await;
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("Analysis workflow was terminated"));
    let analyses = p.analyses(run.run_id).await;
    assert_eq!(analyses.len(), 1);
    assert_eq!(analyses[0].error_message.as_deref(), Some("Analysis workflow was terminated"));
    assert_eq!(p.media_row(run.media_id).await.status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_a_finished_run_re_executes_it_without_duplicates_or_changes() {
    let p = pipeline().await;
    let run = p.analyse(Kind::VideoWithAudio, "").await;
    let before = p.finished_run(run.run_id).await;
    let rows_before = p.analyses(run.run_id).await;
    let out = cli(
        &p,
        &["workflow", "reset", "--workflow-id", &run.workflow_id, "--type", "FirstWorkflowTask", "--reason", "replay"],
    );
    assert!(!out.is_empty());
    // The reset execution runs to completion again.
    eventually(Duration::from_secs(60), || async {
        let d = cli(&p, &["workflow", "describe", "--workflow-id", &run.workflow_id, "--output", "json"]);
        d.contains("WORKFLOW_EXECUTION_STATUS_COMPLETED").then_some(())
    })
    .await
    .expect("reset run completes");
    let after = p.run_row(run.run_id).await;
    assert_eq!(after.status, before.status);
    assert_eq!((after.completed_count, after.failed_count), (before.completed_count, before.failed_count));
    // The re-executed workflow reports the run as the database has it.
    let result = p
        .client()
        .get_workflow_handle::<drishtiksha_workflows::MediaAnalysisWorkflow>(run.workflow_id.as_str())
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await
        .expect("the reset run's result");
    assert_eq!(result.status, before.status);
    assert_eq!(result.total_models, before.total_models);
    assert_eq!(
        (result.completed_count, result.failed_count),
        (i64::from(before.completed_count), i64::from(before.failed_count))
    );
    let rows_after = p.analyses(run.run_id).await;
    assert_eq!(rows_after.len(), rows_before.len(), "no duplicate rows");
    for (a, b) in rows_after.iter().zip(&rows_before) {
        assert_eq!((&a.model_name, a.status, &a.result_payload), (&b.model_name, b.status, &b.result_payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_while_the_ml_server_was_down_is_retried_by_a_new_run() {
    let mut p = Pipeline::new(None).await;
    p.start_worker().await;
    let failed = p.analyse(Kind::Image, "").await;
    let row = p.finished_run(failed.run_id).await;
    assert_eq!(row.status, RunStatus::Failed);
    assert!(row.error_message.as_deref().is_some_and(|m| m.starts_with("Model discovery failed")), "{row:?}");

    // The ML server comes back where the worker expects it; a new run (what the REST re-run
    // creates) is analysed; the failed run stays as it was.
    let addr: std::net::SocketAddr = p.ml_url.trim_start_matches("http://").parse().expect("addr");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the ML port");
    tokio::spawn(drishtiksha_standin::serve_with_shutdown(standin_config(), listener, std::future::pending()));
    let retry = p.analyse(Kind::Image, "").await;
    assert_eq!(p.finished_run(retry.run_id).await.status, RunStatus::Analyzed);
    assert_eq!(p.run_row(failed.run_id).await.status, RunStatus::Failed);
}
