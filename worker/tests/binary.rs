//! The `worker` binary as an operator runs it: configuration errors, a real run, SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use drishtiksha_common::RunStatus;
use drishtiksha_testkit::eventually;
use support::{Kind, Pipeline, standin_config};

/// Ends the child process if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_worker_exits_with_status_2_naming_the_variable_when_configuration_is_missing() {
    let dir = std::env::temp_dir();
    let output =
        Command::new(env!("CARGO_BIN_EXE_worker")).env_clear().current_dir(&dir).output().expect("worker runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_analyses_a_run_and_stops_gracefully_on_sigterm() {
    let p = Pipeline::new(Some(standin_config())).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command.env_clear().current_dir(std::env::temp_dir()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in p.worker_env() {
        command.env(k, v);
    }
    let mut child = KillOnDrop(command.spawn().expect("worker starts"));

    let run = p.analyse(Kind::Image, "").await;
    assert_eq!(p.finished_run(run.run_id).await.status, RunStatus::Analyzed);

    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let exit = eventually(Duration::from_secs(20), || {
        let polled = child.0.try_wait().expect("worker status");
        async move { polled }
    })
    .await
    .expect("the worker exits after SIGTERM");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_reconciles_terminated_runs_and_serves_metrics() {
    let p = Pipeline::new(Some(standin_config())).await;
    let metrics_port = drishtiksha_testkit::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command.env_clear().current_dir(std::env::temp_dir()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in p.worker_env() {
        command.env(k, v);
    }
    command.env("RECONCILE_INTERVAL", "1").env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"));
    let _child = KillOnDrop(command.spawn().expect("worker starts"));

    let done = p.analyse(Kind::Image, "").await;
    assert_eq!(p.finished_run(done.run_id).await.status, RunStatus::Analyzed);
    let hung = p.analyse(Kind::Image, "STANDIN:hang").await;
    eventually(Duration::from_secs(30), || async {
        (p.run_row(hung.run_id).await.status == RunStatus::Processing).then_some(())
    })
    .await
    .expect("processing");
    let out = Command::new(drishtiksha_testkit::temporal_cli())
        .args(["workflow", "terminate", "--workflow-id", &hung.workflow_id, "--reason", "operator"])
        .args(["--address", &p.temporal_address])
        .output()
        .expect("cli");
    assert!(out.status.success());
    // Stale after 60 s by default: make the run look old instead of waiting.
    sqlx::query("UPDATE analysis_runs SET updated_at = now() - interval '2 minutes' WHERE id = $1")
        .bind(hung.run_id)
        .execute(&p.pool)
        .await
        .expect("age");
    let row = p.finished_run(hung.run_id).await;
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("Analysis workflow was terminated"));

    let text = eventually(Duration::from_secs(10), || async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.ok()?.text().await.ok()
    })
    .await
    .expect("metrics");
    assert!(text.contains(r#"drishtiksha_runs_finished_total{status="ANALYZED"} 1"#), "{text}");
    assert!(text.contains(r#"drishtiksha_runs_finished_total{status="FAILED"} 1"#), "{text}");
    assert!(
        text.contains(r#"drishtiksha_model_analyses_total{model="CROSS-EFFICIENT-VIT-IMG",outcome="completed"} 1"#)
    );
    assert!(text.contains("drishtiksha_ml_call_duration_seconds_bucket"));
    assert!(text.contains("temporal_"), "the SDK's worker metrics are included: {text}");
}
