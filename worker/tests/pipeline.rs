//! The analysis pipeline end to end: MediaAnalysisWorkflow on a real Temporal dev server, with
//! Postgres, Redis, the ML stand-in and media files made by ffmpeg.

mod support;

use std::time::Duration;

use drishtiksha_common::workflow::{AnalysisResult, cancel_analysis};
use drishtiksha_common::{AnalysisStatus, RunStatus};
use drishtiksha_testkit::eventually;
use drishtiksha_workflows::MediaAnalysisWorkflow;
use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{Kind, ML_KEY, Pipeline, names, standin_config};
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowQueryOptions};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

const VIDEO_MODELS: [&str; 3] = ["EFFICIENTNET-B7-V1", "LIP-FD-V1", "SIGLIP-LSTM-V4"];

async fn ready_pipeline() -> Pipeline {
    let mut p = Pipeline::new(Some(standin_config())).await;
    p.start_worker().await;
    p
}

/// Posts the stored file to the stand-in directly, as the worker does, and returns `data`.
async fn direct_result(p: &Pipeline, run: &support::TestRun, model: &str) -> Value {
    let bytes = std::fs::read(&run.path).expect("media bytes");
    let part = reqwest::multipart::Part::bytes(bytes).file_name(format!("{}.mp4", run.media_id));
    let form = reqwest::multipart::Form::new().part("media", part).text("model", model.to_string());
    let body: Value = reqwest::Client::new()
        .post(format!("{}/analyze", p.ml_url))
        .header("X-API-Key", ML_KEY)
        .multipart(form)
        .send()
        .await
        .expect("direct analyze")
        .json()
        .await
        .expect("JSON");
    body["data"].clone()
}

fn without_processing_time(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("processing_time");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_with_audio_is_analyzed_by_every_video_model_including_the_multimodal_one() {
    let p = ready_pipeline().await;
    let redis = redis::Client::open(p.redis.url()).expect("redis client");
    let mut events = redis.get_async_pubsub().await.expect("pubsub");
    events.subscribe("media-progress-events").await.expect("subscribe");

    let run = p.analyse(Kind::VideoWithAudio, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    assert_eq!((row.total_models, row.completed_count, row.failed_count), (3, 3, 0));
    assert!(row.completed);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(names(&rows), VIDEO_MODELS);
    for r in &rows {
        assert_eq!(r.status, AnalysisStatus::Completed, "{}", r.model_name);
        assert_eq!(r.attempts, 1);
        let payload = r.result_payload.clone().expect("payload");
        assert_eq!(payload["prediction"], json!(r.prediction));
        assert_eq!(payload["confidence"].as_f64(), Some(r.confidence));
        assert_eq!(payload["processing_time"].as_f64(), r.processing_time);
        assert_eq!(r.media_type.as_deref(), Some("video"));
    }
    let siglip = rows.iter().find(|r| r.model_name == "SIGLIP-LSTM-V4").expect("siglip row");
    assert_eq!(
        without_processing_time(siglip.result_payload.clone().expect("payload")),
        without_processing_time(direct_result(&p, &run, "SIGLIP-LSTM-V4").await),
        "the payload is the ML server's data verbatim"
    );

    let media = p.media_row(run.media_id).await;
    assert_eq!(media.status, RunStatus::Analyzed);
    assert_eq!(media.has_audio, Some(true));
    assert_eq!(media.latest_analysis_run_id, Some(run.run_id));
    let metadata = media.metadata.expect("metadata");
    assert_eq!(metadata["video"]["codecName"], "mpeg4");
    assert_eq!(metadata["video"]["width"], 160);
    assert_eq!(metadata["audio"]["codecName"], "aac");
    assert!(metadata["format"]["duration"].as_f64().expect("duration") > 0.5);
    assert_eq!(metadata["streams"].as_array().map(Vec::len), Some(2));

    let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(&run.workflow_id);
    let result: AnalysisResult = handle.get_result(WorkflowGetResultOptions::default()).await.expect("result");
    assert_eq!(
        serde_json::to_value(&result).expect("json"),
        json!({"status": "ANALYZED", "totalModels": 3, "completedCount": 3, "failedCount": 0})
    );
    let progress =
        handle.query(MediaAnalysisWorkflow::progress, (), WorkflowQueryOptions::default()).await.expect("query");
    assert_eq!(progress.len(), 3);
    assert!(progress.iter().all(|m| m.status == AnalysisStatus::Completed && m.attempt == Some(1)));

    let mut seen: Vec<Value> = Vec::new();
    let mut stream = events.on_message();
    while !seen.iter().any(|m| m["event"] == "ANALYSIS_COMPLETE") {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .expect("message");
        let payload: String = msg.get_payload().expect("payload");
        seen.push(serde_json::from_str(&payload).expect("JSON event"));
    }
    let count = |e: &str| seen.iter().filter(|m| m["event"] == e).count();
    assert_eq!(count("PROCESSING_STARTED"), 1);
    assert_eq!(count("ANALYSIS_QUEUED"), 3);
    assert_eq!(count("ANALYSIS_STARTED"), 3);
    assert_eq!(count("ANALYSIS_COMPLETED"), 3);
    for m in &seen {
        assert_eq!(m["media_id"], json!(run.media_id.to_string()));
        assert_eq!(m["data"]["runId"], json!(run.run_id.to_string()));
        assert!(m["data"]["timestamp"].is_string());
        let per_model = m["event"] != "ANALYSIS_COMPLETE" && m["event"] != "PROCESSING_STARTED";
        assert_eq!(m["data"].get("model_name").is_some(), per_model || m["event"] == "PROCESSING_STARTED", "{m}");
    }
    let complete = seen.iter().find(|m| m["event"] == "ANALYSIS_COMPLETE").expect("run event");
    assert_eq!(complete["data"]["finalStatus"], "ANALYZED");
    assert_eq!(complete["data"]["completedAnalyses"], 3);
    assert_eq!(complete["data"]["totalAnalyses"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_without_audio_is_not_sent_to_the_multimodal_model() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::VideoWithoutAudio, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    assert_eq!(names(&p.analyses(run.run_id).await), ["EFFICIENTNET-B7-V1", "SIGLIP-LSTM-V4"]);
    let media = p.media_row(run.media_id).await;
    assert_eq!(media.has_audio, Some(false));
    assert_eq!(media.metadata.expect("metadata")["audio"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_probed_and_analyzed_by_the_audio_model() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::Audio, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(names(&rows), ["SCATTERING-WAVE-V1"]);
    assert_eq!(rows[0].media_type.as_deref(), Some("audio"));
    let media = p.media_row(run.media_id).await;
    assert_eq!(media.has_audio, None, "hasAudio is for videos only");
    let metadata = media.metadata.expect("metadata");
    assert_eq!(metadata["video"], Value::Null);
    assert_eq!(metadata["audio"]["sampleRate"], 44100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_is_analyzed_by_the_image_model_without_metadata() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::Image, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(names(&rows), ["CROSS-EFFICIENT-VIT-IMG"]);
    let payload = rows[0].result_payload.clone().expect("payload");
    assert_eq!(payload["dimensions"], json!({"width": 64, "height": 48}));
    let media = p.media_row(run.media_id).await;
    assert_eq!((media.has_audio, media.metadata), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_rejecting_the_media_fails_alone_and_the_run_is_still_analyzed() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::VideoWithAudio, "STANDIN:422@SIGLIP-LSTM-V4").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    assert_eq!((row.total_models, row.completed_count, row.failed_count), (3, 2, 1));
    let rows = p.analyses(run.run_id).await;
    let failed = rows.iter().find(|r| r.model_name == "SIGLIP-LSTM-V4").expect("row");
    assert_eq!(failed.status, AnalysisStatus::Failed);
    assert_eq!(failed.attempts, 1, "a 422 is not retried");
    let message = "Media could not be processed. Reason: simulated media processing error";
    assert_eq!(failed.error_message.as_deref(), Some(message));
    assert_eq!(failed.result_payload, Some(json!({"error": message, "attempts": 1, "retryCount": 0})));
    assert_eq!((failed.prediction.as_str(), failed.confidence), ("N/A", 0.0));
    assert!(rows.iter().filter(|r| r.model_name != "SIGLIP-LSTM-V4").all(|r| r.status == AnalysisStatus::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_model_completes_on_its_third_attempt() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::Image, "STANDIN:flaky-2").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(rows.len(), 1, "retries update the same row");
    assert_eq!(rows[0].status, AnalysisStatus::Completed);
    assert_eq!(rows[0].attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_fail_with_model_discovery_failed_when_the_ml_server_is_down() {
    let mut p = Pipeline::new(None).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Image, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("Model discovery failed: Model analysis service is unavailable."));
    assert_eq!(row.total_models, 0);
    assert!(p.analyses(run.run_id).await.is_empty());
    assert_eq!(p.media_row(run.media_id).await.status, RunStatus::Failed);
    let unhealthy = sqlx::query_scalar!("SELECT count(*) AS \"n!\" FROM server_health WHERE status = 'UNHEALTHY'")
        .fetch_one(&p.pool)
        .await
        .expect("health rows");
    assert_eq!(unhealthy, 3, "each discovery attempt records the failed check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_fail_when_no_model_fits_the_media_type() {
    let mut config = standin_config();
    config.catalogue = drishtiksha_standin::catalogue::Catalogue::parse(
        r#"[{"name": "ONLY-VIDEO", "isVideo": true, "profile": "video-generic"}]"#,
        drishtiksha_standin::catalogue::Format::Json,
    )
    .expect("catalogue");
    let mut p = Pipeline::new(Some(config)).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Audio, "").await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("No compatible models available for AUDIO"));
    let health = sqlx::query_scalar!("SELECT status FROM server_health").fetch_all(&p.pool).await.expect("health");
    assert_eq!(health, ["HEALTHY"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_fail_when_the_media_file_is_missing() {
    let p = ready_pipeline().await;
    let run = p.create_media(Kind::VideoWithAudio, "").await;
    std::fs::remove_file(&run.path).expect("file removed");
    p.start(&run).await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.error_message.as_deref(), Some("Media file is missing from storage"));
    assert_eq!(p.media_row(run.media_id).await.status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_mid_analysis_cancels_it_and_its_unfinished_models() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::VideoWithAudio, "STANDIN:hang@LIP-FD-V1").await;
    eventually(support::RUN_TIMEOUT, || async {
        let rows = p.analyses(run.run_id).await;
        let done = rows.iter().filter(|r| r.status == AnalysisStatus::Completed).count();
        let hanging = rows.iter().any(|r| r.model_name == "LIP-FD-V1" && r.status == AnalysisStatus::Running);
        (done == 2 && hanging).then_some(())
    })
    .await
    .expect("two models complete while one hangs");
    assert_eq!(p.run_row(run.run_id).await.status, RunStatus::PartiallyAnalyzed);

    cancel_analysis(p.client(), &run.workflow_id, "user cancelled").await.expect("cancel requested");
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Cancelled);
    assert_eq!(row.error_message.as_deref(), Some("Analysis cancelled"));
    assert_eq!((row.completed_count, row.failed_count), (2, 0));
    let rows = p.analyses(run.run_id).await;
    let hung = rows.iter().find(|r| r.model_name == "LIP-FD-V1").expect("row");
    assert_eq!(hung.status, AnalysisStatus::Cancelled);
    assert_eq!(hung.error_message.as_deref(), Some("Analysis cancelled"));
    assert_eq!(p.media_row(run.media_id).await.status, RunStatus::Cancelled);

    let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(&run.workflow_id);
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;
    assert!(
        matches!(result, Err(temporalio_client::errors::WorkflowGetResultError::Cancelled { .. })),
        "the workflow ends Cancelled: {result:?}"
    );
    // Cancelling a closed workflow is not an error.
    cancel_analysis(p.client(), &run.workflow_id, "again").await.expect("idempotent cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_its_worker_being_stopped_mid_analysis() {
    let mut config = standin_config();
    // The image model then takes 10 s: longer than the worker's shutdown grace period.
    config.latency_scale = 20.0;
    let mut p = Pipeline::new(Some(config)).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Image, "").await;
    eventually(support::RUN_TIMEOUT, || async {
        let rows = p.analyses(run.run_id).await;
        rows.iter().any(|r| r.status == AnalysisStatus::Running).then_some(())
    })
    .await
    .expect("the model is being analysed");

    p.stop_worker().await;
    p.start_worker().await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(rows.len(), 1, "exactly one row per model");
    assert_eq!(rows[0].status, AnalysisStatus::Completed);
    assert_eq!(rows[0].attempts, 1, "a call interrupted by a worker stop is retried without counting as an ML attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_replays_deterministically() {
    let p = ready_pipeline().await;
    let run = p.analyse(Kind::VideoWithAudio, "STANDIN:422@LIP-FD-V1").await;
    assert_eq!(p.finished_run(run.run_id).await.status, RunStatus::Analyzed);
    let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(&run.workflow_id);
    handle.get_result(WorkflowGetResultOptions::default()).await.expect("workflow completed");

    let options =
        WorkflowReplayerOptions::new().register_workflow::<MediaAnalysisWorkflow>().expect("registered").build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    replayer
        .replay_workflow(handle.fetch_history(WorkflowFetchHistoryOptions::default()))
        .await
        .expect("history replays without nondeterminism");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_model_waits_for_retry_after_between_attempts_then_fails_for_good() {
    let p = ready_pipeline().await;
    let redis = redis::Client::open(p.redis.url()).expect("redis client");
    let mut events = redis.get_async_pubsub().await.expect("pubsub");
    events.subscribe("media-progress-events").await.expect("subscribe");

    let started = std::time::Instant::now();
    let run = p.analyse(Kind::Image, "STANDIN:429@CROSS-EFFICIENT-VIT-IMG").await;
    let row = p.finished_run(run.run_id).await;

    assert!(started.elapsed() >= Duration::from_secs(2), "two Retry-After: 1 waits");
    assert_eq!(row.status, RunStatus::Failed, "no model completed");
    assert_eq!((row.total_models, row.completed_count, row.failed_count), (1, 0, 1));
    assert_eq!(row.error_message, None);
    let rows = p.analyses(run.run_id).await;
    assert_eq!(rows[0].status, AnalysisStatus::Failed);
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(rows[0].error_message.as_deref(), Some("Too many requests"));
    assert_eq!(rows[0].result_payload, Some(json!({"error": "Too many requests", "attempts": 3, "retryCount": 2})));

    let mut seen: Vec<Value> = Vec::new();
    let mut stream = events.on_message();
    while !seen.iter().any(|m| m["event"] == "ANALYSIS_FAILED" && m["data"].get("finalStatus").is_some()) {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .expect("message");
        let payload: String = msg.get_payload().expect("payload");
        seen.push(serde_json::from_str(&payload).expect("JSON event"));
    }
    let retrying: Vec<&Value> = seen.iter().filter(|m| m["event"] == "ANALYSIS_RETRYING").collect();
    assert_eq!(retrying.len(), 2);
    assert_eq!(retrying[0]["data"]["attempt"], 1);
    assert_eq!(retrying[0]["data"]["phase"], "retrying");
    assert_eq!(retrying[0]["data"]["error_message"], "Too many requests");
    let model_failed = seen
        .iter()
        .find(|m| m["event"] == "ANALYSIS_FAILED" && m["data"].get("model_name").is_some())
        .expect("per-model failure event");
    let data = &model_failed["data"];
    assert_eq!(data["model_name"], "CROSS-EFFICIENT-VIT-IMG");
    assert_eq!(data["attempts"], 3);
    assert_eq!(data["phase"], "failed");
    assert_eq!(data["runId"], json!(run.run_id.to_string()));
    assert!(data["analysisId"].is_string());
    let run_failed = seen.iter().find(|m| m["data"].get("finalStatus").is_some()).expect("run event");
    assert_eq!(run_failed["data"]["finalStatus"], "FAILED");
    assert_eq!(run_failed["data"]["failedAnalyses"], 1);
    assert!(run_failed["data"].get("model_name").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_media_is_deleted_mid_analysis_ends_without_writing() {
    let mut config = standin_config();
    config.latency_scale = 4.0;
    let mut p = Pipeline::new(Some(config)).await;
    p.start_worker().await;
    let run = p.analyse(Kind::Image, "").await;
    eventually(support::RUN_TIMEOUT, || async {
        let rows = p.analyses(run.run_id).await;
        rows.iter().any(|r| r.status == AnalysisStatus::Running).then_some(())
    })
    .await
    .expect("the model is being analysed");

    sqlx::query!("DELETE FROM media WHERE id = $1", run.media_id).execute(&p.pool).await.expect("media deleted");
    let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(&run.workflow_id);
    let result = handle.get_result(WorkflowGetResultOptions::default()).await.expect("the workflow completes");

    assert_eq!(result.total_models, 0);
    let left =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM analysis_runs"#).fetch_one(&p.pool).await.expect("count");
    assert_eq!(left, 0, "nothing was written back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_workflows_carry_search_attributes_and_a_summary_and_refuse_a_second_start() {
    use drishtiksha_common::workflow::{SA_MEDIA_ID, SA_MEDIA_TYPE, SA_RUN_NUMBER, SA_USER_ID};

    let p = ready_pipeline().await;
    let run = p.analyse(Kind::Image, "").await;
    assert_eq!(p.finished_run(run.run_id).await.status, RunStatus::Analyzed);

    let handle = p.client().get_workflow_handle::<MediaAnalysisWorkflow>(&run.workflow_id);
    let described = handle.describe(temporalio_client::WorkflowDescribeOptions::default()).await.expect("described");
    let attributes = described.search_attributes();
    assert_eq!(attributes.get(&SA_MEDIA_ID), Some(run.media_id.to_string()));
    assert_eq!(attributes.get(&SA_USER_ID), Some(run.user_id.to_string()));
    assert_eq!(attributes.get(&SA_MEDIA_TYPE), Some("IMAGE".to_string()));
    assert_eq!(attributes.get(&SA_RUN_NUMBER), Some(1));
    assert_eq!(described.static_summary(), Some("Analyse clip (IMAGE)"));
    assert_eq!(described.task_queue(), p.task_queue);

    let second = drishtiksha_common::workflow::start_analysis(
        p.client(),
        drishtiksha_common::workflow::StartAnalysis {
            task_queue: &p.task_queue,
            workflow_id: &run.workflow_id,
            input: drishtiksha_common::workflow::AnalysisInput {
                run_id: run.run_id,
                media_id: run.media_id,
                user_id: run.user_id,
            },
            media_type: drishtiksha_common::MediaType::Image,
            run_number: 1,
            filename: "clip",
        },
    )
    .await;
    assert!(second.is_err(), "a run's workflow starts once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_ffprobe_cannot_read_leaves_metadata_null_and_skips_the_multimodal_model() {
    let p = ready_pipeline().await;
    let run = p.create_media(Kind::VideoWithAudio, "").await;
    std::fs::write(&run.path, b"this is not a video at all").expect("file replaced");
    p.start(&run).await;
    let row = p.finished_run(run.run_id).await;

    assert_eq!(row.status, RunStatus::Analyzed, "a probe failure is not fatal");
    assert_eq!(names(&p.analyses(run.run_id).await), ["EFFICIENTNET-B7-V1", "SIGLIP-LSTM-V4"]);
    let media = p.media_row(run.media_id).await;
    assert_eq!((media.has_audio, media.metadata), (None, None));
}
