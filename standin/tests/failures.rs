//! Failure injection (§9.7): markers, catalogue triggers and the seeded random failures.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{KEY, catalogue, client, config, form, spawn, video_bytes, within};
use drishtiksha_standin::failure::FailureMode;
use serde_json::{Value, json};

fn with_marker(marker: &str) -> Vec<u8> {
    let mut bytes = video_bytes(marker);
    bytes.extend_from_slice(format!("\n{marker}\n").as_bytes());
    bytes
}

async fn analyze_with_correlation(s: &common::Standin, bytes: Vec<u8>, model: &str) -> (u16, Value) {
    let response = client()
        .post(s.url("/analyze"))
        .header("X-API-Key", KEY)
        .header("X-Correlation-ID", "run-7:M:1")
        .multipart(form("f.mp4", bytes, Some(model)))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn mode_422_gives_the_media_processing_error_body() {
    let s = spawn(config()).await;
    let (status, body) = analyze_with_correlation(&s, with_marker("STANDIN:422"), "SIGLIP-LSTM-V4").await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": {
            "error": "Media Processing Error",
            "message": "Media could not be processed. Reason: simulated media processing error",
            "correlation_id": "run-7:M:1",
        }})
    );
}

#[tokio::test]
async fn mode_500_gives_the_internal_server_error_body() {
    let s = spawn(config()).await;
    let (status, body) = analyze_with_correlation(&s, with_marker("STANDIN:500"), "SIGLIP-LSTM-V4").await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"detail": {
            "error": "Internal Server Error",
            "message": "An unknown server error occurred.",
            "correlation_id": "run-7:M:1",
        }})
    );
}

#[tokio::test]
async fn mode_inference_gives_the_inference_error_body() {
    let s = spawn(config()).await;
    let (status, body) = analyze_with_correlation(&s, with_marker("STANDIN:inference"), "EFFICIENTNET-B7-V1").await;
    assert_eq!(status, 500);
    let detail = &body["detail"];
    assert_eq!(
        detail.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>(),
        ["error", "message", "primary_error", "fallback_error", "correlation_id"]
    );
    assert_eq!(detail["error"], "Inference Error");
    assert_eq!(detail["message"], "Model inference failed and all fallbacks exhausted.");
    assert_eq!(detail["primary_error"], "simulated inference failure in model 'EFFICIENTNET-B7-V1'");
    assert_eq!(detail["fallback_error"], "No fallback models available");
    assert_eq!(detail["correlation_id"], "run-7:M:1");
}

#[tokio::test]
async fn mode_429_sets_retry_after() {
    let s = spawn(config()).await;
    let response = s.analyze(form("f.mp4", with_marker("STANDIN:429"), None)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"detail": "Too many requests"}));
}

#[tokio::test]
async fn mode_hang_never_answers() {
    let s = spawn(config()).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(700)).build().unwrap();
    let result = impatient
        .post(s.url("/analyze"))
        .header("X-API-Key", KEY)
        .multipart(form("f.mp4", with_marker("STANDIN:hang"), None))
        .send()
        .await;
    let err = result.expect_err("no response");
    assert!(err.is_timeout(), "{err:?}");
    let log = s.requests().await;
    assert_eq!(log[0]["outcome"], "hang");
    assert!(log[0]["status"].is_null());
}

#[tokio::test]
async fn mode_drop_closes_the_connection_without_a_response() {
    let s = spawn(config()).await;
    let result = within(
        20,
        client()
            .post(s.url("/analyze"))
            .header("X-API-Key", KEY)
            .multipart(form("f.mp4", with_marker("STANDIN:drop"), None))
            .send(),
    )
    .await;
    let err = result.expect_err("no response");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none());
    assert!(err.is_request() || err.is_connect() || err.is_body(), "{err:?}");
    // The server keeps serving other calls.
    let (status, _) = s.analyze_json(form("f.mp4", video_bytes("fine"), None)).await;
    assert_eq!(status, 200);
    assert_eq!(s.requests().await[0]["outcome"], "drop");
}

#[tokio::test]
async fn flaky_2_fails_twice_then_succeeds_per_file_and_model() {
    let s = spawn(config()).await;
    let bytes = with_marker("STANDIN:flaky-2");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _) = s.analyze_json(form("f.mp4", bytes.clone(), Some("SIGLIP-LSTM-V4"))).await;
        statuses.push(status);
    }
    assert_eq!(statuses, [500, 500, 200, 200]);
    // Another model counts on its own.
    let (status, _) = s.analyze_json(form("f.mp4", bytes.clone(), Some("EFFICIENTNET-B7-V1"))).await;
    assert_eq!(status, 500);
    let outcomes: Vec<Value> = s.requests().await.iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("flaky-2"), json!("flaky-2"), json!("ok"), json!("ok"), json!("flaky-2")]);
    // Reset clears the counters.
    let reset = client().post(s.url("/__standin/reset")).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    let (status, _) = s.analyze_json(form("f.mp4", bytes, Some("SIGLIP-LSTM-V4"))).await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn model_scoped_markers_apply_only_to_their_model_and_win() {
    let s = spawn(config()).await;
    let bytes = with_marker("STANDIN:500 STANDIN:429@SIGLIP-LSTM-V4");
    let (siglip, _) = s.analyze_json(form("f.mp4", bytes.clone(), Some("SIGLIP-LSTM-V4"))).await;
    let (effnet, _) = s.analyze_json(form("f.mp4", bytes, Some("EFFICIENTNET-B7-V1"))).await;
    assert_eq!((siglip, effnet), (429, 500));
    let scoped_elsewhere = with_marker("STANDIN:422@LIP-FD-V1");
    let (status, _) = s.analyze_json(form("f.mp4", scoped_elsewhere, Some("SIGLIP-LSTM-V4"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn catalogue_fail_and_fail_rate_apply_after_markers() {
    let mut c = config();
    c.catalogue = catalogue(
        r#"[{"name":"ALWAYS-429","profile":"siglip","isVideo":true,"fail":"429"},
            {"name":"ALWAYS-RANDOM","profile":"siglip","isVideo":true,"fail_rate":1.0}]"#,
    );
    c.fail_modes = vec![FailureMode::Inference];
    let s = spawn(c).await;
    let (status, _) = s.analyze_json(form("f.mp4", video_bytes("c"), Some("ALWAYS-429"))).await;
    assert_eq!(status, 429);
    let (status, body) = s.analyze_json(form("f.mp4", video_bytes("c"), Some("ALWAYS-RANDOM"))).await;
    assert_eq!((status, &body["detail"]["error"]), (500, &json!("Inference Error")));
    // A marker is checked first.
    let (status, _) = s.analyze_json(form("f.mp4", with_marker("STANDIN:422"), Some("ALWAYS-429"))).await;
    assert_eq!(status, 422);
}

async fn statuses(s: &common::Standin) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..24 {
        let (status, _) = s.analyze_json(form("f.mp4", video_bytes(&format!("r{i}")), None)).await;
        statuses.push(status);
    }
    statuses
}

#[tokio::test]
async fn a_global_fail_rate_with_a_seed_gives_a_reproducible_sequence() {
    let mut c = config();
    c.fail_rate = 0.5;
    c.seed = 7;
    c.fail_modes = vec![FailureMode::Internal, FailureMode::RateLimited];
    let a = spawn(c.clone()).await;
    let b = spawn(c).await;
    let first = statuses(&a).await;
    let second = statuses(&b).await;
    assert_eq!(first, second);
    for status in [200, 500, 429] {
        assert!(first.contains(&status), "{first:?}");
    }
    // Reset reseeds the generator.
    let reset = client().post(a.url("/__standin/reset")).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(statuses(&a).await, first);
}

fn without(body: &Value, fields: &[&str]) -> Value {
    let mut data = body["data"].clone();
    for field in fields {
        data.as_object_mut().unwrap().remove(*field);
    }
    data
}

#[tokio::test]
async fn a_fallback_marker_answers_200_with_the_next_models_result_and_the_fallback_note() {
    let s = spawn(config()).await;
    let bytes = with_marker("STANDIN:fallback@SIGLIP-LSTM-V4");
    let (status, body) = s.analyze_json(form("f.mp4", bytes.clone(), Some("SIGLIP-LSTM-V4"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["model_used"], "EFFICIENTNET-B7-V1");
    assert_eq!(
        body["data"]["note"],
        "Primary model 'SIGLIP-LSTM-V4' failed. Used fallback model 'EFFICIENTNET-B7-V1'. | Simulated result (ML stand-in)."
    );
    // The data is the fallback model's own result for these bytes.
    let (status, direct) = s.analyze_json(form("f.mp4", bytes, Some("EFFICIENTNET-B7-V1"))).await;
    assert_eq!(status, 200);
    assert_eq!(direct["model_used"], "EFFICIENTNET-B7-V1");
    assert_eq!(direct["data"]["note"], "Simulated result (ML stand-in).");
    assert_eq!(without(&body, &["note", "processing_time"]), without(&direct, &["note", "processing_time"]));
    assert_eq!(body["data"]["frames_analyzed"], 300);

    let log = s.requests().await;
    assert_eq!(log[0]["model"], "SIGLIP-LSTM-V4");
    assert_eq!(log[0]["modelUsed"], "EFFICIENTNET-B7-V1");
    assert_eq!((log[0]["status"].clone(), log[0]["outcome"].clone()), (json!(200), json!("fallback")));
    assert_eq!(log[1]["modelUsed"], "EFFICIENTNET-B7-V1");
    let stats = s.get_json("/stats").await;
    assert_eq!(stats["models_info"][0]["inference_count"], 0);
    assert_eq!(stats["models_info"][1]["inference_count"], 2);
}

#[tokio::test]
async fn a_catalogue_fallback_wraps_around_to_the_first_model_for_the_media_type() {
    let mut c = config();
    c.catalogue = catalogue(
        r#"[{"name":"V1","profile":"siglip","isVideo":true},
            {"name":"A1","profile":"scattering","isAudio":true},
            {"name":"V2","profile":"lipfd","isVideo":true,"isAudio":true,"fail":"fallback"}]"#,
    );
    let s = spawn(c).await;
    let (status, body) = s.analyze_json(form("f.mp4", video_bytes("wrap"), Some("V2"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "V1");
    assert_eq!(body["data"]["frames_analyzed"], 50, "siglip's shape");
    assert_eq!(
        body["data"]["note"],
        "Primary model 'V2' failed. Used fallback model 'V1'. | Simulated result (ML stand-in)."
    );
    let (_, body) = s.analyze_json(form("f.wav", b"RIFF audio".to_vec(), Some("V2"))).await;
    assert_eq!(body["model_used"], "A1");
}

#[tokio::test]
async fn a_fallback_with_no_other_model_loaded_exhausts_the_fallbacks() {
    let mut c = config();
    c.catalogue = catalogue(
        r#"[{"name":"ONLY","profile":"siglip","isVideo":true},
            {"name":"OFF","profile":"siglip","isVideo":true,"loaded":false}]"#,
    );
    c.fail_rate = 1.0;
    c.fail_modes = vec![FailureMode::Fallback];
    let s = spawn(c).await;
    let (status, body) = analyze_with_correlation(&s, video_bytes("alone"), "ONLY").await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"detail": {
            "error": "Inference Error",
            "message": "Model inference failed and all fallbacks exhausted.",
            "primary_error": "simulated inference failure in model 'ONLY'",
            "fallback_error": "No fallback models available",
            "correlation_id": "run-7:M:1",
        }})
    );
    let log = s.requests().await;
    assert_eq!((log[0]["status"].clone(), log[0]["outcome"].clone()), (json!(500), json!("fallback")));
    assert!(log[0]["modelUsed"].is_null());
}
