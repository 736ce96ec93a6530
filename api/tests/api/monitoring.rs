//! Monitoring (§4.4): the ML server's status through the shared cache with every failure row,
//! health history, the queue from Temporal visibility, and the reconciler-backed maintenance
//! endpoints (§6.5) against a real Temporal dev server.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::{Temporal, TestApp, assert_error, body, unique_email};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use drishtiksha_testkit::{free_port, temporal_cli};
use serde_json::{Value, json};
use uuid::Uuid;

const ML_KEY: &str = "monitoring-test-key";

async fn standin() -> SocketAddr {
    let mut config = drishtiksha_standin::Config::new(ML_KEY);
    config.latency_scale = 0.0;
    drishtiksha_standin::spawn_local(config).await.expect("stand-in")
}

/// A stand-in for ML servers that misbehave in one particular way.
async fn broken_ml(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn app_with_ml(server_url: String, key: &str) -> TestApp {
    TestApp::builder()
        .env("SERVER_URL", server_url)
        .env("SERVER_API_KEY", key)
        .env("ML_STATS_TIMEOUT", "1")
        .spawn()
        .await
}

async fn health_rows(app: &TestApp) -> Vec<(String, Value)> {
    sqlx::query_as("SELECT status, stats_payload FROM server_health ORDER BY checked_at")
        .fetch_all(&app.db)
        .await
        .expect("rows")
}

#[tokio::test]
async fn server_status_passes_stats_through_and_serves_repeats_from_the_cache() {
    let ml = standin().await;
    let app = app_with_ml(format!("http://{ml}"), ML_KEY).await;
    let (_, token) = app.signup(&unique_email(), "correct-horse").await;
    let (status, v) = body(app.get_auth("/api/v1/monitoring/server-status", &token).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"], "Server status retrieved successfully");
    assert_eq!(v["data"]["service_name"], "Drishtiksha ML stand-in (simulated results)");
    assert_eq!(v["data"]["status"], "running");
    let models = v["data"]["models_info"].as_array().expect("models_info");
    assert!(!models.is_empty());
    // The original frontend's in-progress card reads the snake_case flags.
    for m in models {
        for (camel, snake) in [("isVideo", "is_video"), ("isAudio", "is_audio"), ("isImage", "is_image")] {
            assert!(m[camel].is_boolean(), "{m}");
            assert_eq!(m[snake], m[camel], "{m}");
        }
    }
    assert!(models.iter().any(|m| m["is_video"] == true) && models.iter().any(|m| m["is_audio"] == true));
    assert!(v["data"]["responseTimeMs"].is_i64());
    assert!(v["data"]["cachedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let (_, again) = body(app.get_auth("/api/v1/monitoring/server-status", &token).await).await;
    assert_eq!(again["data"]["cachedAt"], v["data"]["cachedAt"]);
    let rows = health_rows(&app).await;
    assert_eq!(rows.len(), 1, "one ML call, one health row");
    assert_eq!(rows[0].0, "HEALTHY");

    let (status, v) = body(app.get_auth("/api/v1/monitoring/server-history?limit=10", &token).await).await;
    assert_eq!(status, 200);
    assert_eq!(v["message"], "Server health history retrieved successfully");
    let row = &v["data"][0];
    assert_eq!(row["status"], "HEALTHY");
    assert!(row["responseTimeMs"].is_i64() && row["checkedAt"].is_string() && row["id"].is_string());
    assert_eq!(row["statsPayload"]["service_name"], "Drishtiksha ML stand-in (simulated results)");
    for bad in ["0", "501", "abc", "1.5"] {
        let (status, v) =
            body(app.get_auth(&format!("/api/v1/monitoring/server-history?limit={bad}"), &token).await).await;
        assert_eq!(status, 400);
        assert_eq!(v["errors"], json!(["limit must be an integer between 1 and 500"]));
    }
}

async fn assert_failure_row(app: TestApp, expected_status: u16, message: &str) {
    let (_, token) = app.signup(&unique_email(), "correct-horse").await;
    let (status, v) = body(app.get_auth("/api/v1/monitoring/server-status", &token).await).await;
    assert_eq!(status, expected_status, "{v}");
    assert_error(&v, expected_status, message, &[]);
    // Failures are not cached: a second call asks the ML server again.
    let _ = app.get_auth("/api/v1/monitoring/server-status", &token).await;
    let rows = health_rows(&app).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "UNHEALTHY");
    assert_eq!(rows[0].1["status"], "UNHEALTHY");
    assert_eq!(rows[0].1["errorMessage"], message);
    assert!(rows[0].1["responseTimeMs"].is_i64());
}

#[tokio::test]
async fn server_status_when_the_ml_server_refuses_connections_is_503() {
    let app = app_with_ml(format!("http://127.0.0.1:{}", free_port()), ML_KEY).await;
    assert_failure_row(app, 503, "Model analysis service is unavailable.").await;
}

#[tokio::test]
async fn server_status_when_the_ml_server_does_not_answer_in_time_is_504() {
    let ml = broken_ml(Router::new().route(
        "/stats",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    ))
    .await;
    let app = app_with_ml(format!("http://{ml}"), ML_KEY).await;
    assert_failure_row(app, 504, "Request to model analysis service timed out.").await;
}

#[tokio::test]
async fn server_status_when_the_ml_server_rejects_the_key_is_502() {
    let ml = standin().await;
    let app = app_with_ml(format!("http://{ml}"), "the-wrong-key").await;
    assert_failure_row(app, 502, "Model analysis service rejected the backend's credentials.").await;
}

#[tokio::test]
async fn server_status_when_the_ml_server_is_503_is_503() {
    let ml = broken_ml(Router::new().route(
        "/stats",
        get(|| async {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"detail": "ModelManager is not available."})))
        }),
    ))
    .await;
    let app = app_with_ml(format!("http://{ml}"), ML_KEY).await;
    assert_failure_row(app, 503, "Model analysis service is unavailable.").await;
}

#[tokio::test]
async fn server_status_when_the_ml_server_answers_garbage_is_502() {
    let ml = broken_ml(Router::new().route("/stats", get(|| async { axum::Json(json!([1, 2, 3])) }))).await;
    let app = app_with_ml(format!("http://{ml}"), ML_KEY).await;
    assert_failure_row(app, 502, "Model analysis service returned an invalid response.").await;
}

#[tokio::test]
async fn server_status_when_the_ml_server_errors_is_502() {
    let ml =
        broken_ml(Router::new().route("/stats", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))).await;
    let app = app_with_ml(format!("http://{ml}"), ML_KEY).await;
    assert_failure_row(app, 502, "Model analysis service returned an error.").await;
}

// ---- Temporal-backed: queue status and the reconciler ----------------------------------------

struct Ops {
    app: TestApp,
    temporal_address: String,
    task_queue: String,
    admin_token: String,
    user_id: String,
}

async fn ops() -> Ops {
    let app = TestApp::builder().temporal(Temporal::Dev).spawn().await;
    let temporal_address = app.temporal.as_ref().expect("dev server").address();
    let task_queue = app.task_queue().to_string();
    let email = unique_email();
    let (user_id, admin_token) = app.signup(&email, "correct-horse").await;
    sqlx::query("UPDATE users SET role = 'ADMIN' WHERE email = $1").bind(&email).execute(&app.db).await.expect("admin");
    Ops { app, temporal_address, task_queue, admin_token, user_id }
}

impl Ops {
    fn cli(&self, args: &[&str]) {
        let out = Command::new(temporal_cli())
            .args(args)
            .args(["--address", &self.temporal_address, "--namespace", "default"])
            .output()
            .expect("temporal cli");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A MediaAnalysisWorkflow execution with no worker polling its queue: it stays Running.
    fn start_workflow(&self, workflow_id: &str) {
        self.cli(&[
            "workflow",
            "start",
            "--type",
            "MediaAnalysisWorkflow",
            "--task-queue",
            &self.task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            "{}",
        ]);
    }

    /// A media with one run in `status`, last updated `minutes_ago`; returns (media, run, workflow id).
    async fn run_row(&self, status: &str, minutes_ago: i32) -> (Uuid, Uuid, String) {
        let media = Uuid::new_v4();
        let run = Uuid::new_v4();
        let wf = format!("media-{media}-run-1");
        sqlx::query(
            "INSERT INTO media (id, user_id, filename, storage_key, mimetype, size, media_type, status, latest_analysis_run_id)
             VALUES ($1, $2::uuid, 'clip.mp4', $3, 'video/mp4', 10, 'VIDEO', $4::run_status, $5)",
        )
        .bind(media)
        .bind(&self.user_id)
        .bind(format!("videos/{media}.mp4"))
        .bind(status)
        .bind(run)
        .execute(&self.app.db)
        .await
        .expect("media");
        sqlx::query(
            "INSERT INTO analysis_runs (id, media_id, run_number, status, workflow_id, total_models, created_at)
             VALUES ($1, $2, 1, $3::run_status, $4, 2, now() - make_interval(mins => $5))",
        )
        .bind(run)
        .bind(media)
        .bind(status)
        .bind(&wf)
        .bind(minutes_ago)
        .execute(&self.app.db)
        .await
        .expect("run");
        for (model, st) in [("A", "COMPLETED"), ("B", "RUNNING")] {
            sqlx::query(
                "INSERT INTO deepfake_analyses (id, analysis_run_id, model_name, status, prediction, confidence)
                 VALUES ($1, $2, $3, $4::analysis_status, CASE WHEN $4 = 'COMPLETED' THEN 'FAKE' ELSE 'N/A' END, 0.9)",
            )
            .bind(Uuid::new_v4())
            .bind(run)
            .bind(model)
            .bind(st)
            .execute(&self.app.db)
            .await
            .expect("analysis");
        }
        sqlx::query("UPDATE analysis_runs SET updated_at = now() - make_interval(mins => $2) WHERE id = $1")
            .bind(run)
            .bind(minutes_ago)
            .execute(&self.app.db)
            .await
            .expect("age");
        (media, run, wf)
    }

    async fn run_state(&self, run: Uuid) -> (String, Option<String>, Vec<(String, String, Option<String>)>) {
        let (status, error): (String, Option<String>) =
            sqlx::query_as("SELECT status::text, error_message FROM analysis_runs WHERE id = $1")
                .bind(run)
                .fetch_one(&self.app.db)
                .await
                .expect("run");
        let rows = sqlx::query_as(
            "SELECT model_name, status::text, error_message FROM deepfake_analyses WHERE analysis_run_id = $1 ORDER BY model_name",
        )
        .bind(run)
        .fetch_all(&self.app.db)
        .await
        .expect("rows");
        (status, error, rows)
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        body(self.app.http.post(self.app.url(path)).bearer_auth(&self.admin_token).send().await.expect("req")).await
    }
}

#[tokio::test]
async fn queue_status_counts_open_and_closed_executions_from_visibility() {
    let ops = ops().await;
    let (_, _, queued_wf) = ops.run_row("QUEUED", 0).await;
    ops.start_workflow(&queued_wf);
    ops.start_workflow("media-other-run-1");
    ops.start_workflow("media-terminated-run-1");
    ops.cli(&["workflow", "terminate", "--workflow-id", "media-terminated-run-1", "--reason", "test"]);
    let v = drishtiksha_testkit::eventually(Duration::from_secs(20), || async {
        let (_, v) = body(ops.app.get_auth("/api/v1/monitoring/queue-status", &ops.admin_token).await).await;
        (v["data"]["failed"] == 1 && v["data"]["active"] == 1).then_some(v)
    })
    .await
    .expect("visibility caught up");
    assert_eq!(v["message"], "Processing queue status retrieved successfully.");
    assert_eq!(
        v["data"],
        json!({"pending": 1, "active": 1, "completed": 0, "failed": 1, "delayed": 0, "inferenceBacklog": 0})
    );
}

#[tokio::test]
async fn maintenance_endpoints_are_for_admins_only() {
    let ops = ops().await;
    let (_, user_token) = ops.app.signup(&unique_email(), "correct-horse").await;
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/monitoring/check-stuck-runs"),
        (reqwest::Method::GET, "/api/v1/monitoring/verify-statuses"),
        (reqwest::Method::POST, "/api/v1/monitoring/fix-statuses"),
    ] {
        let r = ops.app.http.request(method, ops.app.url(path)).bearer_auth(&user_token).send().await.expect("req");
        let (status, v) = body(r).await;
        assert_eq!(status, 403);
        assert_error(&v, 403, "Forbidden: administrator role required.", &[]);
    }
}

#[tokio::test]
async fn the_reconciler_finalizes_runs_per_the_workflow_it_finds() {
    let ops = ops().await;
    // Never started (the api died between the insert and the start), 3 minutes old.
    let (_, never_started, _) = ops.run_row("QUEUED", 3).await;
    // Too young to be judged missing.
    let (_, young, _) = ops.run_row("QUEUED", 0).await;
    // Terminated, cancelled and still running workflows.
    let (_, terminated, terminated_wf) = ops.run_row("PARTIALLY_ANALYZED", 2).await;
    ops.start_workflow(&terminated_wf);
    ops.cli(&["workflow", "terminate", "--workflow-id", &terminated_wf, "--reason", "operator"]);
    // A cancel request that no worker has acted on leaves the workflow Running: not the
    // reconciler's business (the Canceled row needs a worker; see the pipeline tests).
    let (_, cancel_requested, cancel_requested_wf) = ops.run_row("PROCESSING", 2).await;
    ops.start_workflow(&cancel_requested_wf);
    ops.cli(&["workflow", "cancel", "--workflow-id", &cancel_requested_wf]);
    let (_, running, running_wf) = ops.run_row("PROCESSING", 2).await;
    ops.start_workflow(&running_wf);
    // Everything is stale; `young` was created less than 2 minutes ago.
    sqlx::query("UPDATE analysis_runs SET updated_at = now() - interval '5 minutes'")
        .execute(&ops.app.db)
        .await
        .expect("stale");

    let (status, v) = ops.post("/api/v1/monitoring/check-stuck-runs").await;
    assert_eq!(status, 200, "{v}");
    // Both queued runs without a workflow are started (a start is idempotent: same workflow id).
    assert_eq!(v["data"], json!({"checked": 5, "finalized": 1, "started": 2}));
    assert_eq!(v["message"], "Checked 5 runs and finalized 1 stuck runs.");

    let a = |s: &str| s.to_string();
    // A queued run without a workflow (Temporal was away) is started, not failed.
    let (st, err, _) = ops.run_state(never_started).await;
    assert_eq!((st.as_str(), err.as_deref()), ("QUEUED", None));
    let never_started_wf: String = sqlx::query_scalar("SELECT workflow_id FROM analysis_runs WHERE id = $1")
        .bind(never_started)
        .fetch_one(&ops.app.db)
        .await
        .expect("workflow id");
    ops.cli(&["workflow", "describe", "--workflow-id", &never_started_wf]);
    let (st, err, rows) = ops.run_state(terminated).await;
    assert_eq!((st.as_str(), err.as_deref()), ("ANALYZED", Some("Analysis workflow was terminated")));
    assert_eq!(rows[0], (a("A"), a("COMPLETED"), None));
    assert_eq!(rows[1], (a("B"), a("FAILED"), Some(a("Analysis workflow was terminated"))));
    assert_eq!(ops.run_state(cancel_requested).await.0, "PROCESSING");
    assert_eq!(ops.run_state(young).await.0, "QUEUED");
    assert_eq!(ops.run_state(running).await.0, "PROCESSING");

    // A second pass (or another worker's) finds nothing more to do.
    let (_, v) = ops.post("/api/v1/monitoring/check-stuck-runs").await;
    assert_eq!(v["data"]["finalized"], 0);
    assert_eq!(v["data"]["started"], 0);
}

#[tokio::test]
async fn concurrent_passes_finalize_each_run_once() {
    let ops = ops().await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(ops.run_row("PROCESSING", 5).await.1);
    }
    let results = futures::future::join_all((0..4).map(|_| ops.post("/api/v1/monitoring/check-stuck-runs"))).await;
    let total: i64 = results.iter().map(|(_, v)| v["data"]["finalized"].as_i64().expect("n")).sum();
    assert_eq!(total, 5);
    for run in runs {
        assert_eq!(ops.run_state(run).await.0, "ANALYZED");
    }
}

#[tokio::test]
async fn verify_reports_inconsistencies_and_fix_repairs_them_without_reopening_runs() {
    let ops = ops().await;
    let (status, v) = ops.post("/api/v1/monitoring/fix-statuses").await;
    assert_eq!((status, v["message"].clone()), (200, json!("No status issues found.")));
    assert_eq!(v["data"], json!({"fixed": 0, "failed": 0}));

    // A terminal run claiming FAILED although a model completed, with wrong counts.
    let (_, contradicted, _) = ops.run_row("FAILED", 10).await;
    sqlx::query("UPDATE deepfake_analyses SET status = 'FAILED' WHERE model_name = 'B' AND analysis_run_id = $1")
        .bind(contradicted)
        .execute(&ops.app.db)
        .await
        .expect("rows");
    // Media status differs from its latest run's.
    let (mismatched_media, _, _) = ops.run_row("ANALYZED", 10).await;
    sqlx::query("UPDATE deepfake_analyses SET status = 'FAILED' WHERE model_name = 'B' AND analysis_run_id = (SELECT latest_analysis_run_id FROM media WHERE id = $1)")
        .bind(mismatched_media)
        .execute(&ops.app.db)
        .await
        .expect("rows");
    sqlx::query("UPDATE analysis_runs SET completed_count = 1, failed_count = 1 WHERE media_id = $1")
        .bind(mismatched_media)
        .execute(&ops.app.db)
        .await
        .expect("counts");
    sqlx::query("UPDATE media SET status = 'PROCESSING' WHERE id = $1")
        .bind(mismatched_media)
        .execute(&ops.app.db)
        .await
        .expect("media");
    // A non-terminal run whose workflow is missing.
    let (_, orphan, _) = ops.run_row("PROCESSING", 10).await;

    let r = ops.app.get_auth("/api/v1/monitoring/verify-statuses", &ops.admin_token).await;
    let (status, v) = body(r).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["totalMedia"], 3);
    assert_eq!(v["data"]["incorrectMedia"], 3);
    assert_eq!(v["message"], "Verified 3 media items: 0 correct, 3 incorrect.");
    let issue = v["data"]["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .find(|i| i["runId"] == contradicted.to_string())
        .expect("issue")
        .clone();
    assert_eq!(issue["currentRunStatus"], "FAILED");
    assert_eq!(issue["expectedRunStatus"], "ANALYZED");
    assert_eq!(issue["analyses"], json!({"total": 2, "completed": 1, "failed": 1, "pending": 0}));

    let (status, v) = ops.post("/api/v1/monitoring/fix-statuses").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!({"fixed": 3, "failed": 0}));
    assert_eq!(v["message"], "Fixed 3 status issues, 0 failures.");
    assert_eq!(ops.run_state(contradicted).await.0, "ANALYZED");
    let (st, err, _) = ops.run_state(orphan).await;
    assert_eq!((st.as_str(), err.as_deref()), ("ANALYZED", Some("Analysis workflow could not be started")));
    let (_, v) = body(ops.app.get_auth("/api/v1/monitoring/verify-statuses", &ops.admin_token).await).await;
    assert_eq!(v["data"]["incorrectMedia"], 0, "{v}");
}

#[tokio::test]
async fn fix_starts_a_queued_run_without_a_workflow_instead_of_failing_it() {
    let ops = ops().await;
    let (_, queued, wf) = ops.run_row("QUEUED", 10).await;
    sqlx::query("DELETE FROM deepfake_analyses WHERE analysis_run_id = $1")
        .bind(queued)
        .execute(&ops.app.db)
        .await
        .expect("rows");
    let (_, v) = body(ops.app.get_auth("/api/v1/monitoring/verify-statuses", &ops.admin_token).await).await;
    assert_eq!(v["data"]["incorrectMedia"], 1, "{v}");

    let (status, v) = ops.post("/api/v1/monitoring/fix-statuses").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!({"fixed": 1, "failed": 0}));
    // Started, not failed: the run waits for a worker with its workflow in place.
    let (st, err, _) = ops.run_state(queued).await;
    assert_eq!((st.as_str(), err), ("QUEUED", None));
    ops.cli(&["workflow", "describe", "--workflow-id", &wf]);
}
